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
``comparison.md`` is rewritten after every cell, so an interrupted grid leaves a partial table.

The grid is reusable: :func:`run_cells` takes a parser of cell overrides and a list of :class:`Cell` (label,
overrides, merge ratios), and :func:`summarize`, :func:`markdown_table` and :func:`compare` make the tables
(``examples/research/mixing.py`` and ``size.py`` build on them).

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
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402  (examples/train.py, the single-run entry point)

from st_hybrid.io import cached_json, content_hash, path_fingerprint, write_json, write_text  # noqa: E402

COLUMNS = ("mono_map", "cross_map", "multi_map", "rank_distance")
# What run_cells keeps of each run's results.json besides its evaluation.
RUN_FACTS = ("train_pairs", "train_languages", "global_step", "train_loss", "train_seconds")


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


@dataclass(frozen=True)
class Cell:
    """One training run of a grid: its row label, its config overrides and the merge ratios to evaluate.

    Runs sharing a label (e.g. the seeds of one setting) are one row of the table, one report per run.
    """

    label: str
    overrides: dict
    merge_ratios: tuple[float, ...] = ()


def run_cells(parse, cells, on_cell=None) -> dict:
    """Evaluate the base model (zero-shot) and train and evaluate every cell, each cached and resumable.

    Args:
        parse: ``overrides -> train.Arguments``; ``parse({})`` is the base run (model, data, evaluation,
            ``output_dir``: the grid's root, where ``zero_shot/`` goes).
        cells: :class:`Cell` objects, run in order; a cell whose inputs are unchanged is read back.
        on_cell: Called with the grid so far (the dict returned below) after the zero-shot evaluation and
            after each cell, to write partial tables as cells land.

    Returns:
        ``config`` (the base options), ``eval_pool`` (the pool in words), ``reports`` ({row label: [evaluation
        report per run]}: ``"zero-shot"``, every cell label and every merge, ``"<label> r=<ratio>"``), ``runs``
        ({cell label: [:data:`RUN_FACTS` of each run]}) and ``trained`` (the cell labels trained by this call,
        one per run; the others were read back).
    """
    base = parse({})
    evaluator = train.build_evaluator(base)
    base_model = functools.cache(lambda: train.load_model(base))  # not loaded when every result is cached
    zero_shot = cached_json(
        base.output_dir / "zero_shot" / f"{evaluator.name}_metrics.json",
        train.evaluation_inputs(base, base.model.model),
        lambda: train.evaluate_into(evaluator, base_model(), base.output_dir / "zero_shot"),
        f"zero-shot evaluation of {base.model.model}",
    )
    reports, runs, trained = {"zero-shot": [zero_shot]}, {}, []
    grid = {
        "config": base.options(),
        "eval_pool": train.describe_pool(base, zero_shot),
        "reports": reports,
        "runs": runs,
        "trained": trained,
    }
    if on_cell:
        on_cell(grid)
    for cell in cells:
        arguments = parse(cell.overrides)
        if not (arguments.output_dir / "model" / "modules.json").exists():  # unfinished, or its model deleted
            (arguments.output_dir / "results.json").unlink(missing_ok=True)

        def compute(arguments=arguments, label=cell.label):
            trained.append(label)
            return _train(arguments)

        results = cached_json(
            arguments.output_dir / "results.json",
            train.run_inputs(arguments),
            compute,
            f"grid cell {cell.label} ({arguments.output_dir})",
        )
        reports.setdefault(cell.label, []).append(results["after"])
        runs.setdefault(cell.label, []).append(
            {key: results.get(key) for key in RUN_FACTS} | {"output_dir": str(arguments.output_dir)}
        )
        for ratio in cell.merge_ratios:
            report = _merged_evaluation(arguments, base_model, evaluator, ratio)
            reports.setdefault(f"{cell.label} r={ratio:g}", []).append(report)
        if on_cell:
            on_cell(grid)
    return grid


def metric_rows(reports: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The headline metrics of every report, per row (the input of :func:`summarize`)."""
    return {label: [report["metrics"] for report in runs] for label, runs in reports.items()}


def run_grid(args) -> dict:
    def parse(cell_overrides: dict):
        return train.parse_args(["--config", args.config], overrides=_overrides(args, **cell_overrides))

    base = parse({})
    all_languages = sorted(set(train.build_pairs(base)["query_language"]))

    def write_partial(grid: dict) -> None:
        table = markdown_table(summarize(metric_rows(grid["reports"])), base.evaluation.eval_name)
        write_text(base.output_dir / "comparison.md", f"Partial: the grid is still running.\n\n{table}\n")

    grid = run_cells(parse, _grid(base, args, all_languages), on_cell=write_partial)
    return {
        "config": grid["config"],
        "seeds": args.seeds,
        "merge_ratios": args.merge_ratios,
        "eval_pool": grid["eval_pool"],
        "rows": metric_rows(grid["reports"]),
    }


def _train(cell) -> dict:
    """Train one cell from scratch: whatever its folder held is stale or unfinished."""
    cell.run.overwrite = True
    return train.run(cell)


def _merged_evaluation(cell, base_model, evaluator, ratio: float) -> dict:
    """Evaluate ``(1 - ratio) * base + ratio * trained`` (cached while the trained model is unchanged).

    ``base_model`` is a callable returning the loaded base model (loaded only when a merge is computed).
    """
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
        lambda: train.evaluate_into(evaluator, interpolate(base_model(), model_dir, ratio), folder),
        f"merge r={ratio:g} of {cell.output_dir}",
    )


def _grid(base, args, all_languages):
    """A :class:`Cell` per strategy x alpha x language count x seed."""
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
                    overrides = {
                        "strategy": strategy,
                        "alpha": alpha,
                        "seed": seed,
                        "train_languages": all_languages[:count] if count else base.data.train_languages,
                        "evaluate_before": False,
                        "output_dir": str(folder),
                    }
                    yield Cell(label, overrides, tuple(args.merge_ratios))


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


def exceeds_spread(a: dict, b: dict) -> bool:
    """Whether two rows' means differ by more than their seed standard deviations added.

    A rough but honest bar for 3 seeds. At least one row needs several seeds; a row of one run (the
    zero-shot model: a deterministic evaluation) adds no spread.
    """
    return abs(a["mean"] - b["mean"]) > a["std"] + b["std"] and max(a["n"], b["n"]) > 1


def compare(summary: dict, pairs: list[tuple[str, str]]) -> str:
    """A markdown table of ``left - right`` per metric for each pair of rows; ``**`` marks :func:`exceeds_spread`."""
    lines = ["| comparison | mono mAP | cross mAP | multi mAP | rank distance |", "|---|---|---|---|---|"]
    for left, right in pairs:
        cells = []
        for metric in COLUMNS:
            a, b = summary[left][metric], summary[right][metric]
            digits = 1 if metric == "rank_distance" else 4
            cells.append(f"{a['mean'] - b['mean']:+.{digits}f}" + (" **" if exceeds_spread(a, b) else ""))
        lines.append(f"| {left} − {right} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences(summary: dict, reference: str = "hybrid") -> str:
    """Each row against the zero-shot model, and the reference strategy against the others at the same merge ratio.

    A difference counts as real ("**") only when it exceeds the sum of both rows' seed standard
    deviations (:func:`exceeds_spread`).
    """
    trained = [label for label in summary if label != "zero-shot"]
    pairs = [(label, "zero-shot") for label in trained]
    for label in trained:
        head, suffix = _split(label)
        if head != reference and reference + suffix in summary:
            pairs.append((reference + suffix, label))
    return compare(summary, pairs)


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
