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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model = SentenceTransformer(args.model)
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
    start = time.perf_counter()
    evaluator(model, output_path=args.output)
    report = evaluator.last_report
    seconds = time.perf_counter() - start
    print(json.dumps({key: report["metrics"].get(key) for key in MAIN_METRICS}, indent=2))
    print(
        f"{report['num_queries']} queries x {report['num_candidates']} candidates, "
        f"{len(report['languages'])} languages, {seconds:.0f} s; report in {args.output}"
    )
    return report


if __name__ == "__main__":
    main()
