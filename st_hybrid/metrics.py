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

This file imports nothing but numpy, so that the ``evaluate`` metric folder can ship it as is.

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

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "SETTINGS",
    "RelevanceLayout",
    "average_precision",
    "build_relevance_layout",
    "concatenate_ranks",
    "count_at_least",
    "evaluate_scores",
    "macro_average",
    "mrr_at_k",
    "ndcg_at_k",
    "rank_chunk",
    "rank_distance",
    "recall_at_k",
    "relevant_ranks",
    "relevant_ranks_from_scores",
    "select_languages",
    "summarize_ranks",
]

SETTINGS = ("mono", "cross", "multi")


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
    if scores.shape[1] == 0:
        return counts
    buffer = np.empty(scores.shape, dtype=bool)
    for column in range(thresholds.shape[1]):
        if np.isnan(thresholds[:, column]).all():
            continue
        np.greater_equal(scores, thresholds[:, column : column + 1], out=buffer)
        counts[:, column] = buffer.view(np.uint8).sum(axis=1, dtype=np.int64)
    return counts


def relevant_ranks(relevant_scores: np.ndarray, num_at_least: np.ndarray) -> np.ndarray:
    """Pessimistic ranks of the relevant candidates, given how many pool items score at least as high.

    Args:
        relevant_scores: ``(n, m)`` scores of each query's relevant candidates in the pool, NaN-padded.
        num_at_least: ``(n, m)`` number of pool items (relevant ones included) scoring >= each score.

    Returns:
        ``(n, m)`` float ranks sorted ascending, ``+inf`` where padded (see the module conventions).
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
    return np.where(valid_sorted, non_relevant_sorted + positions, np.inf)


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


def rank_chunk(
    scores: np.ndarray, layout: RelevanceLayout, rows: slice
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Rank the relevant candidates of a chunk of queries in the multilingual pool and in each language pool.

    Args:
        scores: ``(len(rows), num_candidates)`` scores of the chunk's queries against every candidate.
        layout: The relevance layout.
        rows: Which queries of the layout the chunk holds.

    Returns:
        ``(multi_ranks, ranks_per_language)``, ranks as in the module conventions.
    """
    thresholds = _gather_thresholds(scores, layout.relevant[rows])
    multi = relevant_ranks(thresholds, count_at_least(scores, thresholds))
    per_language = []
    for (start, end), relevant in zip(layout.segments, layout.relevant_by_language, strict=True):
        segment = scores[:, start:end]
        thresholds = _gather_thresholds(segment, relevant[rows])
        per_language.append(relevant_ranks(thresholds, count_at_least(segment, thresholds)))
    return multi, per_language


def _pad_ranks(parts: list[np.ndarray]) -> np.ndarray:
    width = max(part.shape[1] for part in parts)
    return np.concatenate(
        [np.pad(part, ((0, 0), (0, width - part.shape[1])), constant_values=np.inf) for part in parts]
    )


def concatenate_ranks(
    chunks: list[tuple[np.ndarray, list[np.ndarray]]],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stack the outputs of :func:`rank_chunk` for consecutive chunks."""
    multi = _pad_ranks([chunk[0] for chunk in chunks])
    per_language = [_pad_ranks([chunk[1][j] for chunk in chunks]) for j in range(len(chunks[0][1]))]
    return multi, per_language


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
        chunk_size: Query rows ranked at a time.

    Returns:
        The dict of :func:`summarize_ranks` plus ``"languages"``, ``"num_skipped_queries"`` (queries
        without any relevant candidate, not counted anywhere).

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
    chunks = [
        rank_chunk(matrix[start : start + chunk_size], layout, slice(start, start + chunk_size))
        for start in range(0, len(rows), chunk_size)
    ]
    multi, per_language = concatenate_ranks(chunks)
    report = summarize_ranks(
        multi,
        dict(zip(pool_languages, per_language, strict=True)),
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
