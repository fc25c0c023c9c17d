"""Language-aware retrieval metrics in pure numpy: the one source of truth for the evaluator, the
``evaluate`` metric module and the tests.

Everything is computed from the **ranks of the relevant candidates** of each query, over the full
candidate pool (no cut-off). From those ranks follow full-depth average precision (LAReQA mAP), the rank
distance (LAReQA's language bias), nDCG@k, Recall@k and MRR@k; no top-k list is needed.

Conventions:
    - A ranks array has shape ``(num_queries, max_relevant)``: the ranks (1-based) of each query's
      relevant candidates, sorted ascending, padded with ``+inf`` where a query has fewer relevant
      candidates in the pool. A row of ``+inf`` only means "no relevant candidate in this pool": the
      query is not counted for that pool (its per-query values are NaN).
    - Ties are pessimistic: a relevant candidate ranks *below* every non-relevant candidate with an
      equal score; relevant candidates tied with each other take consecutive ranks (their order does not
      change any metric). Random float scores almost never tie; identical texts (duplicate sentences)
      do, and then the relevant one is counted last.
    - Averages: per-query values are averaged over the queries of a group (a query language or a
      language pair); the reported number is the macro average over groups (as in the LAReQA paper).
      Groups without an eligible query are left out of the macro average and listed in the report.

Language bias beyond the rank distance (multilingual pool; see :func:`summarize_language_bias`):
    - **Top-k language share** ``share[x][y]``: mean over queries in language ``x`` of the fraction of
      their top ``k`` candidates that are in language ``y`` (each row sums to 1).
    - **Language preference@k**: per query, the share of its top ``k`` in its own language minus the share
      of its relevant candidates in its own language (the share relevance alone would give: 1/11 on
      XQuAD-R); macro-averaged over query languages. 0: no preference beyond relevance; > 0: the query's
      language is over-represented at the top (positive up to ``1 - 1/11`` on XQuAD-R). Defined here after
      issue #11's request; it is the top-k counterpart of LAReQA's rank distance (Roy et al., 2020).
    - **Rank fairness** (after PEER, Yang et al., SIGIR 2024, "Language Fairness in Multilingual
      Information Retrieval"): a Kruskal-Wallis test of "relevant candidates of every language have the
      same expected rank". PEER runs the test per query; with one relevant candidate per language (XQuAD-R,
      MLQA-R) every group has one rank and the statistic is a constant (H = N - 1), so here the ranks of
      the relevant candidates of all queries of a query language are pooled, grouped by candidate
      language. Reported per query language: H, its p-value (PEER's "probability of equal expected rank";
      high = fair) and the effect size epsilon^2 = H / (N - 1) in [0, 1] (0 = equal mean ranks, 1 = the
      languages fully separated), which unlike p does not shrink with the number of queries.

This file imports nothing but numpy and the standard library, so that the ``evaluate`` metric folder can
ship it as is.

Usage:
    >>> import numpy as np
    >>> scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    >>> ranks = relevant_ranks_from_scores(scores, [[1, 3]])
    >>> ranks.tolist()
    [[2.0, 4.0]]
    >>> round(float(average_precision(ranks)[0]), 4)  # (1/2 + 2/4) / 2
    0.5
    >>> rank_distance(ranks).tolist()
    [2.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "SETTINGS",
    "ChunkRanks",
    "RelevanceLayout",
    "average_precision",
    "build_relevance_layout",
    "chi2_survival",
    "concatenate_ranks",
    "count_at_least",
    "evaluate_scores",
    "kruskal_wallis",
    "macro_average",
    "mrr_at_k",
    "ndcg_at_k",
    "rank_chunk",
    "rank_distance",
    "recall_at_k",
    "relevant_ranks",
    "relevant_ranks_from_scores",
    "relevant_languages",
    "select_languages",
    "summarize",
    "summarize_language_bias",
    "summarize_ranks",
    "top_k_language_counts",
]

SETTINGS = ("mono", "cross", "multi")
_LANE_BLOCK = 255  # uint64 words summed at a time by count_at_least (a byte lane holds at most 255)


# --------------------------------------------------------------------------------------------------
# Ranks of relevant items
# --------------------------------------------------------------------------------------------------
def count_at_least(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Count, per row, the scores that are >= each threshold of that row.

    Args:
        scores: ``(n, c)`` scores of the pool.
        thresholds: ``(n, m)`` thresholds; NaN thresholds count nothing.

    Returns:
        ``(n, m)`` int64 counts.
    """
    scores = np.asarray(scores)
    thresholds = np.asarray(thresholds, dtype=scores.dtype)
    counts = np.zeros(thresholds.shape, dtype=np.int64)
    num_rows, num_columns = scores.shape
    if num_columns == 0:
        return counts
    # Count the True bytes of a row 8 at a time: viewed as uint64 words, a sum of at most 255 words holds
    # each byte's count in its own byte lane (no carry), then the lanes are added up. The buffer is padded
    # with False to whole blocks of 255 words. About twice as fast as summing the bytes.
    block = 8 * _LANE_BLOCK
    buffer = np.zeros((num_rows, -(-num_columns // block) * block), dtype=bool)
    for column in range(thresholds.shape[1]):
        if np.isnan(thresholds[:, column]).all():
            continue
        np.greater_equal(scores, thresholds[:, column : column + 1], out=buffer[:, :num_columns])
        lanes = buffer.view(np.uint64).reshape(num_rows, -1, _LANE_BLOCK).sum(axis=2, dtype=np.uint64)
        counts[:, column] = lanes.view(np.uint8).reshape(num_rows, -1).sum(axis=1, dtype=np.int64)
    return counts


def relevant_ranks(
    relevant_scores: np.ndarray, num_at_least: np.ndarray, *, aligned: bool = False
) -> np.ndarray:
    """Pessimistic ranks of the relevant candidates, given how many pool items score at least as high.

    Args:
        relevant_scores: ``(n, m)`` scores of each query's relevant candidates in the pool, NaN-padded.
        num_at_least: ``(n, m)`` number of pool items (relevant ones included) scoring >= each score.
        aligned: Return each rank at the position of its score (to keep track of which candidate has which
            rank) instead of sorted ascending.

    Returns:
        ``(n, m)`` float ranks sorted ascending (or aligned), ``+inf`` where padded (see the module
        conventions).
    """
    scores = np.asarray(relevant_scores, dtype=np.float64)
    counts = np.asarray(num_at_least, dtype=np.float64)
    if scores.shape != counts.shape:
        raise ValueError(f"relevant_scores {scores.shape} and num_at_least {counts.shape} differ in shape.")
    valid = ~np.isnan(scores)
    # Relevant items scoring >= each relevant item (itself included): removed to leave the non-relevant ones.
    relevant_at_least = ((scores[:, None, :] >= scores[:, :, None]) & valid[:, None, :]).sum(axis=-1)
    non_relevant_at_least = np.where(valid, counts - relevant_at_least, 0)
    if (non_relevant_at_least < 0).any():
        raise ValueError(
            "num_at_least is smaller than the number of relevant items scoring at least as high."
        )
    order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind="stable")
    non_relevant_sorted = np.take_along_axis(non_relevant_at_least, order, axis=1)
    valid_sorted = np.take_along_axis(valid, order, axis=1)
    positions = np.arange(1, scores.shape[1] + 1, dtype=np.float64)
    ranks = np.where(valid_sorted, non_relevant_sorted + positions, np.inf)
    if aligned:
        unsorted = np.empty_like(ranks)
        np.put_along_axis(unsorted, order, ranks, axis=1)
        return unsorted
    return ranks


def _pad_indices(rows: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    width = max((len(row) for row in rows), default=0) if width is None else width
    padded = np.full((len(rows), max(width, 1)), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    return padded


def _gather_thresholds(scores: np.ndarray, padded: np.ndarray) -> np.ndarray:
    thresholds = np.take_along_axis(scores, np.maximum(padded, 0), axis=1).astype(scores.dtype, copy=True)
    thresholds[padded < 0] = np.nan
    return thresholds


def relevant_ranks_from_scores(scores: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """Ranks of the relevant candidates from a dense score matrix (small inputs, tests, the metric module).

    Args:
        scores: ``(n, c)`` scores, higher is better; NaN is not allowed.
        relevant: Per query, the column indices of its relevant candidates (duplicates are ignored).

    Returns:
        ``(n, max_relevant)`` ranks (see the module conventions).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or len(relevant) != scores.shape[0]:
        raise ValueError(
            f"Expected (num_queries, num_candidates) scores and one list per query, got "
            f"{scores.shape} and {len(relevant)} lists."
        )
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN.")
    rows = [sorted(set(int(i) for i in row)) for row in relevant]
    for row in rows:
        if row and (row[0] < 0 or row[-1] >= scores.shape[1]):
            raise ValueError(f"Relevant index out of range [0, {scores.shape[1]}): {row}")
    padded = _pad_indices(rows)
    thresholds = _gather_thresholds(scores, padded)
    return relevant_ranks(thresholds, count_at_least(scores, thresholds))


# --------------------------------------------------------------------------------------------------
# Per-query metrics from ranks
# --------------------------------------------------------------------------------------------------
def _num_relevant(ranks: np.ndarray) -> np.ndarray:
    return np.isfinite(ranks).sum(axis=1)


def _per_query(values: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    return np.where(num_relevant > 0, values, np.nan)


def average_precision(ranks: np.ndarray) -> np.ndarray:
    """Full-depth average precision per query: mean over relevant items of precision at their rank.

    Args:
        ranks: ``(n, m)`` ranks (see the module conventions).

    Returns:
        ``(n,)`` AP, NaN for queries without a relevant candidate.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    num_relevant = _num_relevant(ranks)
    positions = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_query((positions / ranks).sum(axis=1) / num_relevant, num_relevant)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance nDCG@k per query (gain 1/log2(rank + 1), ideal ranking of all relevant items)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    num_relevant = _num_relevant(ranks)
    with np.errstate(invalid="ignore", divide="ignore"):
        dcg = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0).sum(axis=1)
    ideal_gains = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64)))])
    ideal = ideal_gains[np.minimum(num_relevant, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_query(dcg / ideal, num_relevant)


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Fraction of a query's relevant candidates ranked in the top k."""
    ranks = np.asarray(ranks, dtype=np.float64)
    num_relevant = _num_relevant(ranks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_query((ranks <= k).sum(axis=1) / num_relevant, num_relevant)


def mrr_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the best-ranked relevant candidate, 0 when it is below rank k."""
    ranks = np.asarray(ranks, dtype=np.float64)
    best = ranks[:, 0] if ranks.shape[1] else np.full(len(ranks), np.inf)
    return _per_query(np.where(best <= k, 1.0 / best, 0.0), _num_relevant(ranks))


def rank_distance(ranks: np.ndarray) -> np.ndarray:
    """Worst minus best rank of a query's relevant candidates (LAReQA language bias).

    Returns:
        ``(n,)`` distances, NaN for queries with fewer than two relevant candidates (undefined there).
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    num_relevant = _num_relevant(ranks)
    worst = np.take_along_axis(ranks, np.maximum(num_relevant - 1, 0)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        return np.where(num_relevant >= 2, worst - ranks[:, 0], np.nan)


def macro_average(values: np.ndarray, groups: Sequence[str], order: Sequence[str]) -> tuple[float, dict]:
    """Mean per group (NaN values ignored), then the mean over groups that have a value.

    Args:
        values: ``(n,)`` per-query values (NaN = not counted).
        groups: ``(n,)`` group label per query.
        order: Group labels to report, in order.

    Returns:
        ``(macro, per_group)``: macro is NaN when no group has a value; per_group maps every label in
        ``order`` to its mean (NaN when it has no counted query).
    """
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    per_group = {}
    for group in order:
        selected = values[(groups == group) & ~np.isnan(values)]
        per_group[group] = float(selected.mean()) if selected.size else float("nan")
    present = [value for value in per_group.values() if not np.isnan(value)]
    return (float(np.mean(present)) if present else float("nan")), per_group


# --------------------------------------------------------------------------------------------------
# Language-aware ranking of a score matrix, chunk by chunk
# --------------------------------------------------------------------------------------------------
class RelevanceLayout:
    """Precomputed positions of each query's relevant candidates, for ranking chunks of score rows.

    Candidates must be sorted by language: language ``j`` occupies columns ``segments[j]``.

    Attributes:
        languages: Candidate languages, in segment order.
        segments: ``[start, end)`` column range of each language.
        relevant: ``(num_queries, m)`` relevant columns over the whole pool, -1 padded.
        relevant_by_language: Per language, ``(num_queries, m_j)`` relevant columns within that segment.
    """

    def __init__(
        self,
        languages: list[str],
        segments: list[tuple[int, int]],
        relevant: np.ndarray,
        relevant_by_language: list[np.ndarray],
    ):
        self.languages = languages
        self.segments = segments
        self.relevant = relevant
        self.relevant_by_language = relevant_by_language

    @property
    def num_queries(self) -> int:
        return len(self.relevant)


def build_relevance_layout(
    relevant: Sequence[Sequence[int]], candidate_languages: Sequence[str], languages: Sequence[str]
) -> RelevanceLayout:
    """Build the layout for candidates already sorted by language.

    Args:
        relevant: Per query, the columns of its relevant candidates.
        candidate_languages: Language of each column; equal languages must be contiguous.
        languages: The candidate languages in column order.
    """
    candidate_languages = np.asarray(candidate_languages)
    segments = []
    for language in languages:
        columns = np.flatnonzero(candidate_languages == language)
        if columns.size == 0:
            raise ValueError(f"No candidate in language {language!r}.")
        if columns[-1] - columns[0] + 1 != columns.size:
            raise ValueError("Candidates must be sorted by language (contiguous columns per language).")
        segments.append((int(columns[0]), int(columns[-1]) + 1))
    if sum(end - start for start, end in segments) != len(candidate_languages):
        raise ValueError("Some candidates have a language outside `languages`.")
    rows = [sorted(set(int(i) for i in row)) for row in relevant]
    by_language = []
    for start, end in segments:
        by_language.append(_pad_indices([[i - start for i in row if start <= i < end] for row in rows]))
    return RelevanceLayout(list(languages), segments, _pad_indices(rows), by_language)


class ChunkRanks(NamedTuple):
    """What :func:`rank_chunk` computes for a chunk of queries.

    Attributes:
        multi: ``(n, m)`` ranks in the multilingual pool, sorted (module conventions).
        per_language: Per pool language, ``(n, m_j)`` ranks in that language's pool.
        multi_aligned: ``(n, m)`` multilingual ranks in the column order of ``layout.relevant`` (so that
            :func:`relevant_languages` tells the language of each), ``+inf`` where padded.
        top_k_counts: ``k`` -> ``(n, num_languages)`` number of each query's top ``k`` per pool language.
    """

    multi: np.ndarray
    per_language: list[np.ndarray]
    multi_aligned: np.ndarray
    top_k_counts: dict[int, np.ndarray]


def _segment_counts(mask: np.ndarray, segments: Sequence[tuple[int, int]]) -> np.ndarray:
    """``(n, len(segments))`` number of True entries per row and segment of a sparse mask."""
    flat_index = np.flatnonzero(mask)  # much faster than a 2-D np.nonzero
    rows, columns = np.divmod(flat_index, mask.shape[1])
    starts = np.array([start for start, _ in segments])
    ends = np.array([end for _, end in segments])
    segment = np.searchsorted(starts, columns, side="right") - 1
    inside = (segment >= 0) & (columns < ends[np.maximum(segment, 0)])
    flat = rows[inside] * len(segments) + segment[inside]
    return np.bincount(flat, minlength=mask.shape[0] * len(segments)).reshape(mask.shape[0], len(segments))


def top_k_language_counts(
    scores: np.ndarray, segments: Sequence[tuple[int, int]], ks: Sequence[int]
) -> dict[int, np.ndarray]:
    """How many of each query's ``k`` best-scoring candidates fall in each language segment.

    Candidates tied at the k-th score share the places left: a query whose 10th and 11th candidates tie,
    one in ``en`` and one in ``de``, counts 0.5 for each. Without ties the counts are integers.

    Args:
        scores: ``(n, c)`` scores; the columns of language ``j`` are ``segments[j]`` (all columns covered).
        segments: ``[start, end)`` column range of each language.
        ks: Depths; a depth above ``c`` means the whole pool.

    Returns:
        ``k`` -> ``(n, len(segments))`` float counts, each row summing to ``min(k, c)``.
    """
    scores = np.asarray(scores)
    num_candidates = scores.shape[1]
    depths = {int(k): min(int(k), num_candidates) for k in ks}
    if not depths or scores.shape[0] == 0 or num_candidates == 0:
        return {k: np.zeros((scores.shape[0], len(segments))) for k in depths}
    # One partial sort gives the k-th best score of every row for every k (O(c) per row, no full sort).
    partitioned = np.partition(scores, sorted({num_candidates - d for d in depths.values()}), axis=1)
    mask = np.empty(scores.shape, dtype=bool)
    counts_by_k = {}
    for k, depth in depths.items():
        threshold = partitioned[:, num_candidates - depth, None]
        np.greater_equal(scores, threshold, out=mask)
        counts = _segment_counts(mask, segments).astype(np.float64)
        tied_rows = np.flatnonzero(counts.sum(axis=1) > depth)
        if tied_rows.size:
            above = _segment_counts(scores[tied_rows] > threshold[tied_rows], segments)
            tied = counts[tied_rows] - above
            places_left = depth - above.sum(axis=1, keepdims=True)
            counts[tied_rows] = above + places_left * tied / tied.sum(axis=1, keepdims=True)
        counts_by_k[k] = counts
    return counts_by_k


def rank_chunk(
    scores: np.ndarray, layout: RelevanceLayout, rows: slice, top_k: Sequence[int] = ()
) -> ChunkRanks:
    """Rank the relevant candidates of a chunk of queries in the multilingual pool and in each language pool.

    Args:
        scores: ``(len(rows), num_candidates)`` scores of the chunk's queries against every candidate.
        layout: The relevance layout.
        rows: Which queries of the layout the chunk holds.
        top_k: Depths at which to count the languages of each query's best candidates.

    Returns:
        The chunk's :class:`ChunkRanks`.
    """
    thresholds = _gather_thresholds(scores, layout.relevant[rows])
    multi_aligned = relevant_ranks(thresholds, count_at_least(scores, thresholds), aligned=True)
    per_language = []
    for (start, end), relevant in zip(layout.segments, layout.relevant_by_language, strict=True):
        segment = scores[:, start:end]
        thresholds = _gather_thresholds(segment, relevant[rows])
        per_language.append(relevant_ranks(thresholds, count_at_least(segment, thresholds)))
    return ChunkRanks(
        multi=np.sort(multi_aligned, axis=1),
        per_language=per_language,
        multi_aligned=multi_aligned,
        top_k_counts=top_k_language_counts(scores, layout.segments, top_k),
    )


def relevant_languages(layout: RelevanceLayout) -> np.ndarray:
    """``(num_queries, m)`` index into ``layout.languages`` of each relevant column, -1 where padded."""
    starts = np.array([start for start, _ in layout.segments])
    index = np.searchsorted(starts, layout.relevant, side="right") - 1
    return np.where(layout.relevant >= 0, index, -1)


def _pad_ranks(parts: list[np.ndarray]) -> np.ndarray:
    width = max(part.shape[1] for part in parts)
    return np.concatenate(
        [np.pad(part, ((0, 0), (0, width - part.shape[1])), constant_values=np.inf) for part in parts]
    )


def concatenate_ranks(chunks: list[ChunkRanks]) -> ChunkRanks:
    """Stack the outputs of :func:`rank_chunk` for consecutive chunks."""
    return ChunkRanks(
        multi=_pad_ranks([chunk.multi for chunk in chunks]),
        per_language=[
            _pad_ranks([chunk.per_language[j] for chunk in chunks])
            for j in range(len(chunks[0].per_language))
        ],
        multi_aligned=_pad_ranks([chunk.multi_aligned for chunk in chunks]),
        top_k_counts={
            k: np.concatenate([chunk.top_k_counts[k] for chunk in chunks]) for k in chunks[0].top_k_counts
        },
    )


# --------------------------------------------------------------------------------------------------
# Language bias beyond the rank distance
# --------------------------------------------------------------------------------------------------
def chi2_survival(x: float, df: int) -> float:
    """P(X >= x) for a chi-squared variable with an integer number of degrees of freedom (closed form).

    Sums the Poisson-type series of the regularized upper incomplete gamma function (even ``df``) or
    ``erfc`` plus its half-integer series (odd ``df``); exact up to float rounding, no scipy needed.
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}.")
    if math.isnan(x):
        return float("nan")
    if x <= 0:
        return 1.0
    half = x / 2.0
    if df % 2 == 0:
        total = sum(math.exp(-half + i * math.log(half) - math.lgamma(i + 1)) for i in range(df // 2))
    else:
        total = math.erfc(math.sqrt(half)) + sum(
            math.exp(-half + (i - 0.5) * math.log(half) - math.lgamma(i + 0.5))
            for i in range(1, (df + 1) // 2)
        )
    return min(1.0, total)


def kruskal_wallis(samples: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Kruskal-Wallis H test (midranks, tie-corrected) that all samples come from one distribution.

    Empty samples are left out. Same statistic and p-value as ``scipy.stats.kruskal``.

    Returns:
        ``(H, p)``; ``(nan, nan)`` with fewer than two non-empty samples or when all values are equal.
    """
    groups = [np.asarray(sample, dtype=np.float64).ravel() for sample in samples]
    groups = [group for group in groups if group.size]
    if len(groups) < 2:
        return float("nan"), float("nan")
    data = np.concatenate(groups)
    total = float(data.size)
    _, inverse, ties = np.unique(data, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(ties) - (ties - 1) / 2.0)[inverse]
    tie_correction = 1.0 - float((ties.astype(np.float64) ** 3 - ties).sum()) / (total**3 - total)
    if tie_correction <= 0:
        return float("nan"), float("nan")
    sizes = np.array([group.size for group in groups])
    rank_sums = np.add.reduceat(ranks, np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    h = (
        12.0 / (total * (total + 1.0)) * float((rank_sums**2 / sizes).sum()) - 3.0 * (total + 1.0)
    ) / tie_correction
    return h, chi2_survival(h, len(groups) - 1)


def summarize_language_bias(
    multi_aligned: np.ndarray,
    relevant_language_index: np.ndarray,
    top_k_counts: Mapping[int, np.ndarray],
    query_languages: Sequence[str],
    pool_languages: Sequence[str],
    *,
    languages: Sequence[str] | None = None,
) -> dict:
    """Language preference, top-k language share and rank fairness in the multilingual pool.

    See the module docstring for the definitions.

    Args:
        multi_aligned: ``(n, m)`` multilingual ranks of each query's relevant candidates, ``+inf`` padded.
        relevant_language_index: ``(n, m)`` index into ``pool_languages`` of each of those candidates (-1
            where padded).
        top_k_counts: ``k`` -> ``(n, len(pool_languages))`` number of each query's top ``k`` per language.
        query_languages: ``(n,)`` language of each query.
        pool_languages: The candidate languages, in the column order of the counts.
        languages: Query languages to report, in order; by default the query languages in first-seen order.

    Returns:
        ``{"metrics", "per_language", "top_k_language_share", "rank_fairness"}``: metrics holds
        ``language_preference@k``, ``rank_fairness_epsilon2`` and ``rank_fairness_p`` (macro over query
        languages); ``top_k_language_share[str(k)][x][y]``; ``rank_fairness[x]`` has ``h``, ``p``,
        ``epsilon2``, ``num_ranks`` and ``num_languages`` (candidate languages with a relevant rank).
    """
    query_languages = np.asarray(query_languages)
    multi_aligned = np.asarray(multi_aligned, dtype=np.float64)
    language_index = np.asarray(relevant_language_index)
    if languages is None:
        languages = list(dict.fromkeys(query_languages.tolist()))
    query_langs = [lang for lang in languages if (query_languages == lang).any()]
    pool_languages = list(pool_languages)
    metrics: dict[str, float] = {}
    per_language: dict[str, dict[str, float]] = {x: {} for x in query_langs}

    own = np.array([pool_languages.index(x) if x in pool_languages else -1 for x in query_languages])
    valid = (language_index >= 0) & np.isfinite(multi_aligned)
    num_relevant = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        relevant_own_share = ((language_index == own[:, None]) & valid).sum(axis=1) / num_relevant
    shares = {}
    for k, counts in top_k_counts.items():
        counts = np.asarray(counts, dtype=np.float64)
        depth = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = counts / depth
        own_share = np.take_along_axis(share, np.maximum(own, 0)[:, None], axis=1)[:, 0]
        preference = np.where((own >= 0) & (num_relevant > 0), own_share - relevant_own_share, np.nan)
        metrics[f"language_preference@{k}"], per_group = macro_average(
            preference, query_languages, query_langs
        )
        for x in query_langs:
            per_language[x][f"language_preference@{k}"] = per_group[x]
        shares[str(k)] = {
            x: dict(zip(pool_languages, share[query_languages == x].mean(axis=0).tolist(), strict=True))
            for x in query_langs
        }

    fairness = {}
    for x in query_langs:
        in_x = (query_languages == x)[:, None] & valid
        ranks, groups = multi_aligned[in_x], language_index[in_x]
        samples = [ranks[groups == j] for j in range(len(pool_languages))]
        h, p = kruskal_wallis(samples)
        total = int(ranks.size)
        fairness[x] = {
            "h": h,
            "p": p,
            "epsilon2": h / (total - 1) if total > 1 and not math.isnan(h) else float("nan"),
            "num_ranks": total,
            "num_languages": sum(sample.size > 0 for sample in samples),
        }
        per_language[x]["rank_fairness_epsilon2"] = fairness[x]["epsilon2"]
        per_language[x]["rank_fairness_p"] = p
    metrics["rank_fairness_epsilon2"] = _mean_or_nan([row["epsilon2"] for row in fairness.values()])
    metrics["rank_fairness_p"] = _mean_or_nan([row["p"] for row in fairness.values()])
    return {
        "metrics": metrics,
        "per_language": per_language,
        "top_k_language_share": shares,
        "rank_fairness": fairness,
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def _mean_or_nan(values: list[float]) -> float:
    present = [value for value in values if not np.isnan(value)]
    return float(np.mean(present)) if present else float("nan")


def summarize_ranks(
    multi_ranks: np.ndarray,
    ranks_by_language: Mapping[str, np.ndarray],
    query_languages: Sequence[str],
    *,
    languages: Sequence[str] | None = None,
    settings: Sequence[str] = SETTINGS,
    ndcg_at: Sequence[int] = (10,),
    recall_at: Sequence[int] = (1, 10, 100),
    mrr_at: Sequence[int] = (10,),
) -> dict:
    """Aggregate ranks into the LAReQA metrics (mono / cross / multi mAP, rank distance, ...).

    Args:
        multi_ranks: ``(n, m)`` ranks in the pool of all candidates.
        ranks_by_language: Candidate language -> ``(n, m_j)`` ranks in that language's pool.
        query_languages: ``(n,)`` language of each query.
        languages: Languages to report, in order; by default the query languages then the other
            candidate languages, in first-seen order.
        settings: Which of ``"mono"``, ``"cross"``, ``"multi"`` to compute.
        ndcg_at: Cut-offs for nDCG in the multilingual pool.
        recall_at: Cut-offs for Recall in the multilingual pool.
        mrr_at: Cut-offs for MRR in the multilingual pool.

    Returns:
        ``{"metrics", "per_language", "pair_map", "num_queries", "empty_pairs"}``: ``pair_map[x][y]`` is
        the mAP of queries in ``x`` against the pool of language ``y`` (NaN without eligible query);
        ``num_queries[setting]`` counts the (query, pool) evaluations of each setting.

    Raises:
        ValueError: On an unknown setting, or when a requested setting has no eligible query.
    """
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"Unknown settings {sorted(unknown)}; choose from {SETTINGS}.")
    query_languages = np.asarray(query_languages)
    if languages is None:
        languages = list(dict.fromkeys([*query_languages.tolist(), *ranks_by_language]))
    query_langs = [lang for lang in languages if (query_languages == lang).any()]
    pool_langs = [lang for lang in languages if lang in ranks_by_language]

    pair_ap = {y: average_precision(ranks_by_language[y]) for y in pool_langs}
    pair_map = {x: {} for x in query_langs}
    pair_counts = {x: {} for x in query_langs}
    for x in query_langs:
        in_x = query_languages == x
        for y in pool_langs:
            values = pair_ap[y][in_x]
            values = values[~np.isnan(values)]
            pair_counts[x][y] = int(values.size)
            pair_map[x][y] = float(values.mean()) if values.size else float("nan")

    metrics: dict[str, float] = {}
    per_language: dict[str, dict[str, float]] = {x: {} for x in query_langs}
    num_queries: dict[str, int] = {}
    empty_pairs = []
    for setting in settings:
        if setting == "multi":
            continue
        cells = [(x, y) for x in query_langs for y in pool_langs if (x == y) == (setting == "mono")]
        num_queries[setting] = sum(pair_counts[x][y] for x, y in cells)
        if num_queries[setting] == 0:
            raise ValueError(f"The {setting!r} setting has no query with a relevant candidate in its pool.")
        empty_pairs += [[x, y] for x, y in cells if pair_counts[x][y] == 0]
        metrics[f"{setting}_map"] = _mean_or_nan([pair_map[x][y] for x, y in cells])
        for x in query_langs:
            per_language[x][f"{setting}_map"] = _mean_or_nan([pair_map[x][y] for xx, y in cells if xx == x])

    if "multi" in settings:
        ap = average_precision(multi_ranks)
        num_queries["multi"] = int((~np.isnan(ap)).sum())
        if num_queries["multi"] == 0:
            raise ValueError("The 'multi' setting has no query with a relevant candidate.")
        per_query = {"multi_map": ap, "rank_distance": rank_distance(multi_ranks)}
        per_query.update({f"multi_ndcg@{k}": ndcg_at_k(multi_ranks, k) for k in ndcg_at})
        per_query.update({f"multi_recall@{k}": recall_at_k(multi_ranks, k) for k in recall_at})
        per_query.update({f"multi_mrr@{k}": mrr_at_k(multi_ranks, k) for k in mrr_at})
        for key, values in per_query.items():
            metrics[key], per_group = macro_average(values, query_languages, query_langs)
            for x in query_langs:
                per_language[x][key] = per_group[x]
    return {
        "metrics": metrics,
        "per_language": per_language,
        "pair_map": pair_map,
        "num_queries": num_queries,
        "empty_pairs": empty_pairs,
    }


def summarize(
    ranks: ChunkRanks,
    layout: RelevanceLayout,
    query_languages: Sequence[str],
    *,
    languages: Sequence[str] | None = None,
    settings: Sequence[str] = SETTINGS,
    ndcg_at: Sequence[int] = (10,),
    recall_at: Sequence[int] = (1, 10, 100),
    mrr_at: Sequence[int] = (10,),
) -> dict:
    """:func:`summarize_ranks` plus, with the multilingual setting, :func:`summarize_language_bias`.

    Args:
        ranks: The stacked :class:`ChunkRanks` of every query of ``layout``.
        layout: The relevance layout the ranks were computed with.
        query_languages: ``(n,)`` language of each query.
        languages, settings, ndcg_at, recall_at, mrr_at: As in :func:`summarize_ranks`.

    Returns:
        The dict of :func:`summarize_ranks`, whose ``metrics`` and ``per_language`` also hold the bias
        metrics, plus ``top_k_language_share`` and ``rank_fairness`` (empty without ``"multi"``).
    """
    report = summarize_ranks(
        ranks.multi,
        dict(zip(layout.languages, ranks.per_language, strict=True)),
        query_languages,
        languages=languages,
        settings=settings,
        ndcg_at=ndcg_at,
        recall_at=recall_at,
        mrr_at=mrr_at,
    )
    report["top_k_language_share"], report["rank_fairness"] = {}, {}
    if "multi" in settings:
        bias = summarize_language_bias(
            ranks.multi_aligned,
            relevant_languages(layout),
            ranks.top_k_counts,
            query_languages,
            layout.languages,
            languages=languages,
        )
        report["metrics"].update(bias["metrics"])
        for x, values in bias["per_language"].items():
            report["per_language"][x].update(values)
        report["top_k_language_share"] = bias["top_k_language_share"]
        report["rank_fairness"] = bias["rank_fairness"]
    return report


def _sort_by_language(
    candidate_languages: Sequence[str], languages: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Stable column permutation grouping candidates by language (in ``languages`` order) and its inverse."""
    position = {lang: i for i, lang in enumerate(languages)}
    order = np.argsort([position[lang] for lang in candidate_languages], kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return order, inverse


def select_languages(requested: Sequence[str] | None, present: Sequence[str]) -> list[str]:
    """The requested languages (deduplicated, in order), or all present ones; unknown ones are an error."""
    if requested is None:
        return list(present)
    languages = list(dict.fromkeys(str(lang) for lang in requested))
    unknown = [lang for lang in languages if lang not in present]
    if unknown:
        raise ValueError(f"Unknown languages {unknown}: the queries and candidates have {list(present)}.")
    return languages


def evaluate_scores(
    scores: np.ndarray,
    relevant: Sequence[Sequence[int]],
    query_languages: Sequence[str],
    candidate_languages: Sequence[str],
    *,
    languages: Sequence[str] | None = None,
    settings: Sequence[str] = SETTINGS,
    ndcg_at: Sequence[int] = (10,),
    recall_at: Sequence[int] = (1, 10, 100),
    mrr_at: Sequence[int] = (10,),
    language_share_at: Sequence[int] = (10,),
    chunk_size: int = 256,
) -> dict:
    """The language-aware metrics of a dense score matrix (the entry point of the ``evaluate`` module).

    Args:
        scores: ``(num_queries, num_candidates)`` scores, higher is better.
        relevant: Per query, the column indices of its relevant candidates.
        query_languages: Language of each query.
        candidate_languages: Language of each candidate (column).
        languages: Restrict the report to these languages (queries and candidates of other languages are
            dropped); all by default, query languages first.
        settings: Which of ``"mono"``, ``"cross"``, ``"multi"`` to compute.
        ndcg_at: Cut-offs for nDCG (multilingual pool).
        recall_at: Cut-offs for Recall (multilingual pool).
        mrr_at: Cut-offs for MRR (multilingual pool).
        language_share_at: Depths of the top-k language share and language preference (multilingual pool).
        chunk_size: Query rows ranked at a time.

    Returns:
        The dict of :func:`summarize` plus ``"languages"``, ``"num_skipped_queries"`` (queries without any
        relevant candidate, not counted anywhere).

    Raises:
        ValueError: On mismatched lengths, out-of-range indices, NaN scores, unknown languages or a
            setting without eligible queries.
    """
    scores = np.asarray(scores)
    query_languages = [str(lang) for lang in query_languages]
    candidate_languages = [str(lang) for lang in candidate_languages]
    if scores.ndim != 2 or scores.shape != (len(query_languages), len(candidate_languages)):
        raise ValueError(
            f"scores must have shape (num_queries, num_candidates) = ({len(query_languages)}, "
            f"{len(candidate_languages)}), got {scores.shape}."
        )
    if len(relevant) != len(query_languages):
        raise ValueError(f"{len(relevant)} relevance lists for {len(query_languages)} queries.")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN.")
    languages = select_languages(languages, list(dict.fromkeys(query_languages + candidate_languages)))
    keep_columns = np.flatnonzero(np.isin(candidate_languages, languages))
    if keep_columns.size == 0:
        raise ValueError(f"No candidate in languages {languages}.")
    new_column = np.full(len(candidate_languages), -1)
    new_column[keep_columns] = np.arange(keep_columns.size)
    pool_languages = [lang for lang in languages if lang in {candidate_languages[i] for i in keep_columns}]
    order, inverse = _sort_by_language([candidate_languages[i] for i in keep_columns], pool_languages)

    rows, kept_relevant = [], []
    for i, row in enumerate(relevant):
        row = [int(j) for j in row]
        if any(j < 0 or j >= len(candidate_languages) for j in row):
            raise ValueError(
                f"Relevant index out of range [0, {len(candidate_languages)}) for query {i}: {row}"
            )
        mapped = [int(inverse[new_column[j]]) for j in row if new_column[j] >= 0]
        if query_languages[i] in languages and mapped:
            rows.append(i)
            kept_relevant.append(mapped)
    if not rows:
        raise ValueError("No query (in the selected languages) has a relevant candidate.")
    sorted_languages = [candidate_languages[keep_columns[j]] for j in order]
    layout = build_relevance_layout(kept_relevant, sorted_languages, pool_languages)
    matrix = scores[np.asarray(rows)][:, keep_columns[order]]
    top_k = tuple(language_share_at) if "multi" in settings else ()
    chunks = [
        rank_chunk(matrix[start : start + chunk_size], layout, slice(start, start + chunk_size), top_k)
        for start in range(0, len(rows), chunk_size)
    ]
    report = summarize(
        concatenate_ranks(chunks),
        layout,
        [query_languages[i] for i in rows],
        languages=languages,
        settings=settings,
        ndcg_at=ndcg_at,
        recall_at=recall_at,
        mrr_at=mrr_at,
    )
    report["languages"] = languages
    report["num_skipped_queries"] = sum(lang in languages for lang in query_languages) - len(rows)
    return report
