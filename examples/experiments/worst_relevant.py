"""Which language is each query's worst-ranked relevant answer in the multilingual pool?

Rank distance (LAReQA's language bias) is, per query, the rank of its worst-ranked relevant answer minus that of its
best. This experiment for issue 10 says where that worst answer sits: for each candidate language, how often it holds
a query's worst-ranked relevant answer, and the mean multilingual-pool rank of the relevant answers in it. It
re-derives the rank distance from the same ranks (equal to the evaluator's; tests/test_evaluation.py checks it),
so the table explains the number the reports give. Result in docs/results.md.

Usage:
    .venv/bin/python examples/experiments/worst_relevant.py --model outputs/recipe_pp1_seed42/model-merged \\
        --output outputs/recipe_pp1_seed42/worst_relevant.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
from st_hybrid.metrics import macro_average, rank_distance, relevant_languages


def worst_relevant_table(evaluator: LanguageAwareRetrievalEvaluator, model: SentenceTransformer) -> dict:
    """Per candidate language: share of queries whose worst relevant answer it holds, and mean rank there."""
    queries, candidates, _ = evaluator.embed(model)
    ranks = evaluator.rank(queries, candidates)
    aligned = ranks.multi_aligned  # (queries, relevant) 1-based ranks in layout.relevant's column order
    languages = relevant_languages(evaluator.layout)  # same shape, index into layout.languages, -1 padded
    worst_column = np.argmax(np.where(np.isfinite(aligned), aligned, -np.inf), axis=1)
    worst_language = languages[np.arange(len(aligned)), worst_column]
    distance, _ = macro_average(rank_distance(ranks.multi), evaluator.query_languages, evaluator.languages)
    table = {}
    for index, language in enumerate(evaluator.layout.languages):
        in_language = languages == index
        table[language] = {
            "worst_share": float(np.mean(worst_language == index)),
            "mean_rank": float(aligned[in_language].mean()),
        }
    return {"rank_distance": distance, "num_queries": len(aligned), "by_candidate_language": table}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="../shared/data/xquad-r")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--max-articles", type=int, default=None, help="A SUBSET pool (default: the full pool)."
    )
    parser.add_argument("--query-prompt", default=None, help="default: the model's query prompt")
    parser.add_argument("--corpus-prompt", default=None, help="default: the model's document prompt")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(
        args.data,
        max_articles=args.max_articles,
        name=Path(args.data).name,
        batch_size=args.batch_size,
        query_prompt=args.query_prompt,
        corpus_prompt=args.corpus_prompt,
        show_progress_bar=True,
    )
    result = {"model": args.model, **worst_relevant_table(evaluator, SentenceTransformer(args.model))}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"rank distance {result['rank_distance']:.1f} over {result['num_queries']} queries")
    print(
        "| candidate language | share of queries whose worst relevant answer it holds | mean multi-pool rank |"
    )
    print("|---|---|---|")
    for language, row in sorted(
        result["by_candidate_language"].items(), key=lambda item: -item[1]["worst_share"]
    ):
        print(f"| {language} | {row['worst_share']:.3f} | {row['mean_rank']:.1f} |")
    return result


if __name__ == "__main__":
    main()
