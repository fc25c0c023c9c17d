"""Serving-side retrieval setups: shared vs per-language indexes, compressed faiss indexes, quantized
embeddings, and their quality, size and latency.

Hybrid training does not change the architecture, so a model's encode cost per text is unchanged. What a
less language-biased model can change is *how it is served*: a biased model in one multilingual index
loses cross-language answers, and the usual workaround is one index per language with a merge step. This
module builds each setup from precomputed (L2-normalized) embeddings so that they can be compared on
the same encoding:

* :func:`build_index` - faiss ``flat`` (exact inner product), ``sq8`` (exact scan over 8-bit scalar
  codes, scored against the float query), ``hnsw``, ``ivf_flat``, ``ivf_pq``.
* :class:`PerLanguageIndex` - one index per candidate language; results merged by score (``"score"``,
  the same ranking as one shared exact index) or in equal shares per language (``"round_robin"``, the
  language-balanced workaround).
* :class:`QuantizedIndex` / :func:`quantized_search` - int8 / binary corpus embeddings through
  sentence-transformers' ``quantize_embeddings`` / ``semantic_search_faiss``, with float rescoring.
* :func:`topk_ranks` - turns top-k lists into the ranks array of :mod:`st_hybrid.metrics`, so quality is
  computed by the same code as the evaluator (mAP@k, nDCG@10, recall@k, rank distance@k).
* :func:`index_nbytes`, :func:`measure_latency` - bytes of the serialized index, query latency p50/p95 (one
  query at a time) and QPS (batched).

Usage:
    >>> import numpy as np
    >>> from st_hybrid.serving import build_index, search
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((100, 16)).astype("float32")
    >>> corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    >>> scores, ids = search(build_index(corpus, "flat"), corpus[:3], k=1)
    >>> ids[:, 0].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from st_hybrid import metrics

__all__ = [
    "INDEX_KINDS",
    "MERGE_STRATEGIES",
    "LatencyReport",
    "PerLanguageIndex",
    "QuantizedIndex",
    "build_index",
    "index_nbytes",
    "measure_latency",
    "quantized_search",
    "search",
    "topk_quality",
    "topk_ranks",
]

#: faiss index families of :func:`build_index`.
INDEX_KINDS = ("flat", "sq8", "hnsw", "ivf_flat", "ivf_pq")
#: How :class:`PerLanguageIndex` merges its per-language result lists.
MERGE_STRATEGIES = ("score", "round_robin")

# A relevant candidate missing from a top-k list is ranked here: finite, so it still counts as relevant
# (recall and AP divide by it), and far enough that its precision contribution is 0 to float precision.
_NOT_RETRIEVED = 1e15


def _as_float32(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"Embeddings must be a 2-D array (rows, dim), got shape {embeddings.shape}.")
    return embeddings


def build_index(
    embeddings: np.ndarray,
    kind: str = "flat",
    *,
    hnsw_m: int = 32,
    ef_search: int = 128,
    nlist: int | None = None,
    nprobe: int = 8,
    pq_m: int | None = None,
    pq_bits: int = 8,
) -> faiss.Index:
    """Build an inner-product faiss index over (normalized) embeddings.

    Args:
        embeddings: ``(n, dim)`` corpus embeddings; normalized ones make inner product = cosine.
        kind: One of :data:`INDEX_KINDS`.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth (must be >= the ``k`` searched for full recall of the list).
        nlist: IVF cells; ``4 * sqrt(n)`` by default (faiss' rule of thumb), at most ``n // 39``
            so that training has the 39 points per centroid faiss asks for.
        nprobe: IVF cells visited per query.
        pq_m: Product-quantizer sub-vectors (must divide ``dim``); ``dim // 4`` by default.
        pq_bits: Bits per sub-vector code; lowered to ``log2(n)`` for a pool too small to train
            ``2 ** pq_bits`` centroids.

    Returns:
        A trained faiss index holding the embeddings (ids = row numbers).
    """
    embeddings = _as_float32(embeddings)
    n, dim = embeddings.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "sq8":
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        index.train(embeddings)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    elif kind in ("ivf_flat", "ivf_pq"):
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            pq_m = pq_m or max(1, dim // 4)
            if dim % pq_m:
                raise ValueError(f"pq_m={pq_m} must divide the embedding dimension {dim}.")
            pq_bits = min(pq_bits, max(1, int(np.log2(n))))
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, pq_bits, faiss.METRIC_INNER_PRODUCT)
        index.train(embeddings)
        index.nprobe = min(nprobe, nlist)
    else:
        raise ValueError(f"Unknown index kind {kind!r}; choose one of {list(INDEX_KINDS)}.")
    index.add(embeddings)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of the top ``k`` candidates per query, best first; ids of -1 pad short lists."""
    return index.search(_as_float32(queries), min(k, index.ntotal))


class PerLanguageIndex:
    """One faiss index per candidate language, searched together and merged into one list.

    Args:
        embeddings: ``(n, dim)`` corpus embeddings.
        languages: The language of each corpus row.
        kind: Index family per language (see :func:`build_index`).
        merge: ``"score"``: the union of the per-language top-k lists sorted by score (with exact indexes
            this is the ranking of one shared exact index); ``"round_robin"``: the languages take turns,
            each contributing its next best candidate (language-balanced result lists, whatever the
            model's bias), languages ordered by their best score.
        **index_kwargs: Options of :func:`build_index`.

    Usage:
        >>> import numpy as np
        >>> corpus = np.eye(4, dtype="float32")
        >>> index = PerLanguageIndex(corpus, ["en", "en", "de", "de"], merge="round_robin")
        >>> index.search(np.array([[1.0, 0.9, 0.2, 0.0]], dtype="float32"), k=2)[1].tolist()
        [[0, 2]]
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        languages: Sequence[str],
        kind: str = "flat",
        merge: str = "score",
        **index_kwargs,
    ) -> None:
        if merge not in MERGE_STRATEGIES:
            raise ValueError(f"Unknown merge {merge!r}; choose one of {list(MERGE_STRATEGIES)}.")
        embeddings = _as_float32(embeddings)
        languages = np.asarray(languages)
        if len(languages) != len(embeddings):
            raise ValueError(
                f"{len(languages)} languages for {len(embeddings)} embeddings; give one per row."
            )
        self.merge = merge
        self.languages = sorted(set(languages.tolist()))
        self.row_ids = {lang: np.flatnonzero(languages == lang) for lang in self.languages}
        self.indexes = {
            lang: build_index(embeddings[rows], kind, **index_kwargs) for lang, rows in self.row_ids.items()
        }

    @property
    def ntotal(self) -> int:
        return sum(index.ntotal for index in self.indexes.values())

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of the merged top ``k`` per query (ids are rows of the full corpus)."""
        queries = _as_float32(queries)
        parts = []
        for lang in self.languages:
            scores, local = search(self.indexes[lang], queries, k)
            ids = np.where(local >= 0, self.row_ids[lang][np.maximum(local, 0)], -1)
            # A language with fewer than k candidates returns a shorter list: pad it to k.
            pad = ((0, 0), (0, k - local.shape[1]))
            scores = np.pad(np.where(local >= 0, scores, -np.inf), pad, constant_values=-np.inf)
            parts.append((scores, np.pad(ids, pad, constant_values=-1)))
        scores = np.stack([p[0] for p in parts], axis=1)  # (queries, languages, k)
        ids = np.stack([p[1] for p in parts], axis=1)
        if self.merge == "score":
            scores, ids = scores.reshape(len(queries), -1), ids.reshape(len(queries), -1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        else:
            # Round r holds every language's r-th best; within a round, languages go by their best score.
            language_order = np.argsort(-scores[:, :, 0], axis=1, kind="stable")
            scores = np.take_along_axis(scores, language_order[:, :, None], axis=1)
            ids = np.take_along_axis(ids, language_order[:, :, None], axis=1)
            scores = scores.transpose(0, 2, 1).reshape(len(queries), -1)
            ids = ids.transpose(0, 2, 1).reshape(len(queries), -1)
            valid = np.isfinite(scores)
            order = np.argsort(~valid, axis=1, kind="stable")[:, :k]  # keep round order, drop padding
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)

    def nbytes(self) -> int:
        """Serialized bytes of all per-language indexes together."""
        return sum(index_nbytes(index) for index in self.indexes.values())


class QuantizedIndex:
    """A faiss index over int8 (``"int8"``) or binary (``"binary"``) corpus embeddings, rescored in float.

    Built once and searched many times (so that latency excludes building), through sentence-transformers'
    ``quantize_embeddings`` and ``semantic_search_faiss`` as its users would: a first stage over the
    quantized corpus with a quantized query (inner product of uint8 codes, or Hamming distance of bits),
    then ``k * rescore_multiplier`` candidates rescored with the float query against the de-quantized
    (int8) or unpacked (binary) corpus rows. The uint8 first stage ranks by the inner product of
    range-shifted codes, which is not the cosine order; the ``sq8`` index of :func:`build_index` scores the
    float query against 8-bit codes instead.

    Args:
        corpus_embeddings: ``(n, dim)`` float corpus embeddings.
        precision: ``"int8"`` or ``"binary"``.
        rescore_multiplier: Candidates rescored per result.
        calibration_embeddings: Rows the int8 ranges (per-dimension min / max) come from; the corpus by default.

    Usage:
        >>> import numpy as np
        >>> corpus = np.random.default_rng(0).standard_normal((50, 16)).astype("float32")
        >>> index = QuantizedIndex(corpus, "binary")
        >>> index.search(corpus[:2], k=3)[1].shape
        (2, 3)
    """

    PRECISIONS = {"int8": "uint8", "binary": "ubinary"}  # the faiss-searchable encodings of each

    def __init__(
        self,
        corpus_embeddings: np.ndarray,
        precision: str,
        *,
        rescore_multiplier: int = 4,
        calibration_embeddings: np.ndarray | None = None,
    ) -> None:
        from sentence_transformers.util.quantization import quantize_embeddings

        if precision not in self.PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r}; choose one of {sorted(self.PRECISIONS)}.")
        corpus_embeddings = _as_float32(corpus_embeddings)
        calibration = (
            corpus_embeddings if calibration_embeddings is None else _as_float32(calibration_embeddings)
        )
        self.precision = precision
        self.rescore_multiplier = rescore_multiplier
        # The same ranges quantize the corpus, the queries and de-quantize the rescored rows.
        self.ranges = np.vstack([calibration.min(axis=0), calibration.max(axis=0)])
        self.codes = quantize_embeddings(corpus_embeddings, self.PRECISIONS[precision], ranges=self.ranges)
        dim = self.codes.shape[1]
        self.index = faiss.IndexFlatIP(dim) if precision == "int8" else faiss.IndexBinaryFlat(dim * 8)
        self.index.add(self.codes)

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int, chunk_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of the rescored top ``k`` per query (padded with -inf / -1).

        Queries go ``chunk_size`` at a time: rescoring materializes ``k * rescore_multiplier`` de-quantized
        rows per query (as int64 / float64), which for a whole benchmark at once would not fit in memory.
        """
        from sentence_transformers.util.quantization import semantic_search_faiss

        queries = _as_float32(queries)
        scores = np.full((len(queries), k), -np.inf)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for start in range(0, len(queries), chunk_size):
            results, _ = semantic_search_faiss(
                queries[start : start + chunk_size],
                corpus_index=self.index,
                corpus_precision=self.PRECISIONS[self.precision],
                top_k=k,
                ranges=self.ranges,
                rescore=True,
                rescore_multiplier=self.rescore_multiplier,
            )
            for row, hits in enumerate(results, start=start):
                ids[row, : len(hits)] = [hit["corpus_id"] for hit in hits]
                scores[row, : len(hits)] = [hit["score"] for hit in hits]
        return scores, ids

    def nbytes(self) -> int:
        """Bytes of the quantized corpus matrix (what the first stage holds in memory)."""
        return int(self.codes.nbytes)


def quantized_search(
    corpus_embeddings: np.ndarray,
    queries: np.ndarray,
    precision: str,
    k: int,
    *,
    rescore_multiplier: int = 4,
    calibration_embeddings: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One-off top-k search over int8 or binary corpus embeddings with float rescoring (see :class:`QuantizedIndex`).

    Returns:
        ``(scores, ids, corpus_bytes)``: the top-k lists (padded with -1 / -inf) and the bytes of the
        quantized corpus matrix.
    """
    index = QuantizedIndex(
        corpus_embeddings,
        precision,
        rescore_multiplier=rescore_multiplier,
        calibration_embeddings=calibration_embeddings,
    )
    scores, ids = index.search(queries, k)
    return scores, ids, index.nbytes()


def topk_ranks(ids: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """Ranks of each query's relevant candidates within its top-k list (see :mod:`st_hybrid.metrics`).

    A relevant candidate outside the list gets a rank so deep that it adds nothing to AP, nDCG or recall
    at any cut-off within the list while still counting as relevant: AP becomes AP@k (the normalisation
    by all relevant candidates is kept). Rank distance is not meaningful on truncated lists.

    Args:
        ids: ``(queries, k)`` candidate ids, best first (-1 = padding).
        relevant: Per query, the ids of its relevant candidates.

    Returns:
        ``(queries, max relevant)`` ranks, ascending, padded with ``inf``.
    """
    width = max((len(r) for r in relevant), default=0)
    ranks = np.full((len(ids), width), np.inf)
    for row, (hits, rel) in enumerate(zip(ids, relevant)):
        positions = {int(c): pos + 1 for pos, c in enumerate(hits.tolist()) if c >= 0}
        found = sorted(positions.get(int(c), _NOT_RETRIEVED) for c in rel)
        ranks[row, : len(found)] = found
    return ranks


def topk_quality(ids: np.ndarray, relevant: Sequence[Sequence[int]], k: int) -> dict[str, float]:
    """Mean mAP@k, nDCG@10, recall@k and rank distance@k of top-k lists (queries without relevant
    candidates skipped).

    ``rank_distance@k`` is LAReQA's rank distance (worst minus best rank of a query's relevant candidates)
    with every relevant candidate outside the list counted at rank ``k + 1``: bounded by ``k``, comparable
    between setups searched at the same depth, never larger than the full-depth rank distance.
    """
    ranks = topk_ranks(ids, relevant)
    capped = np.where(np.isfinite(ranks), np.minimum(ranks, k + 1), np.inf)
    return {
        f"map@{k}": float(np.nanmean(metrics.average_precision(ranks))),
        "ndcg@10": float(np.nanmean(metrics.ndcg_at_k(ranks, 10))),
        f"recall@{k}": float(np.nanmean(metrics.recall_at_k(ranks, k))),
        f"rank_distance@{k}": float(np.nanmean(metrics.rank_distance(capped))),
    }


def index_nbytes(index: faiss.Index) -> int:
    """Bytes of the serialized faiss index (a fair proxy for its memory)."""
    return int(faiss.serialize_index(index).nbytes)


@dataclass(frozen=True)
class LatencyReport:
    """Query latency of one setup: per-query p50 / p95 in milliseconds and batched queries per second."""

    p50_ms: float
    p95_ms: float
    qps: float


def measure_latency(
    search_fn: Callable[[np.ndarray, int], object],
    queries: np.ndarray,
    k: int,
    *,
    single_queries: int = 200,
) -> LatencyReport:
    """Time ``search_fn(queries, k)``: one query at a time (p50/p95) and all queries in one batch (QPS).

    Args:
        search_fn: e.g. ``lambda q, k: search(index, q, k)`` or ``PerLanguageIndex(...).search``.
        queries: ``(n, dim)`` query embeddings.
        k: List length.
        single_queries: How many of the queries to time one by one.
    """
    queries = _as_float32(queries)
    search_fn(queries[:1], k)  # warm-up: lazy allocations, thread pools
    timings = []
    for row in queries[:single_queries]:
        start = time.perf_counter()
        search_fn(row[None, :], k)
        timings.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    search_fn(queries, k)
    elapsed = time.perf_counter() - start
    p50, p95 = np.percentile(timings, [50, 95])
    return LatencyReport(p50_ms=float(p50), p95_ms=float(p95), qps=len(queries) / max(elapsed, 1e-9))
