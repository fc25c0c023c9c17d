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

With ``research.compare`` (``research_strategies_cpu.yaml``) the script instead compares named strategies, each
a run of the sweep (``mono`` = hybrid at alpha 1, ``cross`` = the alpha 0 run, ...), merged with the base at
every ``merge_ratios`` value: each at its best ratio, the differences against the seed spread and the Pareto
fronts go to ``<output_dir>/strategies.{md,json}``, ``<docs-dir>/strategies.md`` and
``<docs-dir>/img/strategies_{pareto,merge_curves}.png``. It reuses the sweep's trained runs (same overrides, same
cache keys); ``research.train: false`` refuses to train, ``--dry-run`` lists what would be reused or trained.

Every run is cached (``examples/reproduce.py``'s grid), so an interrupted command resumes where it stopped,
and the tables are rewritten after every run. Writes ``<output_dir>/mixing.{md,json}``,
``<docs-dir>/mixing.md`` (between the generated-results markers; the rest of the file is kept) and
``<docs-dir>/img/mixing_alpha.png``.

Usage:
    python examples/research/mixing.py --config examples/configs/research_mixing_cpu.yaml
    python examples/research/mixing.py --config examples/configs/research_mixing_gpu.yaml --model intfloat/multilingual-e5-base
    python examples/research/mixing.py --config examples/configs/research_strategies_cpu.yaml --dry-run
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    EXAMPLES,
    Clock,
    load_config,
    parse_run,
    resolve_model,
    save_figure,
    write_doc_block,
)

sys.path.insert(0, str(EXAMPLES))
import reproduce  # noqa: E402  (examples/reproduce.py: the cached grid, summaries and tables)
import train  # noqa: E402  (examples/train.py)

from st_hybrid.io import changed_inputs, content_hash, write_json, write_text  # noqa: E402

logger = logging.getLogger(__name__)

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
    parser.add_argument(
        "--merge-alphas",
        type=_csv(float),
        help="overrides research.merge_alphas: the alphas whose runs are merged",
    )
    parser.add_argument("--docs-dir", default="docs/research", help="where mixing.md and img/ go")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list which runs would be reused or trained and which merges are stored, then stop",
    )
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
        "compare": {
            str(name): {"strategy": str(run["strategy"]), "alpha": float(run["alpha"])}
            for name, run in (research.get("compare") or {}).items()
        },
        "train": bool(research.get("train", True)),
    }
    if args.merge_alphas is not None:
        sweep["merge_alphas"] = args.merge_alphas
    for key in ("alphas", "seeds", "merge_ratios"):
        if getattr(args, key) is not None:
            sweep[key] = getattr(args, key)
    unknown = sorted(set(sweep["strategies"]) - set(STRATEGIES))
    bad_alphas = [a for a in sweep["alphas"] if not 0 <= a <= 1]
    bad_ratios = [r for r in sweep["merge_ratios"] if not 0 < r < 1]
    bad_compare = [
        name
        for name, run in sweep["compare"].items()
        if run["strategy"] not in sweep["strategies"] or not 0 <= run["alpha"] <= 1
    ]
    if unknown or bad_alphas or bad_ratios or bad_compare or not sweep["alphas"] or not sweep["seeds"]:
        raise SystemExit(
            f"{args.config}: research.strategies must be among {list(STRATEGIES)} (got {unknown or 'ok'}), "
            f"alphas in [0, 1] (got {bad_alphas or 'ok'}), merge_ratios strictly between 0 and 1 (got "
            f"{bad_ratios or 'ok'}), each research.compare entry a strategy of research.strategies with an "
            f"alpha in [0, 1] (got {bad_compare or 'ok'}), with at least one alpha and one seed."
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
                merges = tuple(sweep["merge_ratios"]) if alpha in sweep["merge_alphas"] else ()
                cells.append(reproduce.Cell(row, run_overrides(strategy, alpha, seed, sweep, root), merges))
    return cells


def run_overrides(strategy: str, alpha: float, seed: int, sweep: dict, root: Path) -> dict:
    """One run's config overrides; the alpha = 0 run is the shared one, trained as the sweep's first strategy.

    The strategy comparison (:func:`compare_cells`) builds its runs here too, so their cache keys are the
    sweep's and a comparison over trained runs trains nothing.
    """
    shared = alpha == 0 and len(sweep["strategies"]) > 1
    return {
        "strategy": sweep["strategies"][0] if shared else strategy,
        "alpha": alpha,
        "seed": seed,
        "evaluate_before": False,
        "output_dir": str(root / ("cross_only_a0" if shared else f"{strategy}_a{alpha:g}") / f"seed{seed}"),
    }


def compare_cells(sweep: dict, root: Path) -> list[reproduce.Cell]:
    """The strategy comparison: one cell per ``research.compare`` name and seed (seed-major), every merge ratio.

    Each name points at a run of the sweep (e.g. ``mono: {strategy: hybrid, alpha: 1}``), so the cells reuse
    its trained models; rows are labelled by the name (``"mono"``, ``"mono r=0.5"``).
    """
    return [
        reproduce.Cell(
            name,
            run_overrides(run["strategy"], run["alpha"], seed, sweep, root),
            tuple(sweep["merge_ratios"]),
        )
        for seed in sweep["seeds"]
        for name, run in sweep["compare"].items()
    ]


# -- reuse of trained runs ---------------------------------------------------------------------------
def _json(value):
    return json.loads(json.dumps(value, default=str))  # as cached_json compares: after a JSON round trip


def cache_status(cells, parse) -> list[dict]:
    """Per cell: its label, folder and whether it is ``"reused"`` or ``"train"`` (with ``why``), and how many
    of its merges have a stored report."""
    status = []
    for cell in cells:
        arguments = parse(cell.overrides)
        folder = arguments.output_dir
        record = folder / "results.inputs.json"
        current = _json(train.run_inputs(arguments))
        entry = {"label": cell.label, "folder": str(folder)}
        if not (folder / "model" / "modules.json").exists() or not (folder / "results.json").exists():
            entry.update(state="train", why="no finished run")
        elif not record.exists():
            entry.update(state="train", why=f"{record.name} is missing")
        else:
            stored = json.loads(record.read_text())
            if stored.get("hash") == content_hash(current):
                entry.update(state="reused", why="same inputs")
            else:
                changed = changed_inputs(stored.get("inputs", {}), current)
                entry.update(state="train", why=f"inputs changed: {', '.join(changed) or 'format'}")
        stored_merges = [r for r in cell.merge_ratios if (folder / "merged" / f"r{r:g}").is_dir()]
        entry["merges"] = f"{len(stored_merges)} of {len(cell.merge_ratios)} merges stored"
        status.append(entry)
    return status


def describe_status(status: list[dict]) -> str:
    return "\n".join(
        f"{e['state']:>8}  {e['label']:<22} {e['folder']}  ({e['why']}; {e['merges']})" for e in status
    )


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
    save_figure(fig, path)


# -- the strategy comparison (research.compare) -------------------------------------------------------
BEST_RULE = (
    "the merge ratio with the highest mean of mono, cross and multi mAP (seed means; r = 1 is the trained "
    "model, r = 0 the shared zero-shot model, not a candidate)"
)


def ratio_rows(summary: dict, names: list[str], ratios: list[float]) -> dict[str, dict]:
    """``"<name> r=<ratio>"`` -> seed statistics, per name in order, merges then r = 1 (the trained model)."""
    rows = {"zero-shot": summary["zero-shot"]} if "zero-shot" in summary else {}
    for name in names:
        for ratio in [*sorted(ratios), 1.0]:
            source = name if ratio == 1 else f"{name} r={ratio:g}"
            if source in summary:
                rows[f"{name} r={ratio:g}"] = summary[source]
    return rows


def mean_map(stats: dict) -> float:
    return sum(stats[m]["mean"] for m in ("mono_map", "cross_map", "multi_map")) / 3


def best_ratios(rows: dict, names: list[str]) -> dict[str, str]:
    """Per name, its row at the best merge ratio (:data:`BEST_RULE`); ties go to the smaller ratio."""
    best = {}
    for name in names:
        candidates = [label for label in rows if label.startswith(f"{name} r=")]
        if candidates:
            best[name] = max(
                candidates, key=lambda label: (round(mean_map(rows[label]), 10), -rows_ratio(label))
            )
    return best


def rows_ratio(label: str) -> float:
    return float(label.rpartition(" r=")[2])


def strategy_curves(rows: dict, names: list[str]) -> dict[str, list[dict]]:
    """Per name, its merge curve from r = 0 (zero-shot) to r = 1 (seed means), for the Pareto helpers."""
    zero = [(0.0, "zero-shot")] if "zero-shot" in rows else []
    curves = {}
    for name in names:
        points = zero + sorted((rows_ratio(label), label) for label in rows if label.startswith(f"{name} r="))
        curves[name] = [
            {"ratio": r, "row": label, **{m: rows[label][m]["mean"] for m in reproduce.COLUMNS}}
            for r, label in points
        ]
    return curves


def _better(a: dict, b: dict, metric: str) -> bool:
    """Whether ``a`` beats ``b`` on ``metric`` (see :data:`reproduce.FRONTS`) by more than the summed seed spread."""
    sign = -1.0 if reproduce.FRONTS.get(metric) == "lower" else 1.0
    return sign * (a[metric]["mean"] - b[metric]["mean"]) > 0 and reproduce.exceeds_spread(
        a[metric], b[metric]
    )


def beaten_beyond_spread(rows: dict, label: str, metric: str) -> list[tuple[str, list[str]]]:
    """The rows that beat ``label`` beyond the seed spread on mono mAP or ``metric`` and are worse on neither
    beyond it, each with the axes it wins: a front point that is there only within the noise."""
    axes = ("mono_map", metric)
    found = []
    for other, stats in rows.items():
        if other == label:
            continue
        wins = [m for m in axes if _better(stats, rows[label], m)]
        if wins and not any(_better(rows[label], stats, m) for m in axes):
            found.append((other, wins))
    return found


def pareto_verdict(
    curves: dict[str, list[dict]], reference: str = "hybrid", rows: dict | None = None
) -> tuple[list[str], dict]:
    """Per front (mono vs multi mAP, mono vs rank distance): the rows on the front of every point, whether any
    of ``reference``'s trained or merged points is among them, and (given ``rows``, the seed statistics)
    whether another row beats such a point beyond the seed spread."""
    points = {p["row"]: p for pts in curves.values() for p in pts}  # zero-shot once
    lines, verdict = [], {}
    for metric in reproduce.FRONTS:
        front = reproduce.pareto_front(list(points.values()), metric)
        ordered = sorted(front, key=lambda p: -p["mono_map"])
        ours = [p["row"] for p in ordered if p["row"].startswith(f"{reference} r=")]
        verdict[metric] = ours
        axis = "multi mAP" if metric == "multi_map" else "rank distance"
        line = (
            f"- mono mAP vs {axis}: the front is {', '.join(p['row'] for p in ordered)}; {reference} is "
            + (f"on it ({', '.join(ours)})." if ours else "not on it.")
        )
        for label in ours if rows else []:
            beaten = beaten_beyond_spread(rows, label, metric)
            names = {"mono_map": "mono mAP", metric: axis}
            line += (
                f" Within the seed spread, though, {label} is beaten: "
                + "; ".join(
                    f"{other} is better on {' and '.join(names[m] for m in wins)}" for other, wins in beaten
                )
                + " beyond the spread, and worse on neither beyond it."
                if beaten
                else f" No row beats {label} beyond the seed spread."
            )
        lines.append(line)
    return lines, verdict


def plot_merge_curves(rows: dict, names: list[str], path: Path) -> None:
    """Each metric against the merge ratio r, one line per strategy, seed standard deviation as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reproduce.COLUMNS), figsize=(4.2 * len(reproduce.COLUMNS), 3.8))
    for ax, metric in zip(axes, reproduce.COLUMNS):
        for index, name in enumerate(names):
            labels = (["zero-shot"] if "zero-shot" in rows else []) + [
                label for label in rows if label.startswith(f"{name} r=")
            ]
            ratios = [0.0 if label == "zero-shot" else rows_ratio(label) for label in labels]
            ax.errorbar(
                [r + (index - 1.5) * 0.008 for r in ratios],  # a small offset keeps error bars apart
                [rows[label][metric]["mean"] for label in labels],
                yerr=[rows[label][metric]["std"] for label in labels],
                marker="o",
                capsize=3,
                color=f"C{index}",
                label=name,
            )
        ax.set_xlabel("merge ratio r (0 = zero-shot, 1 = trained)")
        ax.set_title(METRIC_TITLES[metric], fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle("Merge curves per strategy, (1 - r)·base + r·trained (mean ± seed std)", fontsize=10)
    save_figure(fig, path)


def render_strategies(
    grid: dict, summary: dict, sweep: dict, options: dict, command: str, timing: str
) -> str:
    """The strategy comparison in markdown: all ratios, best ratios, differences, Pareto verdict, plots."""
    base = parse_run(options)
    names = list(sweep["compare"])
    rows = ratio_rows(summary, names, sweep["merge_ratios"])
    best = best_ratios(rows, names)
    eval_name = base.evaluation.eval_name
    pending = len(compare_cells(sweep, base.output_dir)) - sum(len(r) for r in grid.get("runs", {}).values())
    training = base.training
    runs = "; ".join(
        f"{name} = the `{run['strategy']}` alpha {run['alpha']:g} runs "
        f"(`{Path(run_overrides(run['strategy'], run['alpha'], 1, sweep, base.output_dir)['output_dir']).parent.name}/`)"
        for name, run in sweep["compare"].items()
    )
    reference = "hybrid" if "hybrid" in best else names[0]
    pairs = [(best[reference], best[name]) for name in names if name != reference and name in best]
    same_ratio = [
        (f"{reference} r={r:g}", f"{name} r={r:g}")
        for r in [*sorted(sweep["merge_ratios"]), 1.0]
        for name in names
        if name != reference and f"{name} r={r:g}" in rows and f"{reference} r={r:g}" in rows
    ]
    to_zero = [(best[name], "zero-shot") for name in names if name in best and "zero-shot" in rows]
    curves = strategy_curves(rows, names)
    front_lines, _ = pareto_verdict(curves, reference, rows) if best else ([], {})
    lines = [
        f"Command: `{command}`" + (f" ({pending} runs still to come: partial results)" if pending else ""),
        "",
        f"- Model: `{base.model.base_model_name or base.model.model}` (local: `{base.model.model}`).",
        f"- Runs (trained by `make research-mixing`, reused here): {runs}. Seeds "
        f"{', '.join(map(str, sweep['seeds']))}; every run {training.max_steps} steps x batch "
        f"{training.per_device_train_batch_size}, lr {training.learning_rate:g}, on {', '.join(base.data.train_data)}.",
        f"- Merges with the base model at r = {', '.join(f'{r:g}' for r in sweep['merge_ratios'])}: "
        "(1 − r)·base + r·trained, no extra training.",
        f"- Evaluation pool: **SUBSET** of {eval_name}, {grid['eval_pool']}.",
        f"- Best ratio per strategy (rule fixed before the run): {BEST_RULE}.",
        f"- Timing: {timing}.",
        "",
        f"**Every merge ratio** (SUBSET of {eval_name}; mean ± sample standard deviation over the seeds):",
        "",
        reproduce.markdown_table(rows, f"{eval_name} SUBSET"),
        "",
        f"**Each strategy at its best ratio** (SUBSET of {eval_name}):",
        "",
        reproduce.markdown_table(
            {label: rows[label] for label in ["zero-shot", *best.values()] if label in rows},
            f"{eval_name} SUBSET",
        )
        if best
        else "(no results yet)",
        "",
        f"**{reference} against the others, each at its best ratio** (** = larger than the two rows' seed "
        "standard deviations added; rank distance: negative is better):",
        "",
        reproduce.compare(rows, pairs) if pairs else "(no pair yet)",
        "",
        f"**{reference} against the others at the same ratio**:",
        "",
        reproduce.compare(rows, same_ratio) if same_ratio else "(no pair yet)",
        "",
        "**Each strategy's best ratio against the zero-shot model** (one deterministic run: only the strategy's "
        "spread counts):",
        "",
        reproduce.compare(rows, to_zero) if to_zero else "(no pair yet)",
        "",
        "**Pareto fronts** over every point above (seed means; zero-shot included):",
        "",
        *front_lines,
        "",
        "![Pareto: mono mAP vs multi mAP and vs rank distance, each strategy's merge curve]"
        "(img/strategies_pareto.png)",
        "",
        "![metrics against the merge ratio, per strategy](img/strategies_merge_curves.png)",
    ]
    return "\n".join(lines)


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


def check_cells(cells, parse, sweep: dict) -> None:
    """Check the cache before any training: refuse to train if the config says the runs must be reused."""
    to_train = [e for e in cache_status(cells, parse) if e["state"] != "reused"]
    if to_train and not sweep["train"]:
        raise SystemExit(
            f"research.train is false, but {len(to_train)} runs would train:\n{describe_status(to_train)}\n"
            "Train them first (make research-mixing)."
        )


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    clock = Clock()
    sweep, options = settings(args)
    base = parse_run(options)
    root = base.output_dir
    comparing = bool(sweep["compare"])
    cells = compare_cells(sweep, root) if comparing else build_cells(sweep, root)
    stem = "strategies" if comparing else "mixing"
    docs = Path(args.docs_dir)
    image = docs / "img" / f"{stem}_alpha.png"
    command = " ".join(["python", "examples/research/mixing.py", *argv])

    def parse(overrides: dict):
        return parse_run(options, overrides)

    def write(grid: dict, trained: int, timing: str | None = None, shown: str = command) -> dict:
        summary = reproduce.summarize(reproduce.metric_rows(grid["reports"]))
        done = sum(len(runs) for runs in grid["runs"].values())
        timing = timing or clock.describe(trained, done, len(cells))
        if comparing:
            block = render_strategies(grid, summary, sweep, options, shown, timing)
            title = "Strategies at their best merge ratio: mono, cross, hybrid, mixed"
            rows = ratio_rows(summary, list(sweep["compare"]), sweep["merge_ratios"])
            curves = strategy_curves(rows, list(sweep["compare"]))
            if any(len(points) > 1 for points in curves.values()):
                (docs / "img").mkdir(parents=True, exist_ok=True)
                reproduce.plot_pareto(curves, docs / "img" / "strategies_pareto.png")
                plot_merge_curves(rows, list(sweep["compare"]), docs / "img" / "strategies_merge_curves.png")
        else:
            block = render(grid, summary, sweep, options, shown, timing, f"img/{image.name}")
            title = "Hybrid batches vs in-batch mixing across alpha"
            plot_alpha(summary, sweep, image)
        write_text(root / f"{stem}.md", block + "\n")
        record = {
            "sweep": sweep,
            **grid,
            "summary": summary,
            "command": shown,
            "timing": timing,
        }
        write_json(root / f"{stem}.json", record)
        write_doc_block(docs / f"{stem}.md", title, block)
        return summary

    if args.render_only:  # the tables of the last run, with its command and timing
        stored = json.loads((root / f"{stem}.json").read_text())
        grid = {key: stored[key] for key in ("eval_pool", "reports", "runs", "trained")}
        summary = write(grid, 0, stored.get("timing"), stored.get("command", command))
        print(f"Rendered {docs / f'{stem}.md'} from {root / f'{stem}.json'}")
        return summary
    if args.dry_run:
        status = cache_status(cells, parse)
        print(describe_status(status))
        print(f"{sum(e['state'] == 'train' for e in status)} of {len(status)} runs would train.")
        return status
    check_cells(cells, parse, sweep)
    grid = reproduce.run_cells(parse, cells, on_cell=lambda grid: write(grid, len(grid["trained"])))
    summary = write(grid, len(grid["trained"]))
    print((root / f"{stem}.md").read_text())
    print(f"Wrote {root / f'{stem}.md'}, {docs / f'{stem}.md'} and its plots under {docs / 'img'}")
    return summary


if __name__ == "__main__":
    main()
