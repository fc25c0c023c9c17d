"""Benchmark LanguageAwareRetrievalEvaluator on full XQuAD-R against sentence-transformers' IR evaluator.

Part 1: the full evaluation (13,090 queries x 13,014 candidates; mono, cross and multi settings, pair
matrix) with a model: time spent encoding vs everything else (ranking, metrics). Target: the rest
<= 10% of the encoding time.

Part 1b: the same evaluation with nested pools (``--pools``, by default 1, 2, 4, 8 and 11 languages):
the extra time the sub-pools cost, with the embeddings of part 1 (nothing is encoded twice).

Part 2, in the same run: sentence-transformers' ``InformationRetrievalEvaluator`` on the multilingual
setting with ``map_at_k`` = the pool size (so its MAP is full-depth AP), against our evaluator on the
same queries (multi setting only): both sets of numbers, and the time ratio. ST keeps a Python list of
(score, id) for every candidate of every query at that depth (about 1 MB per query before it turns them
into dicts), so it runs on a stratified subset of queries (``--st-queries``, the same number per
language) against the whole pool; its cost grows linearly with the number of queries.

By default the model is the tiny random BERT of ``st_hybrid.testing`` (fast encoding: the hardest case
for the "rest <= 10% of encoding" target); pass ``--model`` for a real one.

Usage:
    .venv/bin/python benchmarks/evaluator.py
    .venv/bin/python benchmarks/evaluator.py --st-queries 440 --model path/to/model
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from st_hybrid.data import RetrievalCorpus, load_lareqa_retrieval
from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
from st_hybrid.metrics import summarize_ranks
from st_hybrid.testing import build_tiny_model

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "xquad-r"


class EncodeTimer:
    """Wrap ``model.encode`` to add up the seconds and texts it takes.

    With ``cache=True`` an identical call (same texts, same arguments) returns the earlier result, so that
    part 2 does not pay for encoding the 13,014 candidates once more (it only times what is not encoding).
    """

    def __init__(self, model: SentenceTransformer):
        self.seconds = 0.0
        self.texts = 0
        self.cache = False
        self._results: dict = {}
        self._encode = model.encode
        model.encode = self

    def __call__(self, inputs, *args, **kwargs):
        key = (tuple(inputs), args, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        if self.cache and key in self._results:
            return self._results[key]
        start = time.perf_counter()
        try:
            result = self._encode(inputs, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.texts += len(inputs)
        self._results[key] = result
        return result

    def reset(self) -> None:
        self.seconds, self.texts = 0.0, 0


def stratified_queries(corpus: RetrievalCorpus, total: int) -> list[int]:
    """The first ``total / num_languages`` queries of every language (positions in the corpus lists)."""
    by_language = defaultdict(list)
    for i, language in enumerate(corpus.query_languages):
        by_language[language].append(i)
    per_language = max(1, total // len(by_language))
    return [i for positions in by_language.values() for i in positions[:per_language]]


def run_ours(
    corpus: RetrievalCorpus, model, timer: EncodeTimer, batch_size: int, **kwargs
) -> tuple[dict, float]:
    evaluator = LanguageAwareRetrievalEvaluator.from_corpus(
        corpus, name="xquad-r", batch_size=batch_size, **kwargs
    )
    timer.reset()
    start = time.perf_counter()
    evaluator(model)
    return evaluator.last_report, time.perf_counter() - start


def run_st(corpus: RetrievalCorpus, positions: list[int], model, batch_size: int) -> tuple[dict, float]:
    ir = InformationRetrievalEvaluator(
        queries={corpus.query_ids[i]: corpus.query_texts[i] for i in positions},
        corpus=dict(zip(corpus.candidate_ids, corpus.candidate_texts, strict=True)),
        relevant_docs={corpus.query_ids[i]: corpus.relevant[corpus.query_ids[i]] for i in positions},
        map_at_k=[len(corpus.candidate_ids)],
        ndcg_at_k=[10],
        mrr_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[1, 10, 100],
        batch_size=batch_size,
        name="st",
    )
    start = time.perf_counter()
    results = ir(model)
    return results, time.perf_counter() - start


def subset(corpus: RetrievalCorpus, positions: list[int]) -> RetrievalCorpus:
    ids = [corpus.query_ids[i] for i in positions]
    return RetrievalCorpus(
        query_ids=ids,
        query_texts=[corpus.query_texts[i] for i in positions],
        query_languages=[corpus.query_languages[i] for i in positions],
        query_parallel_ids=[corpus.query_parallel_ids[i] for i in positions],
        candidate_ids=corpus.candidate_ids,
        candidate_texts=corpus.candidate_texts,
        candidate_languages=corpus.candidate_languages,
        relevant={qid: corpus.relevant[qid] for qid in ids},
    )


def id_tie_break_metrics(evaluator: LanguageAwareRetrievalEvaluator, model) -> tuple[dict, int]:
    """Our metrics with sentence-transformers' tie rule (equal scores ordered by ascending corpus id) instead
    of the pessimistic one, and the number of relevant candidates tied with another candidate."""
    queries, candidates, _ = evaluator.embed(model)
    scores = queries @ candidates.T
    id_order = np.argsort(np.argsort(np.array(evaluator.candidate_ids)))
    rows, tied = [], 0
    for i, relevant in enumerate(evaluator.layout.relevant):
        row = scores[i]
        ranks = []
        for c in relevant[relevant >= 0]:
            equal = row == row[c]
            tied += int(equal.sum() > 1)
            ranks.append(1 + int((row > row[c]).sum()) + int((equal & (id_order < id_order[c])).sum()))
        rows.append(sorted(ranks))
    width = max(len(r) for r in rows)
    ranks = np.array([r + [np.inf] * (width - len(r)) for r in rows], dtype=float)
    summary = summarize_ranks(
        ranks, {}, evaluator.query_languages, settings=["multi"], recall_at=(1, 10, 100)
    )
    return summary["metrics"], tied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--model", default=None, help="Model folder; the tiny random model by default.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--st-queries", type=int, default=220, help="Queries for the ST comparison (0: skip)."
    )
    parser.add_argument("--pools", default="1,2,4,8,11", help="Nested pool sizes for part 1b (empty: skip).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    corpus = load_lareqa_retrieval(args.data)
    model_path = args.model or build_tiny_model(Path(tempfile.mkdtemp()) / "tiny-bert")
    model = SentenceTransformer(model_path, device="cpu")
    timer = EncodeTimer(model)

    # Part 1: full evaluation, all settings.
    report, total = run_ours(corpus, model, timer, args.batch_size)
    rest = total - timer.seconds
    print(
        f"== {Path(args.data).name}: {report['num_queries']} queries x {report['num_candidates']} candidates, "
        f"{len(report['languages'])} languages, settings {report['settings']}"
    )
    print(f"model: {model_path}")
    print(f"texts encoded: {timer.texts} (distinct queries + distinct candidates)")
    print(
        f"encode: {timer.seconds:.2f} s | everything else: {rest:.2f} s "
        f"= {100 * rest / timer.seconds:.1f}% of encoding (target <= 10%) | total {total:.2f} s"
    )
    print("metrics:", {k: round(v, 4) for k, v in report["metrics"].items()})

    if args.pools:
        # Part 1b: nested pools, the embeddings of part 1 reused (identical encode calls are cached).
        pools = [int(n) for n in args.pools.split(",")]
        timer.cache = True
        pooled, pooled_total = run_ours(corpus, model, timer, args.batch_size, pools=pools)
        timer.cache = False
        pooled_rest = pooled_total - timer.seconds
        print(
            f"\n== nested pools {pools} (first n of {report['languages']}), same embeddings: everything "
            f"else {pooled_rest:.2f} s = {pooled_rest - rest:.2f} s more than the full pool alone"
        )
        for pool in pooled["pools"]:
            metrics = pool["metrics"]
            print(
                f"  {pool['num_languages']:2d} languages, {pool['num_queries']:5d} queries x "
                f"{pool['num_candidates']:5d} candidates: multi mAP {metrics['multi_map']:.4f}, "
                f"nDCG@10 {metrics['multi_ndcg@10']:.4f}"
            )

    if args.st_queries <= 0:
        return
    # Part 2: sentence-transformers' InformationRetrievalEvaluator, multilingual pool, full-depth MAP.
    positions = stratified_queries(corpus, args.st_queries)
    small = subset(corpus, positions)
    timer.cache = True  # the candidates were encoded in part 1 (same texts, same arguments)
    ours, ours_total = run_ours(small, model, timer, args.batch_size, settings=["multi"])
    ours_rest = ours_total - timer.seconds
    small_evaluator = LanguageAwareRetrievalEvaluator.from_corpus(
        small, settings=["multi"], batch_size=args.batch_size
    )
    id_ties, tied = id_tie_break_metrics(small_evaluator, model)
    timer.cache = False
    timer.reset()
    st_results, st_total = run_st(corpus, positions, model, args.batch_size)
    st_rest = st_total - timer.seconds
    st_encode = timer.seconds
    k = len(corpus.candidate_ids)
    pairs = [
        ("map (full depth)", "multi_map", f"map@{k}"),
        ("ndcg@10", "multi_ndcg@10", "ndcg@10"),
        ("recall@1", "multi_recall@1", "recall@1"),
        ("recall@10", "multi_recall@10", "recall@10"),
        ("recall@100", "multi_recall@100", "recall@100"),
        ("mrr@10", "multi_mrr@10", "mrr@10"),
    ]
    print(
        f"\n== multilingual pool, {len(positions)} queries ({len(positions) // len(report['languages'])} per "
        f"language) x {k} candidates: ours vs sentence-transformers InformationRetrievalEvaluator(map_at_k={k})"
    )
    worst, worst_ties = 0.0, 0.0
    print(f"  {'':17s} {'ours':>9s} {'ours, id ties':>14s} {'ST':>9s}")
    for label, ours_key, st_key in pairs:
        st_value = next(v for key, v in st_results.items() if key.endswith(f"_{st_key}"))
        worst = max(worst, abs(ours["metrics"][ours_key] - st_value))
        worst_ties = max(worst_ties, abs(id_ties[ours_key] - st_value))
        print(f"  {label:17s} {ours['metrics'][ours_key]:9.6f} {id_ties[ours_key]:14.6f} {st_value:9.6f}")
    print(f"  max abs difference to ST: ours {worst:.2e}; ours with ST's tie rule {worst_ties:.2e}")
    print(f"  relevant candidates tied with another candidate: {tied} (ours counts ties against them)")
    print(
        f"  time without encoding: ours {ours_rest:.2f} s, ST {st_rest:.2f} s -> ST / ours = {st_rest / ours_rest:.1f}x"
    )
    print(
        f"  ST encoding (not deduplicated, {len(positions)} queries + {k} candidates): {st_encode:.2f} s; "
        f"ours reused part 1's embeddings"
    )
    print(
        f"  ST extrapolated to all {report['num_queries']} queries: ~{st_rest * report['num_queries'] / len(positions):.0f} s "
        f"without encoding (ours, all settings: {rest:.1f} s)"
    )


if __name__ == "__main__":
    main()
