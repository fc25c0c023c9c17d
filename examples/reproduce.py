"""Reproduce the paper's comparison: mono vs cross vs hybrid (vs mixed) batches, several seeds, merge sweeps.

Trains every strategy with the same budget, base model, data and seeds, evaluates each on the same
LAReQA set, and prints the paper-style table (mean +- standard deviation over seeds) with the
zero-shot base model as a row. Every trained model is also merged with its base at each
``--merge-ratios`` value (``(1 - r) * base + r * fine-tuned``, no extra training) and evaluated; the
Pareto fronts (mono mAP vs multi mAP, and vs rank distance) per strategy go to ``comparison_pareto.png``.
The same tool runs the research knobs: an alpha sweep (``--alphas``) and the number of training
languages (``--language-counts``).

Finished cells are reused on a re-run only if everything they depend on is unchanged (model and data
files, options, training arguments; see ``st_hybrid.io``); otherwise they are recomputed and the log says why.

Usage:
    python examples/reproduce.py --config examples/configs/reproduce_cpu.yaml --model PATH_OR_HUB_ID
    python examples/reproduce.py --config ... --merge-ratios 0.25,0.5,0.75
    python examples/reproduce.py --config ... --strategies hybrid --alphas 0,0.25,0.5,0.75,1 --seeds 1
    python examples/reproduce.py --config ... --strategies hybrid,mono --language-counts 2,4,7

Writes ``<output_dir>/comparison.{md,json,png}`` and ``comparison_pareto.png``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402  (examples/train.py, the single-run entry point)

from st_hybrid.io import cached_json, content_hash, path_fingerprint, write_json, write_text  # noqa: E402

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
    parser.add_argument(
        "--merge-ratios",
        type=_csv(float),
        default=[0.5],
        help="merge every trained model with its base at these ratios, strictly between 0 and 1 (0 is the "
        "zero-shot row, 1 the trained one); '' for none",
    )
    parser.add_argument("--output-dir", help="overrides the config's output_dir")
    args = parser.parse_args(argv)
    bad = [r for r in args.merge_ratios if not 0 < r < 1]
    if bad:
        parser.error(f"--merge-ratios {bad}: each ratio must lie strictly between 0 and 1.")
    return args


def _overrides(args, **cell) -> dict:
    """Config overrides for the whole grid (from the flags) plus one cell's."""
    overrides = {"model": args.model} if args.model else {}
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    return {**overrides, **cell}


def run_grid(args) -> dict:
    base = train.parse_args(["--config", args.config], overrides=_overrides(args))
    root = base.output_dir
    evaluator = train.build_evaluator(base)
    base_model = train.load_model(base)
    zero_shot_inputs = train.evaluation_inputs(base, base.model.model)
    zero_shot = train.cached_evaluation(evaluator, base_model, root / "zero_shot", zero_shot_inputs)
    all_languages = sorted(set(train.build_pairs(base)["query_language"]))

    rows = {"zero-shot": [zero_shot["metrics"]]}
    for label, cell_overrides in _grid(base, args, all_languages):
        cell = train.parse_args(["--config", args.config], overrides=_overrides(args, **cell_overrides))
        if not (cell.output_dir / "model" / "modules.json").exists():  # unfinished, or its model deleted
            (cell.output_dir / "results.json").unlink(missing_ok=True)
        inputs = train.run_inputs(cell)
        train_cell = functools.partial(_train, cell)
        results = cached_json(cell.output_dir / "results.json", inputs, train_cell, f"grid cell {label}")
        rows.setdefault(label, []).append(results["after"]["metrics"])
        for ratio in args.merge_ratios:
            report = _merged_evaluation(cell, inputs, base_model, evaluator, ratio)
            rows.setdefault(f"{label} r={ratio:g}", []).append(report["metrics"])
    return {
        "config": base.options(),
        "seeds": args.seeds,
        "merge_ratios": args.merge_ratios,
        "eval_pool": train.describe_pool(base, zero_shot),
        "rows": rows,
    }


def _train(cell) -> dict:
    """Train one cell from scratch: whatever its folder held is stale or unfinished."""
    cell.run.overwrite = True
    return train.run(cell)


def _merged_evaluation(cell, cell_inputs: dict, base_model, evaluator, ratio: float) -> dict:
    """Evaluate ``(1 - ratio) * base + ratio * trained`` (cached while the trained model is unchanged)."""
    from st_hybrid.merge import interpolate

    model_dir = cell.output_dir / "model"
    folder = cell.output_dir / "merged" / f"r{ratio:g}"
    inputs = {
        "cell": content_hash(train.run_inputs(cell)),
        "model": path_fingerprint(model_dir),
        "ratio": ratio,
    }
    inputs["evaluation"] = train.evaluation_inputs(cell, cell.model.model)
    return cached_json(
        folder / f"{evaluator.name}_metrics.json",
        inputs,
        lambda: train.evaluate_into(evaluator, interpolate(base_model, model_dir, ratio), folder),
        f"merge r={ratio:g} of {cell.output_dir}",
    )


def _grid(base, args, all_languages):
    """(row label, config overrides) per cell: strategy x alpha x language count x seed."""
    alphas = args.alphas or [base.batches.alpha]
    counts = args.language_counts or [None]
    for strategy in args.strategies:
        for alpha in alphas if strategy in ("hybrid", "mixed") else [base.batches.alpha]:
            for count in counts:
                label = strategy
                if args.alphas and strategy in ("hybrid", "mixed"):
                    label += f" a={alpha:g}"
                if count:
                    label += f" L={count}"
                for seed in args.seeds:
                    folder = base.output_dir / label.replace(" ", "_").replace("=", "") / f"seed{seed}"
                    yield (
                        label,
                        {
                            "strategy": strategy,
                            "alpha": alpha,
                            "seed": seed,
                            "train_languages": all_languages[:count] if count else base.data.train_languages,
                            "evaluate_before": False,
                            "output_dir": str(folder),
                        },
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


def _split(label: str) -> tuple[str, str]:
    """``"hybrid r=0.5"`` -> ``("hybrid", " r=0.5")``; a trained (unmerged) row has no suffix."""
    head, _, ratio = label.partition(" r=")
    return head, f" r={ratio}" if ratio else ""


def differences(summary: dict, reference: str = "hybrid") -> str:
    """Each row against the zero-shot model, and the reference strategy against the others at the same merge ratio.

    A difference counts as real ("**") only when it exceeds the sum of both rows' seed standard
    deviations: a rough but honest bar for 3 seeds.
    """
    trained = [label for label in summary if label != "zero-shot"]
    lines = ["| comparison | mono mAP | cross mAP | multi mAP | rank distance |", "|---|---|---|---|---|"]
    pairs = [(label, "zero-shot") for label in trained]
    for label in trained:
        head, suffix = _split(label)
        if head != reference and reference + suffix in summary:
            pairs.append((reference + suffix, label))
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


# Pareto fronts: mono mAP (higher is better) against a second metric and its direction.
FRONTS = {"multi_map": "higher", "rank_distance": "lower"}


def merge_curves(summary: dict) -> dict[str, list[dict]]:
    """Per trained row, its points over the merge ratio: r = 0 (zero-shot), the merges, r = 1 (trained)."""
    curves = {}
    for label in summary:
        head, suffix = _split(label)
        if label == "zero-shot" or suffix:
            continue
        merged = sorted(
            (float(ratio[3:]), row)
            for row in summary
            for name, ratio in [_split(row)]
            if name == head and ratio
        )
        points = [(0.0, "zero-shot"), *merged, (1.0, label)]
        curves[label] = [
            {"ratio": r, "row": row, **{m: summary[row][m]["mean"] for m in COLUMNS}} for r, row in points
        ]
    return curves


def pareto_front(points: list[dict], metric: str) -> list[dict]:
    """The points no other point beats on mono mAP and ``metric`` at once (see :data:`FRONTS`)."""
    sign = 1.0 if FRONTS[metric] == "higher" else -1.0

    def dominates(q, p):
        better_or_equal = q["mono_map"] >= p["mono_map"] and sign * q[metric] >= sign * p[metric]
        return better_or_equal and (q["mono_map"] > p["mono_map"] or sign * q[metric] > sign * p[metric])

    return [p for p in points if not any(dominates(q, p) for q in points)]


def pareto_table(curves: dict[str, list[dict]]) -> str:
    """Per strategy, its Pareto-optimal ratios; then which strategies reach the front of all points."""
    every = [point for points in curves.values() for point in points]
    lines = ["| strategy | optimal r (mono vs multi) | optimal r (mono vs rank distance) |", "|---|---|---|"]
    for label, points in curves.items():
        cells = [", ".join(f"{p['ratio']:g}" for p in pareto_front(points, metric)) for metric in FRONTS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for metric in FRONTS:
        front = sorted({p["row"] for p in pareto_front(every, metric)})
        lines.append(f"\nOn the front of all rows (mono vs {metric}): {', '.join(front)}")
    return "\n".join(lines)


def plot_pareto(curves: dict[str, list[dict]], path: Path) -> None:
    """Mono mAP against multi mAP and rank distance; each strategy's merge curve, its front in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FRONTS), figsize=(6 * len(FRONTS), 4.5))
    for ax, metric in zip(axes, FRONTS):
        for index, (label, points) in enumerate(curves.items()):
            color = f"C{index}"
            ax.plot(
                [p["mono_map"] for p in points], [p[metric] for p in points], "o:", color=color, alpha=0.5
            )
            front = sorted(pareto_front(points, metric), key=lambda p: p["mono_map"])
            ax.plot(
                [p["mono_map"] for p in front],
                [p[metric] for p in front],
                "o-",
                color=color,
                lw=2,
                label=label,
            )
            for p in points:
                ax.annotate(
                    f"{p['ratio']:g}",
                    (p["mono_map"], p[metric]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        zero = next(iter(curves.values()))[0]
        ax.plot(zero["mono_map"], zero[metric], "k*", markersize=12, label="zero-shot (r=0)")
        ax.set_xlabel("mono mAP")
        ax.set_ylabel(metric.replace("_", " ") + (" (lower is better)" if FRONTS[metric] == "lower" else ""))
        ax.set_title(f"Merge ratio r: mono vs {metric.replace('_', ' ')}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    curves = merge_curves(summary)
    table = f"Evaluation pool: {grid['eval_pool']}.\n\n" + markdown_table(
        summary, grid["config"]["eval_name"]
    )
    table += "\n\nDifferences (** = larger than the two rows' seed standard deviations added):\n\n"
    table += differences(summary)
    table += "\n\nPareto-optimal merge ratios (0 = zero-shot, 1 = trained; seed means):\n\n" + pareto_table(
        curves
    )
    write_text(root / "comparison.md", table + "\n")
    write_json(root / "comparison.json", {**grid, "summary": summary, "merge_curves": curves})
    plot(summary, root / "comparison.png")
    plot_pareto(curves, root / "comparison_pareto.png")
    print(table)
    print(f"\nWrote {root / 'comparison.md'}, comparison.json, comparison.png, comparison_pareto.png")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
