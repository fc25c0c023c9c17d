"""Evaluate a sentence-transformers model on XQuAD-R or MLQA-R (LAReQA): mono / cross / multi mAP, rank distance.

Writes ``{name}_metrics.json``, ``{name}_metrics.csv``, ``{name}_pair_map.csv`` and ``{name}_pair_map.png``
to ``--output`` and prints the main numbers.

Usage:
    # zero-shot multilingual-e5-small, full XQuAD-R (offline copy of the model, see ../shared/tools)
    BASE_MODEL=$(../shared/tools/offline-model .venv/bin/python)
    .venv/bin/python examples/evaluate_model.py --model $BASE_MODEL --data ../shared/data/xquad-r \\
        --output results/zero-shot-e5-small

    # a quick subset
    .venv/bin/python examples/evaluate_model.py --model $BASE_MODEL --languages en de ar --max-articles 5

    # merge ratios of a fine-tuned model, no retraining: (1 - r)*base + r*tuned for each r, one report each
    .venv/bin/python examples/evaluate_model.py --model outputs/recipe_cpu/model --merge-base $BASE_MODEL \\
        --merge-ratios 0.4 0.5 0.6 --output results/recipe-merge-sweep
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from sentence_transformers import SentenceTransformer

from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator

MAIN_METRICS = ("mono_map", "cross_map", "multi_map", "rank_distance", "multi_ndcg@10", "multi_recall@10")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Model folder or Hub id.")
    parser.add_argument("--data", default="../shared/data/xquad-r", help="LAReQA folder (xquad-r or mlqa-r).")
    parser.add_argument("--name", default=None, help="Evaluation name (default: the data folder name).")
    parser.add_argument("--languages", nargs="*", default=None, help="Languages (default: all).")
    parser.add_argument("--max-articles", type=int, default=None, help="First N articles per language.")
    parser.add_argument("--settings", nargs="*", default=["mono", "cross", "multi"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--query-prompt", default=None, help="e.g. 'query: ' (default: the model's 'query' prompt)."
    )
    parser.add_argument(
        "--corpus-prompt", default=None, help="e.g. 'passage: ' (default: the model's 'document' prompt)."
    )
    parser.add_argument("--output", default="results/evaluate", help="Folder for the report files.")
    parser.add_argument(
        "--merge-base",
        default=None,
        help="The model --model was fine-tuned from: evaluate (1 - r)*base + r*model for each --merge-ratios.",
    )
    parser.add_argument(
        "--merge-ratios", type=float, nargs="+", default=None, help="Merge ratios r, with --merge-base."
    )
    args = parser.parse_args(argv)
    if (args.merge_base is None) != (args.merge_ratios is None):
        parser.error("--merge-base and --merge-ratios go together: give both, or neither.")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Evaluate ``--model`` (one report), or its merges with ``--merge-base`` (one report per ratio)."""
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(
        args.data,
        languages=args.languages,
        max_articles=args.max_articles,
        name=args.name or Path(args.data).name,
        settings=args.settings,
        batch_size=args.batch_size,
        query_prompt=args.query_prompt,
        corpus_prompt=args.corpus_prompt,
        show_progress_bar=True,
    )
    if args.merge_ratios:
        reports = merge_sweep(args, evaluator)
        print(
            f"\n{describe_pool(next(iter(reports.values())), args)}: {args.model} merged with {args.merge_base}"
        )
        print(sweep_table(reports))
        return reports
    report = evaluate_into(evaluator, SentenceTransformer(args.model), Path(args.output))
    print(json.dumps({key: report["metrics"].get(key) for key in MAIN_METRICS}, indent=2))
    print(f"{describe_pool(report, args)}, {report['seconds']:.0f} s; report in {args.output}")
    return report


def evaluate_into(evaluator: LanguageAwareRetrievalEvaluator, model, output: Path) -> dict:
    """Evaluate ``model``, writing the report files to ``output``; the report, with the seconds it took."""
    start = time.perf_counter()
    evaluator(model, output_path=str(output))
    return {**evaluator.last_report, "seconds": time.perf_counter() - start}


def merge_sweep(args: argparse.Namespace, evaluator: LanguageAwareRetrievalEvaluator) -> dict[float, dict]:
    """Evaluate ``(1 - r)·base + r·model`` for each ratio r, each into ``{output}/r{r}``; reports by ratio."""
    from st_hybrid.merge import interpolate

    base, tuned = SentenceTransformer(args.merge_base), SentenceTransformer(args.model)
    reports = {}
    for ratio in args.merge_ratios:
        merged = interpolate(base, tuned, ratio)
        reports[ratio] = evaluate_into(evaluator, merged, Path(args.output) / f"r{ratio:g}")
        metrics = reports[ratio]["metrics"]
        print(
            f"r={ratio:g}: " + ", ".join(f"{name} {metrics[name]:.4f}" for name in MAIN_METRICS), flush=True
        )
    return reports


def sweep_table(reports: dict[float, dict]) -> str:
    """A markdown table with one row per merge ratio and the main metrics as columns."""
    lines = ["| merge ratio | " + " | ".join(MAIN_METRICS) + " |", "|---" * (len(MAIN_METRICS) + 1) + "|"]
    for ratio, report in reports.items():
        cells = " | ".join(f"{report['metrics'][name]:.4f}" for name in MAIN_METRICS)
        lines.append(f"| {ratio:g} | {cells} |")
    return "\n".join(lines)


def describe_pool(report: dict, args: argparse.Namespace) -> str:
    """The pool in words, e.g. '13090 queries x 13014 candidates, 11 languages, full pool'."""
    subset = [f"first {args.max_articles} articles per language"] if args.max_articles else []
    subset += [f"languages {' '.join(args.languages)}"] if args.languages else []
    return (
        f"{report['num_queries']} queries x {report['num_candidates']} candidates, "
        f"{len(report['languages'])} languages, {'subset: ' + ', '.join(subset) if subset else 'full pool'}"
    )


if __name__ == "__main__":
    main()
