"""Research Q3: does hybrid training help small and large encoders alike? A ladder of model sizes.

Every model of the config's list (Hub ids, local folders or ``offline-model:NAME``) is evaluated zero-shot
and trained with each strategy of the list (``hybrid`` first, then ``mono`` and ``cross`` if listed) on
the same data with the same number of steps and batch size (a per-model ``overrides`` mapping may set, e.g.,
the learning rate a model family is trained with), and evaluated on the same LAReQA pool. Each model uses
its own stored ``query`` / ``document`` prompts (none for a model without prompts).

Runs are cached (``examples/reproduce.py``'s grid) and ordered so that an interrupted command leaves the
most useful part: every zero-shot evaluation first, then every model's hybrid run, then mono, then cross.
Writes ``<output_dir>/size.{md,json}``, ``<docs-dir>/size.md`` (between the generated-results markers; the
rest is kept) and ``<docs-dir>/img/size_{trend,per_language}.png``.

Usage:
    python examples/research/size.py --config examples/configs/research_size_cpu.yaml
    python examples/research/size.py --config examples/configs/research_size_gpu.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
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
    stored_prompts,
    write_doc_block,
)

sys.path.insert(0, str(EXAMPLES))
import reproduce  # noqa: E402  (examples/reproduce.py: the cached grid, summaries and tables)

from st_hybrid.io import write_json, write_text  # noqa: E402

logger = logging.getLogger("st_hybrid.research.size")

STRATEGIES = ("hybrid", "mono", "cross", "mixed")
SETTINGS_ORDER = ("zero-shot", "hybrid", "mono", "cross", "mixed")
METRIC_TITLES = {
    "mono_map": "mono mAP",
    "cross_map": "cross mAP",
    "multi_map": "multi mAP",
    "rank_distance": "rank distance (bias; lower is better)",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="examples/configs/research_size_cpu.yaml")
    parser.add_argument("--output-dir", help="overrides the config's output_dir")
    parser.add_argument("--docs-dir", default="docs/research", help="where size.md and img/ go")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the tables and plots from <output_dir>/size.json (the last run's results), training nothing",
    )
    return parser.parse_args(argv)


def settings(args) -> tuple[dict, dict]:
    """The ladder (models, strategies, seeds) and the shared train options."""
    research, options = load_config(args.config)
    models = research.get("models") or []
    strategies = list(research.get("strategies", ["hybrid"]))
    seeds = [int(seed) for seed in research.get("seeds", [1])]
    problems = []
    if not models or not all(isinstance(entry, dict) and entry.get("model") for entry in models):
        problems.append("research.models must be a list of mappings, each with a `model` (Hub id, folder or "
                        "offline-model:NAME)")  # fmt: skip
    if set(strategies) - set(STRATEGIES) or not strategies:
        problems.append(f"research.strategies must be among {list(STRATEGIES)}, got {strategies}")
    if not seeds:
        problems.append("research.seeds is empty")
    if problems:
        raise SystemExit(f"{args.config}: " + "; ".join(problems) + ".")
    if args.output_dir:
        options["output_dir"] = args.output_dir
    ladder = {
        "models": [
            {
                "name": entry.get("name") or Path(str(entry["model"]).split(":")[-1]).name,
                "spec": str(entry["model"]),
                "family": entry.get("family", ""),
                "overrides": dict(entry.get("overrides") or {}),
            }
            for entry in models
        ],
        "strategies": strategies,
        "seeds": seeds,
    }
    return ladder, options


def count_parameters(folder: Path) -> int | None:
    """Parameters of a local sentence-transformers folder, from its safetensors headers (nothing is loaded)."""
    from safetensors import safe_open

    files = [f for f in sorted(Path(folder).rglob("*.safetensors")) if "checkpoints" not in f.parts]
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118  (a safetensors handle is not iterable)
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def _millions(count: int | None) -> str:
    """18M, 118M, 308M; a tiny test model's exact count."""
    if not count:
        return "?"
    return f"{count / 1e6:.0f}M" if count >= 1e7 else f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count:,}"


def _prompts(model: dict) -> str:
    prompts = model.get("prompts") or {}
    if not any(prompts.values()):
        return "none"
    return f"{prompts.get('query_prompt')!r} / {prompts.get('passage_prompt')!r}"


def model_options(entry: dict, options: dict, root: Path) -> dict:
    """The train options of one model of the ladder: its path, own prompts, folder and overrides."""
    path = resolve_model(entry["spec"])
    return {
        **options,
        "model": path,
        "base_model_name": entry["spec"] if not entry["spec"].startswith("offline-model:") else entry["name"],
        **stored_prompts(path),
        "output_dir": str(root / entry["name"]),
        **entry["overrides"],
    }


def cells_for(strategy: str, seeds: list[int], root: Path) -> list[reproduce.Cell]:
    return [
        reproduce.Cell(
            strategy,
            {
                "strategy": strategy,
                "seed": seed,
                "evaluate_before": False,
                "output_dir": str(root / strategy / f"seed{seed}"),
            },
        )
        for seed in seeds
    ]


def per_language_mean(reports: list[dict], metric: str) -> dict[str, float]:
    """Seed mean of a per-language metric."""
    languages = reports[0]["per_language"]
    return {lang: statistics.fmean(r["per_language"][lang][metric] for r in reports) for lang in languages}


def trend_table(results: dict, ladder: dict, eval_name: str) -> str:
    lines = [
        f"| model (family) | parameters | setting | {eval_name} mono mAP | cross mAP | multi mAP | "
        "rank distance (bias, lower is better) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in ladder["models"]:
        model = results.get(entry["name"])
        if not model:
            continue
        summary = reproduce.summarize(reproduce.metric_rows(model["reports"]))
        for setting in SETTINGS_ORDER:
            if setting not in summary:
                continue
            stats = summary[setting]
            cells = " | ".join(reproduce._cell(stats[m], m) for m in reproduce.COLUMNS)
            family = f" ({entry['family']})" if entry["family"] else ""
            lines.append(
                f"| {entry['name']}{family} | {_millions(model.get('parameters'))} | {setting} | {cells} | "
                f"{stats['mono_map']['n']} |"
            )
    return "\n".join(lines)


def gains_table(results: dict, ladder: dict) -> str:
    """Each trained setting minus the model's zero-shot evaluation."""
    combined, pairs = {}, []
    for entry in ladder["models"]:
        model = results.get(entry["name"])
        if not model:
            continue
        summary = reproduce.summarize(reproduce.metric_rows(model["reports"]))
        for setting, stats in summary.items():
            combined[f"{entry['name']} {setting}"] = stats
        pairs += [
            (f"{entry['name']} {setting}", f"{entry['name']} zero-shot")
            for setting in SETTINGS_ORDER[1:]
            if setting in summary
        ]
    return reproduce.compare(combined, pairs) if pairs else "(no trained run yet)"


def language_tables(results: dict, ladder: dict) -> str:
    """Per model: per query language, zero-shot -> hybrid (mono mAP, multi mAP, rank distance)."""
    parts = []
    for entry in ladder["models"]:
        model = results.get(entry["name"])
        if not model or "zero-shot" not in model["reports"]:
            continue
        trained = "hybrid" if "hybrid" in model["reports"] else None
        seen = set(model["runs"].get("hybrid", [{}])[0].get("train_languages") or [])
        header = f"**{entry['name']}** ({_millions(model.get('parameters'))}): zero-shot"
        header += " → hybrid" if trained else " (no trained run yet)"
        lines = [
            header,
            "",
            "| query language | seen in training | mono mAP | multi mAP | rank distance |",
            "|---|---|---|---|---|",
        ]
        columns = {}
        for metric in ("mono_map", "multi_map", "rank_distance"):
            zero = per_language_mean(model["reports"]["zero-shot"], metric)
            after = per_language_mean(model["reports"][trained], metric) if trained else {}
            columns[metric] = (zero, after)
        for lang in columns["mono_map"][0]:
            cells = []
            for metric, (zero, after) in columns.items():
                digits = 1 if metric == "rank_distance" else 3
                cell = f"{zero[lang]:.{digits}f}"
                if after:
                    cell += f" → {after[lang]:.{digits}f}"
                cells.append(cell)
            lines.append(
                f"| {lang} | {'yes' if lang in seen else 'no' if seen else '?'} | " + " | ".join(cells) + " |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def plot_trend(results: dict, ladder: dict, path: Path) -> None:
    """Each metric against the parameter count (log scale), one line per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reproduce.COLUMNS), figsize=(4.2 * len(reproduce.COLUMNS), 3.9))
    names = [
        e["name"] for e in ladder["models"] if e["name"] in results and results[e["name"]].get("parameters")
    ]
    for ax, metric in zip(axes, reproduce.COLUMNS):
        for index, setting in enumerate(SETTINGS_ORDER):
            points = []
            for name in names:
                model = results[name]
                if setting in model["reports"]:
                    stats = reproduce.summarize(reproduce.metric_rows({setting: model["reports"][setting]}))[
                        setting
                    ]
                    points.append((model["parameters"], stats[metric]["mean"], stats[metric]["std"]))
            if points:
                style = "k--" if setting == "zero-shot" else f"C{index}-"
                ax.errorbar(
                    *zip(*points),
                    fmt=style + "o" if setting != "zero-shot" else "ko--",
                    capsize=3,
                    label=setting,
                )
        ax.set_xscale("log")
        ax.minorticks_off()
        parameters = [results[name]["parameters"] for name in names]
        ax.set_xticks(
            parameters, [f"{name}\n{_millions(p)}" for name, p in zip(names, parameters)], fontsize=6
        )
        ax.set_xlabel("parameters (log scale)")
        ax.set_title(METRIC_TITLES[metric], fontsize=10)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.suptitle("Model size ladder (different families: size is confounded with family)", fontsize=10)
    save_figure(fig, path)


def plot_languages(results: dict, ladder: dict, path: Path) -> None:
    """Per model, multi mAP and rank distance per query language: zero-shot vs hybrid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        e["name"]
        for e in ladder["models"]
        if e["name"] in results and "zero-shot" in results[e["name"]]["reports"]
    ]
    if not names:
        return
    fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 6.5), squeeze=False)
    for column, name in enumerate(names):
        reports = results[name]["reports"]
        for row, metric in enumerate(("multi_map", "rank_distance")):
            ax = axes[row][column]
            zero = per_language_mean(reports["zero-shot"], metric)
            languages = list(zero)
            x = range(len(languages))
            ax.bar(
                [i - 0.2 for i in x], [zero[lang] for lang in languages], 0.4, label="zero-shot", color="0.6"
            )
            if "hybrid" in reports:
                after = per_language_mean(reports["hybrid"], metric)
                ax.bar(
                    [i + 0.2 for i in x], [after[lang] for lang in languages], 0.4, label="hybrid", color="C0"
                )
            ax.set_xticks(list(x), languages, fontsize=8)
            ax.set_title(f"{name}: {METRIC_TITLES[metric]}", fontsize=9)
        axes[0][column].legend(fontsize=7)
    save_figure(fig, path)


def render(results: dict, ladder: dict, options: dict, command: str, timing: str, pending: int) -> str:
    base = parse_run({k: v for k, v in options.items() if k != "model"})
    training = base.training
    any_run = next((runs[0] for model in results.values() for runs in model["runs"].values() if runs), None)
    train_pool = (
        f"{any_run['train_pairs']:,} pairs in {len(any_run['train_languages'])} languages "
        f"({', '.join(any_run['train_languages'])})"
        if any_run
        else "(no run finished yet)"
    )
    pools = sorted({model["eval_pool"] for model in results.values() if model.get("eval_pool")})
    models = []
    for entry in ladder["models"]:
        model = results.get(entry["name"], {})
        extra = f"; overrides {entry['overrides']}" if entry["overrides"] else ""
        models.append(
            f"`{entry['spec']}` ({_millions(model.get('parameters'))} parameters, {entry['family'] or 'family not given'}; "
            f"prompts {_prompts(model)}{extra})"
        )
    lines = [
        f"Command: `{command}`" + (f" ({pending} runs still to come: partial results)" if pending else ""),
        "",
        "- Models (different families: size is confounded with family and training recipe): "
        + "; ".join(models)
        + ".",
        f"- Training data: {', '.join(base.data.train_data)}: {train_pool}, cross_partners={base.data.cross_partners}.",
        f"- Budget, the same data for every model: {training.max_steps} steps x batch "
        f"{training.per_device_train_batch_size}, lr {training.learning_rate:g} (unless overridden above), "
        f"weight decay {training.weight_decay:g}, max length {base.model.max_seq_length} (training), word "
        f"embeddings {'frozen' if base.model.freeze_embeddings else 'trained'} (transformers), loss {base.loss.loss}; "
        f"strategies {', '.join(ladder['strategies'])}; seeds {', '.join(map(str, ladder['seeds']))}.",
        f"- Evaluation pool: {base.evaluation.eval_name}, {'; '.join(pools) or '(pending)'}.",
        f"- Timing: {timing}.",
        "",
        "Mean over the seeds (± sample standard deviation when there are several):",
        "",
        trend_table(results, ladder, base.evaluation.eval_name),
        "",
        "Trained minus zero-shot, per model (** = larger than the seed standard deviation; needs several seeds):",
        "",
        gains_table(results, ladder),
        "",
        "![trend with size](img/size_trend.png)",
        "",
        "Per query language (XQuAD-R pool above):",
        "",
        language_tables(results, ladder),
        "",
        "![per language](img/size_per_language.png)",
    ]
    return "\n".join(lines)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    clock = Clock()
    ladder, options = settings(args)
    root = parse_run({k: v for k, v in options.items() if k != "model"}).output_dir
    docs = Path(args.docs_dir)
    command = " ".join(["python", "examples/research/size.py", *argv])
    total = len(ladder["models"]) * len(ladder["strategies"]) * len(ladder["seeds"])

    def write(results: dict, timing: str | None = None, shown: str = command) -> None:
        trained = sum(len(model.get("trained", [])) for model in results.values())
        done = sum(len(runs) for model in results.values() for runs in model["runs"].values())
        timing = timing or clock.describe(trained, done, total)
        block = render(results, ladder, options, shown, timing, total - done)
        write_text(root / "size.md", block + "\n")
        write_json(
            root / "size.json", {"ladder": ladder, "results": results, "command": shown, "timing": timing}
        )
        write_doc_block(docs / "size.md", "Hybrid training across model sizes", block)
        plot_trend(results, ladder, docs / "img" / "size_trend.png")
        plot_languages(results, ladder, docs / "img" / "size_per_language.png")

    if args.render_only:  # the tables of the last run, with its command and timing
        stored = json.loads((root / "size.json").read_text())
        write(stored["results"], stored.get("timing"), stored.get("command", command))
        print(f"Rendered {docs / 'size.md'} from {root / 'size.json'}")
        return stored["results"]

    results: dict[str, dict] = {}
    resolved = {entry["name"]: model_options(entry, options, root) for entry in ladder["models"]}

    def run(entry: dict, cells: list) -> None:
        model_opts = resolved[entry["name"]]
        model = results.setdefault(
            entry["name"],
            {"reports": {}, "runs": {}, "trained": [], "path": model_opts["model"],
             "prompts": {k: model_opts.get(k) for k in ("query_prompt", "passage_prompt")}},
        )  # fmt: skip

        before = list(model["trained"])

        def merge(grid: dict) -> None:
            model["reports"].update(grid["reports"])
            model["runs"].update(grid["runs"])
            model["eval_pool"] = grid["eval_pool"]
            model["trained"] = before + list(grid["trained"])
            write(results)

        reproduce.run_cells(lambda overrides: parse_run(model_opts, overrides), cells, on_cell=merge)
        local = Path(model_opts["model"])
        trained_dirs = [Path(run["output_dir"]) / "model" for runs in model["runs"].values() for run in runs]
        for folder in [local, *trained_dirs]:
            if folder.is_dir() and model.get("parameters") is None:
                model["parameters"] = count_parameters(folder)
        write(results)

    for entry in ladder["models"]:  # every zero-shot evaluation first
        run(entry, [])
    for strategy in ladder["strategies"]:
        for entry in ladder["models"]:
            run(entry, cells_for(strategy, ladder["seeds"], Path(resolved[entry["name"]]["output_dir"])))
    print((root / "size.md").read_text())
    return results


if __name__ == "__main__":
    main()
