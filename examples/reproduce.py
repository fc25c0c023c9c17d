"""Reproduce the paper's comparison: mono vs cross vs hybrid (vs mixed) batches, several seeds.

Trains every strategy with the same budget, base model, data and seeds, evaluates each on the same
LAReQA set, and prints the paper-style table (mean +- standard deviation over seeds) with the
zero-shot base model as a row. The same tool runs the research knobs: an alpha sweep
(``--alphas``) and the number of training languages (``--language-counts``).

Usage:
    python examples/reproduce.py --config examples/configs/reproduce_cpu.yaml --model PATH_OR_HUB_ID
    python examples/reproduce.py --config ... --strategies hybrid --alphas 0,0.25,0.5,0.75,1 --seeds 1
    python examples/reproduce.py --config ... --strategies hybrid,mono --language-counts 2,4,7

Writes ``<output_dir>/comparison.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402  (examples/train.py, the single-run entry point)

COLUMNS = ("mono_map", "cross_map", "multi_map", "rank_distance")


def _csv(kind):
    return lambda text: [kind(item) for item in text.split(",") if item]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", help="base model (Hub id or local folder); overrides the config")
    parser.add_argument("--strategies", type=_csv(str), default=["mono", "cross", "hybrid", "mixed"])
    parser.add_argument("--seeds", type=_csv(int), default=[1, 2, 3])
    parser.add_argument(
        "--alphas", type=_csv(float), help="alpha sweep for hybrid/mixed (default: the config's)"
    )
    parser.add_argument("--language-counts", type=_csv(int), help="train on the first N training languages")
    parser.add_argument("--output-dir", help="overrides the config's output_dir")
    return parser.parse_args(argv)


def run_grid(args) -> dict:
    overrides = {"model": args.model} if args.model else {}
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    base = train.TrainConfig.from_sources(args.config, overrides)
    root = Path(base.output_dir)
    evaluator = train.build_evaluator(base)
    zero_shot = train.cached_evaluation(evaluator, train.load_model(base), root / "zero_shot")
    all_languages = sorted(set(train.build_pairs(base)["query_language"]))

    rows = {"zero-shot": [zero_shot["metrics"]]}
    for label, config in _grid(base, args, all_languages):
        report_file = Path(config.output_dir) / "results.json"
        # A run finished before an interruption is kept, so a re-run resumes the grid.
        results = json.loads(report_file.read_text()) if report_file.exists() else train.run(config)
        rows.setdefault(label, []).append(results["after"]["metrics"])
    return {"config": dataclasses.asdict(base), "seeds": args.seeds, "rows": rows}


def _grid(base, args, all_languages):
    alphas = args.alphas or [base.alpha]
    counts = args.language_counts or [None]
    for strategy in args.strategies:
        for alpha in alphas if strategy in ("hybrid", "mixed") else [base.alpha]:
            for count in counts:
                label = strategy
                if args.alphas and strategy in ("hybrid", "mixed"):
                    label += f" a={alpha:g}"
                if count:
                    label += f" L={count}"
                for seed in args.seeds:
                    folder = Path(base.output_dir) / label.replace(" ", "_").replace("=", "") / f"seed{seed}"
                    yield (
                        label,
                        dataclasses.replace(
                            base,
                            strategy=strategy,
                            alpha=alpha,
                            seed=seed,
                            train_languages=all_languages[:count] if count else base.train_languages,
                            evaluate_before=False,
                            output_dir=str(folder),
                        ),
                    )


def summarize(rows: dict) -> dict:
    """Mean and sample standard deviation (0 for one seed) per row and metric."""
    summary = {}
    for label, runs in rows.items():
        summary[label] = {}
        for metric in COLUMNS:
            values = [run[metric] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[label][metric] = {"mean": statistics.fmean(values), "std": spread, "n": len(values)}
    return summary


def _cell(stats: dict, metric: str, signed: bool = False) -> str:
    digits = 1 if metric == "rank_distance" else 4
    sign = "+" if signed else ""
    mean = f"{stats['mean']:{sign}.{digits}f}"
    return f"{mean} ± {stats['std']:.{digits}f}" if stats["n"] > 1 else mean


def markdown_table(summary: dict, name: str) -> str:
    header = f"| model | {name} mono mAP | cross mAP | multi mAP | rank distance (lower is better) | seeds |"
    lines = [header, "|---|---|---|---|---|---|"]
    for label, metrics in summary.items():
        cells = " | ".join(_cell(metrics[metric], metric) for metric in COLUMNS)
        lines.append(f"| {label} | {cells} | {metrics['mono_map']['n']} |")
    return "\n".join(lines)


def differences(summary: dict, reference: str = "hybrid") -> str:
    """Each strategy against the zero-shot model and the reference strategy against the others.

    A difference counts as real ("**") only when it exceeds the sum of both rows' seed standard
    deviations: a rough but honest bar for 3 seeds.
    """
    trained = [label for label in summary if label != "zero-shot"]
    lines = ["| comparison | mono mAP | cross mAP | multi mAP | rank distance |", "|---|---|---|---|---|"]
    pairs = [(label, "zero-shot") for label in trained]
    if reference in summary:
        pairs += [(reference, label) for label in trained if label != reference]
    for left, right in pairs:
        cells = []
        for metric in COLUMNS:
            a, b = summary[left][metric], summary[right][metric]
            diff = a["mean"] - b["mean"]
            real = abs(diff) > a["std"] + b["std"] and a["n"] > 1
            digits = 1 if metric == "rank_distance" else 4
            cells.append(f"{diff:+.{digits}f}" + (" **" if real else ""))
        lines.append(f"| {left} − {right} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary)
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(4 * len(COLUMNS), 3.8))
    for ax, metric in zip(axes, COLUMNS):
        means = [summary[label][metric]["mean"] for label in labels]
        stds = [summary[label][metric]["std"] for label in labels]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        low, high = min(means) - max(stds + [0]) * 2, max(means) + max(stds + [0]) * 2
        ax.set_ylim(max(0.0, low - 0.05 * abs(high - low)), high + 0.05 * abs(high - low) + 1e-6)
        ax.set_title(metric.replace("_", " ") + (" (lower better)" if metric == "rank_distance" else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    grid = run_grid(args)
    root = Path(grid["config"]["output_dir"])
    summary = summarize(grid["rows"])
    table = markdown_table(summary, grid["config"]["eval_name"])
    table += "\n\nDifferences (** = larger than the two rows' seed standard deviations added):\n\n"
    table += differences(summary)
    (root / "comparison.md").write_text(table + "\n")
    (root / "comparison.json").write_text(json.dumps({**grid, "summary": summary}, indent=2))
    plot(summary, root / "comparison.png")
    print(table)
    print(f"\nWrote {root / 'comparison.md'}, comparison.json, comparison.png")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
