"""Research Q1: hybrid batches vs in-batch mixing (``mixed``) across alpha, at the same training budget.

``hybrid`` makes each batch monolingual (one language) with probability alpha and cross-lingual otherwise;
``mixed`` puts ``round(alpha * batch_size)`` monolingual rows (of any languages) and cross-lingual rows in
every batch. Both are trained for every alpha of the sweep and every seed, with the same model, data,
steps, batch size and optimizer, and evaluated on the same LAReQA pool; optionally merged with the base
model (``merge_ratios`` for the ``merge_alphas``).

The endpoints: at alpha = 0 both strategies draw only cross-lingual rows, uniformly from the same pool (the
same training distribution), so that point is trained once and drawn on both lines. At alpha = 1 they
differ: ``hybrid`` batches hold one language each (X-X-mono), ``mixed`` batches hold monolingual pairs of
several languages (X-X), so both are trained.

Every run is cached (``examples/reproduce.py``'s grid), so an interrupted command resumes where it stopped,
and the tables are rewritten after every run. Writes ``<output_dir>/mixing.{md,json}``,
``<docs-dir>/mixing.md`` (between the generated-results markers; the rest of the file is kept) and
``<docs-dir>/img/mixing_alpha.png``.

Usage:
    python examples/research/mixing.py --config examples/configs/research_mixing_cpu.yaml
    python examples/research/mixing.py --config examples/configs/research_mixing_gpu.yaml --model intfloat/multilingual-e5-base
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EXAMPLES, Clock, load_config, parse_run, resolve_model, write_doc_block  # noqa: E402

sys.path.insert(0, str(EXAMPLES))
import reproduce  # noqa: E402  (examples/reproduce.py: the cached grid, summaries and tables)
import train  # noqa: E402  (examples/train.py)

from st_hybrid.io import write_json, write_text  # noqa: E402

STRATEGIES = ("hybrid", "mixed")
SHARED = "hybrid = mixed a=0"  # the alpha = 0 endpoint: all cross-lingual rows, one training distribution
METRIC_TITLES = {
    "mono_map": "mono mAP",
    "cross_map": "cross mAP",
    "multi_map": "multi mAP",
    "rank_distance": "rank distance (lower is better)",
}


def _csv(kind):
    return lambda text: [kind(item) for item in text.split(",") if item]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="examples/configs/research_mixing_cpu.yaml")
    parser.add_argument(
        "--model", help="base model (Hub id, local folder or offline-model:NAME); overrides the config"
    )
    parser.add_argument("--output-dir", help="overrides the config's output_dir")
    parser.add_argument("--alphas", type=_csv(float), help="overrides research.alphas, e.g. 0,0.5,1")
    parser.add_argument("--seeds", type=_csv(int), help="overrides research.seeds, e.g. 1,2,3")
    parser.add_argument(
        "--merge-ratios", type=_csv(float), help="overrides research.merge_ratios ('' for none)"
    )
    parser.add_argument("--docs-dir", default="docs/research", help="where mixing.md and img/ go")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the tables and plot from <output_dir>/mixing.json (the last run's results), training nothing",
    )
    return parser.parse_args(argv)


def settings(args) -> tuple[dict, dict]:
    """The sweep (alphas, seeds, strategies, merges) and the train options, flags over the config."""
    research, options = load_config(args.config)
    sweep = {
        "strategies": list(research.get("strategies", STRATEGIES)),
        "alphas": [float(a) for a in research.get("alphas", [0, 0.25, 0.5, 0.75, 1])],
        "seeds": [int(s) for s in research.get("seeds", [1, 2, 3])],
        "merge_ratios": [float(r) for r in research.get("merge_ratios", [])],
        "merge_alphas": [float(a) for a in research.get("merge_alphas", [0.5])],
    }
    for key in ("alphas", "seeds", "merge_ratios"):
        if getattr(args, key) is not None:
            sweep[key] = getattr(args, key)
    unknown = sorted(set(sweep["strategies"]) - set(STRATEGIES))
    bad_alphas = [a for a in sweep["alphas"] if not 0 <= a <= 1]
    bad_ratios = [r for r in sweep["merge_ratios"] if not 0 < r < 1]
    if unknown or bad_alphas or bad_ratios or not sweep["alphas"] or not sweep["seeds"]:
        raise SystemExit(
            f"{args.config}: research.strategies must be among {list(STRATEGIES)} (got {unknown or 'ok'}), "
            f"alphas in [0, 1] (got {bad_alphas or 'ok'}), merge_ratios strictly between 0 and 1 (got "
            f"{bad_ratios or 'ok'}), with at least one alpha and one seed."
        )
    if args.model:
        options["model"] = args.model
    if args.output_dir:
        options["output_dir"] = args.output_dir
    options["model"] = resolve_model(str(options.get("model", train.ModelArguments.model)))
    return sweep, options


def label(strategy: str, alpha: float, sweep: dict) -> str:
    return SHARED if alpha == 0 and len(sweep["strategies"]) > 1 else f"{strategy} a={alpha:g}"


def build_cells(sweep: dict, root: Path) -> list[reproduce.Cell]:
    """Seed-major (a full sweep per seed first, so an interrupted command leaves every setting), alpha, strategy."""
    cells = []
    for seed in sweep["seeds"]:
        for alpha in sweep["alphas"]:
            for strategy in sweep["strategies"]:
                row = label(strategy, alpha, sweep)
                if row == SHARED and strategy != sweep["strategies"][0]:
                    continue  # trained once, drawn on both lines
                folder = "cross_only_a0" if row == SHARED else f"{strategy}_a{alpha:g}"
                merges = tuple(sweep["merge_ratios"]) if alpha in sweep["merge_alphas"] else ()
                overrides = {
                    "strategy": strategy,
                    "alpha": alpha,
                    "seed": seed,
                    "evaluate_before": False,
                    "output_dir": str(root / folder / f"seed{seed}"),
                }
                cells.append(reproduce.Cell(row, overrides, merges))
    return cells


def curves(summary: dict, sweep: dict) -> dict[str, list[tuple[float, str]]]:
    """Per strategy, its (alpha, row label) points that have results so far."""
    return {
        strategy: [
            (alpha, label(strategy, alpha, sweep))
            for alpha in sorted(sweep["alphas"])
            if label(strategy, alpha, sweep) in summary
        ]
        for strategy in sweep["strategies"]
    }


def sweep_table(summary: dict, sweep: dict, eval_name: str) -> str:
    """Mean ± std over seeds per alpha and strategy (the zero-shot row and merges too)."""
    rows = {"zero-shot": summary["zero-shot"]} if "zero-shot" in summary else {}
    for alpha in sorted(sweep["alphas"]):
        for strategy in sweep["strategies"]:
            row = label(strategy, alpha, sweep)
            if row in summary:
                rows[row] = summary[row]
    rows.update({row: stats for row, stats in summary.items() if row not in rows})  # merges
    return reproduce.markdown_table(rows, eval_name)


def hybrid_vs_mixed(summary: dict, sweep: dict) -> str:
    pairs = [
        (f"hybrid a={alpha:g}", f"mixed a={alpha:g}")
        for alpha in sorted(sweep["alphas"])
        if f"hybrid a={alpha:g}" in summary and f"mixed a={alpha:g}" in summary
    ]
    for ratio in sweep["merge_ratios"]:
        pairs += [
            (f"hybrid a={alpha:g} r={ratio:g}", f"mixed a={alpha:g} r={ratio:g}")
            for alpha in sweep["merge_alphas"]
            if f"hybrid a={alpha:g} r={ratio:g}" in summary and f"mixed a={alpha:g} r={ratio:g}" in summary
        ]
    return reproduce.compare(summary, pairs) if pairs else "(no alpha with both strategies yet)"


def real_differences(summary: dict, sweep: dict) -> list[str]:
    """``"alpha 0.25: multi mAP +0.0123"`` for each hybrid - mixed difference beyond the seed spread."""
    found = []
    for alpha in sorted(sweep["alphas"]):
        left, right = summary.get(f"hybrid a={alpha:g}"), summary.get(f"mixed a={alpha:g}")
        if not (left and right):
            continue
        for metric in reproduce.COLUMNS:
            if reproduce.exceeds_spread(left[metric], right[metric]):
                digits = 1 if metric == "rank_distance" else 4
                diff = left[metric]["mean"] - right[metric]["mean"]
                found.append(
                    f"alpha {alpha:g}: {metric.replace('_map', ' mAP').replace('_', ' ')} {diff:+.{digits}f}"
                )
    return found


def plot_alpha(summary: dict, sweep: dict, path: Path) -> None:
    """Each metric against alpha, one line per strategy, seed standard deviation as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = curves(summary, sweep)
    fig, axes = plt.subplots(1, len(reproduce.COLUMNS), figsize=(4.2 * len(reproduce.COLUMNS), 3.8))
    for ax, metric in zip(axes, reproduce.COLUMNS):
        for index, (strategy, points) in enumerate(lines.items()):
            if not points:
                continue
            x = [alpha + (index - 0.5) * 0.01 for alpha, _ in points]  # a small offset keeps error bars apart
            y = [summary[row][metric]["mean"] for _, row in points]
            err = [summary[row][metric]["std"] for _, row in points]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=f"C{index}", label=strategy)
            for ratio in sweep["merge_ratios"]:
                merged = [(a, f"{strategy} a={a:g} r={ratio:g}") for a in sweep["merge_alphas"]]
                merged = [(a, row) for a, row in merged if row in summary]
                if merged:
                    ax.errorbar(
                        [a + (index - 0.5) * 0.01 for a, _ in merged],
                        [summary[row][metric]["mean"] for _, row in merged],
                        yerr=[summary[row][metric]["std"] for _, row in merged],
                        marker="D",
                        linestyle="none",
                        capsize=3,
                        color=f"C{index}",
                        alpha=0.6,
                        label=f"{strategy} merged r={ratio:g}",
                    )
        if "zero-shot" in summary:
            ax.axhline(summary["zero-shot"][metric]["mean"], color="k", ls="--", lw=1, label="zero-shot")
        ax.set_xlabel("alpha (share of monolingual batches / rows)")
        ax.set_title(METRIC_TITLES[metric], fontsize=10)
        ax.set_xticks(sorted(sweep["alphas"]))
    axes[0].legend(fontsize=7)
    fig.suptitle("hybrid vs mixed across alpha (mean ± seed std; alpha 0 is one shared run)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(
    grid: dict, summary: dict, sweep: dict, options: dict, command: str, timing: str, image: str
) -> str:
    base = parse_run(options)
    any_run = next((runs[0] for runs in grid.get("runs", {}).values() if runs), None)
    train_pool = (
        f"{any_run['train_pairs']:,} pairs in {len(any_run['train_languages'])} languages "
        f"({', '.join(any_run['train_languages'])})"
        if any_run
        else "(no run finished yet)"
    )
    training = base.training
    pending = len(build_cells(sweep, base.output_dir)) - sum(len(r) for r in grid.get("runs", {}).values())
    differences = real_differences(summary, sweep)
    lines = [
        f"Command: `{command}`" + (f" ({pending} runs still to come: partial results)" if pending else ""),
        "",
        f"- Model: `{base.model.base_model_name or base.model.model}` (local: `{base.model.model}`).",
        f"- Training data: {', '.join(base.data.train_data)}: {train_pool}, cross_partners="
        f"{base.data.cross_partners}.",
        f"- Budget, the same for every run: {training.max_steps} steps x batch {training.per_device_train_batch_size}, "
        f"lr {training.learning_rate:g}, weight decay {training.weight_decay:g}, warmup {training.warmup_steps}, "
        f"max length {base.model.max_seq_length} (training), word embeddings "
        f"{'frozen' if base.model.freeze_embeddings else 'trained'}, loss {base.loss.loss}.",
        f"- Evaluation pool: {base.evaluation.eval_name}, {grid['eval_pool']}.",
        f"- Alphas {', '.join(f'{a:g}' for a in sweep['alphas'])}; seeds {', '.join(map(str, sweep['seeds']))}; "
        f"merges with the base: {', '.join(f'r={r:g}' for r in sweep['merge_ratios']) or 'none'}"
        + (
            f" (for alpha {', '.join(f'{a:g}' for a in sweep['merge_alphas'])})"
            if sweep["merge_ratios"]
            else ""
        )
        + ".",
        f"- Timing: {timing}.",
        "",
        "Mean ± sample standard deviation over the seeds:",
        "",
        sweep_table(summary, sweep, base.evaluation.eval_name),
        "",
        "hybrid − mixed at each alpha (** = larger than the two rows' seed standard deviations added):",
        "",
        hybrid_vs_mixed(summary, sweep),
        "",
        "Differences beyond the spread: " + ("; ".join(differences) if differences else "none") + ".",
        "",
        f"![metrics against alpha]({image})",
    ]
    return "\n".join(lines)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    clock = Clock()
    sweep, options = settings(args)
    base = parse_run(options)
    root = base.output_dir
    cells = build_cells(sweep, root)
    docs = Path(args.docs_dir)
    image = docs / "img" / "mixing_alpha.png"
    command = " ".join(["python", "examples/research/mixing.py", *argv])

    def write(grid: dict, trained: int, timing: str | None = None, shown: str = command) -> dict:
        summary = reproduce.summarize(reproduce.metric_rows(grid["reports"]))
        done = sum(len(runs) for runs in grid["runs"].values())
        timing = timing or clock.describe(trained, done, len(cells))
        block = render(grid, summary, sweep, options, shown, timing, f"img/{image.name}")
        write_text(root / "mixing.md", block + "\n")
        record = {"sweep": sweep, **grid, "summary": summary, "command": shown, "timing": timing}
        write_json(root / "mixing.json", record)
        write_doc_block(docs / "mixing.md", "Hybrid batches vs in-batch mixing across alpha", block)
        plot_alpha(summary, sweep, image)
        return summary

    if args.render_only:  # the tables of the last run, with its command and timing
        stored = json.loads((root / "mixing.json").read_text())
        grid = {key: stored[key] for key in ("eval_pool", "reports", "runs", "trained")}
        summary = write(grid, 0, stored.get("timing"), stored.get("command", command))
        print(f"Rendered {docs / 'mixing.md'} and {image} from {root / 'mixing.json'}")
        return summary
    grid = reproduce.run_cells(
        lambda overrides: parse_run(options, overrides),
        cells,
        on_cell=lambda grid: write(grid, len(grid["trained"])),
    )
    summary = write(grid, len(grid["trained"]))
    print((root / "mixing.md").read_text())
    print(f"Wrote {root / 'mixing.md'}, {docs / 'mixing.md'}, {image}")
    return summary


if __name__ == "__main__":
    main()
