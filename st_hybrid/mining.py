"""Language-aware hard-negative mining for parallel training pairs, with faiss.

sentence-transformers' ``mine_hard_negatives`` only knows that an anchor's own positives are not negatives.
In parallel data that is not enough: the translation of a positive, another question's identical answer
sentence, or the positive itself reached through a duplicate question are all relevant to the anchor, and
mining them as "hard negatives" trains the model to push apart what it should pull together (false
negatives). :func:`mine_hard_negatives` never mines from the anchor's **positive group**: the connected
component of rows linked by a shared ``parallel_id``, ``answer_id`` (when the pairs have one), query text
or passage text (transitively). Every text of every row in the group is off limits, in every language.

Candidates are the distinct passage texts of the pairs, plus an optional ``corpus`` (e.g.
:func:`lareqa_corpus`: every sentence of the LAReQA paragraphs). ``language="passage"`` draws a row's
negatives from its passage's language (the query's language for mono rows, the target language for cross
rows), so a negative is as hard as the positive on language alone; ``language="query"`` draws them from the
query's language (the same for mono rows; for cross rows a look-alike in the query's own language, which a
language-biased model ranks above the answer in the target language); ``language="any"`` draws from every
language.

A negative mined from the training passages is *another* row's positive. ``HybridBatchSampler`` keeps such
rows out of one batch by joining their positive groups, and on real data (MLQA-R) those links chain every
row into a single group, which leaves the sampler nothing to batch. ``avoid_training_positives=True`` with a
corpus mines only texts that are nobody's query or passage, so the groups stay as they were.

Search is exact inner product on normalized embeddings (faiss ``IndexFlatIP``); pools larger than
``ivf_threshold`` candidates use an ``IndexIVFFlat`` (approximate search; the group exclusion stays exact).
The index moves to the GPU when faiss sees one. Each distinct text is encoded once, queries with the
model's query prompt and passages with its document prompt (as ``model.encode_query`` / ``encode_document``
pick them), unless prompts are given.

Ranks count only candidates outside the anchor's group: ``range_min`` skips the closest ones (likely
unlabelled near-duplicates), ``range_max`` bounds the search depth, and ``absolute_margin`` /
``relative_margin`` drop candidates scoring too close to the anchor's (lowest) positive score, as in
sentence-transformers. The ``num_negatives`` best remaining candidates are kept.

Usage:
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_hybrid.data import build_training_pairs, load_lareqa
    >>> from st_hybrid.mining import lareqa_corpus, mine_hard_negatives
    >>> pairs = build_training_pairs(load_lareqa("../shared/data/mlqa-r"))  # doctest: +SKIP
    >>> model = SentenceTransformer("intfloat/multilingual-e5-small")  # doctest: +SKIP
    >>> triplets = mine_hard_negatives(  # doctest: +SKIP
    ...     pairs, model, language="passage", corpus=lareqa_corpus("../shared/data/mlqa-r"),
    ...     avoid_training_positives=True,
    ... )
    >>> triplets.column_names  # doctest: +SKIP
    ['query', 'passage', 'negative', 'query_language', 'passage_language', 'parallel_id', 'source', 'answer_id']
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

__all__ = ["LANGUAGE_MODES", "lareqa_corpus", "mine_hard_negatives", "negative_columns"]

logger = logging.getLogger(__name__)

#: Where negatives may come from: the row's passage language, its query language, or every language.
LANGUAGE_MODES = ("passage", "query", "any")
_REQUIRED_COLUMNS = ("query", "passage", "passage_language", "parallel_id")
# Grouping keys used when present: rows sharing an answer_id have the same answer sentence.
_OPTIONAL_KEYS = ("answer_id",)
# faiss on GPU returns at most this many neighbours per query.
_GPU_MAX_K = 2048


def negative_columns(num_negatives: int, numbered: bool = False) -> list[str]:
    """Names of the mined columns: ``negative`` for one, ``negative_1`` ... ``negative_n`` for more.

    ``numbered=True`` names a lone negative ``negative_1`` too: the name it takes once extra positives stand
    before it (see :func:`st_hybrid.data.add_parallel_positives`).
    """
    if num_negatives == 1 and not numbered:
        return ["negative"]
    return [f"negative_{i}" for i in range(1, num_negatives + 1)]


# ---------------------------------------------------------------------------------------------
# Positive groups
# ---------------------------------------------------------------------------------------------
def _positive_groups(key_columns: Sequence[np.ndarray], text_columns: Sequence[np.ndarray]) -> np.ndarray:
    """Group label per row: the sampler's positive groups (:func:`st_hybrid.sampler.positive_groups`).

    ``key_columns`` are the parallel ids, then optionally the answer ids; rows sharing a key or any text of
    ``text_columns`` (one vocabulary across the columns) are in one group, transitively. Mining and batching
    use this one definition, so a mined negative is never relevant to its anchor in the sampler's sense.
    """
    import pyarrow as pa

    from st_hybrid.sampler import positive_groups

    parallel_id, *answer_id = (_factorize(column)[0] for column in key_columns)
    texts = {
        f"text_{i}": pa.array(column.tolist(), type=pa.large_string())
        for i, column in enumerate(text_columns)
    }
    return positive_groups(parallel_id, answer_id[0] if answer_id else None, texts)


# ---------------------------------------------------------------------------------------------
# faiss
# ---------------------------------------------------------------------------------------------
class _Index:
    """A faiss inner-product index over one candidate pool, on GPU when faiss has one (and k fits)."""

    def __init__(self, embeddings: np.ndarray, ivf_threshold: int, nprobe: int, use_gpu: bool | None):
        import faiss

        dimension = embeddings.shape[1]
        if len(embeddings) > ivf_threshold:
            nlist = max(1, int(4 * np.sqrt(len(embeddings))))
            quantizer = faiss.IndexFlatIP(dimension)
            index = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(embeddings)
            index.nprobe = min(nprobe, nlist)
            self._quantizer = quantizer  # the IVF index does not own it: keep it alive
        else:
            index = faiss.IndexFlatIP(dimension)
        index.add(embeddings)
        self.cpu = index
        self.gpu = None
        if use_gpu is not False and faiss.get_num_gpus() > 0:
            self.gpu = faiss.index_cpu_to_all_gpus(index)
        elif use_gpu:
            raise RuntimeError("use_gpu=True but faiss sees no GPU: install faiss-gpu or pass use_gpu=None.")
        self.size = len(embeddings)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.gpu if self.gpu is not None and k <= _GPU_MAX_K else self.cpu
        return index.search(queries, k)


# ---------------------------------------------------------------------------------------------
# Candidate corpus
# ---------------------------------------------------------------------------------------------
def lareqa_corpus(
    path: str | Path, languages: Sequence[str] | None = None, max_articles: int | None = None
) -> Dataset:
    """Every sentence of every paragraph of LAReQA files (``text``, ``language``): a candidate corpus.

    Most of these sentences answer no question, so mining them with ``avoid_training_positives=True`` gives
    negatives from the answer's own paragraphs that are nobody's positive (LAReQA's "hard" candidates).
    """
    from datasets import Dataset

    from .data import load_lareqa_retrieval

    retrieval = load_lareqa_retrieval(path, languages=languages, max_articles=max_articles)
    return Dataset.from_dict({"text": retrieval.candidate_texts, "language": retrieval.candidate_languages})


def _corpus_columns(corpus) -> tuple[np.ndarray, np.ndarray]:
    """(texts, languages) of a candidate corpus; empty arrays for None."""
    if corpus is None:
        return np.empty(0, dtype=object), np.empty(0, dtype=object)
    names = corpus.column_names if hasattr(corpus, "column_names") else list(corpus)
    missing = [name for name in ("text", "language") if name not in names]
    if missing:
        raise ValueError(
            f"The corpus lacks columns {missing}: give it 'text' and 'language' columns "
            "(e.g. st_hybrid.mining.lareqa_corpus(path))."
        )
    texts, languages = np.asarray(corpus["text"], dtype=object), np.asarray(corpus["language"], dtype=object)
    if len(texts) != len(languages):
        raise ValueError(f"The corpus has {len(texts)} texts but {len(languages)} languages.")
    return texts, languages.astype(str).astype(object)


# ---------------------------------------------------------------------------------------------
# Mining
# ---------------------------------------------------------------------------------------------
def _check_arguments(
    pairs: Dataset, language: str, num_negatives: int, range_min: int, range_max: int | None
) -> int:
    """Validate the inputs; return range_max (derived like sentence-transformers when None)."""
    missing = [c for c in _REQUIRED_COLUMNS if c not in pairs.column_names]
    if missing:
        raise ValueError(
            f"The pairs dataset lacks columns {missing}; build it with st_hybrid.data.build_training_pairs "
            f"(mining needs {list(_REQUIRED_COLUMNS)})."
        )
    if len(pairs) == 0:
        raise ValueError("The pairs dataset is empty: there is nothing to mine negatives for.")
    if language not in LANGUAGE_MODES:
        raise ValueError(f"language must be one of {LANGUAGE_MODES}, got {language!r}.")
    if language == "query" and "query_language" not in pairs.column_names:
        raise ValueError(
            "language='query' draws negatives from each row's query language, but the pairs lack a "
            "'query_language' column: build them with st_hybrid.data.build_training_pairs, or use "
            "language='passage' or 'any'."
        )
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"num_negatives must be an integer >= 1, got {num_negatives!r}.")
    existing = [c for c in pairs.column_names if c == "negative" or c.startswith("negative_")]
    if existing:
        raise ValueError(
            f"The pairs already have negative columns {existing}; drop them "
            "(pairs.remove_columns(...)) before mining new ones."
        )
    if range_min < 0:
        raise ValueError(f"range_min must be >= 0, got {range_min}.")
    if range_max is None:
        range_max = range_min + num_negatives
    if range_max - range_min < num_negatives:
        raise ValueError(
            f"range_max={range_max} leaves {range_max - range_min} ranks after range_min={range_min}, fewer than "
            f"num_negatives={num_negatives}: raise range_max or lower range_min."
        )
    return range_max


def _embed_into(
    num_texts: int,
    ids: np.ndarray,
    texts: np.ndarray,
    model,
    role: str,
    prompt_name,
    prompt,
    batch_size,
    show_progress_bar,
) -> np.ndarray:
    """Encode ``texts[ids]`` once; return a (num_texts, dim) array with those rows filled (zeros elsewhere)."""
    embeddings = _encode(model, texts[ids].tolist(), role, prompt_name, prompt, batch_size, show_progress_bar)
    table = np.zeros((num_texts, embeddings.shape[1] if embeddings.ndim == 2 else 0), dtype=np.float32)
    table[ids] = embeddings
    return table


def _encode(model, texts: list[str], role: str, prompt_name, prompt, batch_size, show_progress_bar):
    encode = model.encode_query if role == "query" else model.encode_document
    embeddings = encode(
        texts,
        prompt_name=prompt_name,
        prompt=prompt,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=show_progress_bar,
    )
    return np.ascontiguousarray(embeddings, dtype=np.float32)


def _select(
    indices: np.ndarray,
    scores: np.ndarray,
    allowed: np.ndarray,
    min_scores: np.ndarray,
    range_min: int,
    range_max: int,
    num_negatives: int,
) -> np.ndarray:
    """Pick up to num_negatives candidate positions per anchor row; -1 where too few qualify.

    ``allowed`` marks candidates outside the anchor's group; ranks count those only. ``min_scores`` is
    the highest score a negative may have (the margin bound; +inf without a margin).
    """
    rank = np.cumsum(allowed, axis=1) - 1
    keep = allowed & (rank >= range_min) & (rank < range_max) & (scores <= min_scores[:, None])
    order = np.argsort(~keep, axis=1, kind="stable")[:, :num_negatives]
    chosen = np.take_along_axis(indices, order, axis=1)
    chosen[~np.take_along_axis(keep, order, axis=1)] = -1
    return chosen


def mine_hard_negatives(
    pairs: Dataset,
    model: SentenceTransformer,
    *,
    language: Literal["passage", "query", "any"] = "passage",
    num_negatives: int = 1,
    range_min: int = 0,
    range_max: int | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    corpus: Dataset | Mapping[str, Sequence[str]] | None = None,
    avoid_training_positives: bool = False,
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    passage_prompt_name: str | None = None,
    passage_prompt: str | None = None,
    batch_size: int = 32,
    ivf_threshold: int = 100_000,
    nprobe: int = 32,
    use_gpu: bool | None = None,
    show_progress_bar: bool = False,
) -> Dataset:
    """Add mined hard negatives to training pairs, never from the anchor's positive group.

    Args:
        pairs: Training pairs (``query``, ``passage``, ``passage_language``, ``parallel_id``, optionally
            ``answer_id`` and any other metadata), e.g. from :func:`st_hybrid.data.build_training_pairs`.
        model: The model whose embeddings rank the candidates (typically the one about to be trained).
        language: ``"passage"``: negatives in the row's passage language; ``"query"``: in its query language
            (needs a ``query_language`` column); ``"any"``: in every language.
        num_negatives: Negatives per row: one gives a ``negative`` column, more give ``negative_1`` ...
        range_min: Skip this many of the best-scoring candidates outside the group (near-duplicates).
        range_max: Consider candidates ranked below this (outside the group); ``range_min + num_negatives``
            by default. Raise it when margins drop candidates.
        absolute_margin: Drop candidates scoring above ``positive_score - absolute_margin``.
        relative_margin: Drop candidates scoring above ``positive_score - |positive_score| * relative_margin``.
            The positive score of an anchor is its lowest query-passage score over its rows.
        corpus: More candidates: ``text`` and ``language`` columns (a ``Dataset`` or a mapping), e.g.
            :func:`lareqa_corpus`, every sentence of the LAReQA paragraphs. A corpus text equal to a text
            of the anchor's group is excluded like any group text.
        avoid_training_positives: Never mine a text that is some row's query or passage (needs a corpus).
            A negative drawn from the training passages is another row's positive: ``HybridBatchSampler``
            then joins the two rows' positive groups so they never share a batch, and on real data those
            links chain every row into one group. Mining from other sentences keeps the groups intact.
        query_prompt_name: Prompt name for the queries; ``model.encode_query``'s default otherwise.
        query_prompt: A literal query prompt (takes precedence over the name).
        passage_prompt_name: Prompt name for the passages; ``model.encode_document``'s default otherwise.
        passage_prompt: A literal passage prompt (takes precedence over the name).
        batch_size: Encoding batch size.
        ivf_threshold: Pools with more candidates than this use an approximate IVF index.
        nprobe: Lists an IVF index visits per query.
        use_gpu: ``None``: the GPU when faiss sees one; ``False``: CPU; ``True``: require a GPU.
        show_progress_bar: Show encoding progress.

    Returns:
        The rows that got ``num_negatives`` negatives, with columns ``query``, ``passage``, the negative
        column(s), then the other columns in their order. Rows for which too few candidates qualify are
        dropped with a warning that says how many.
    """
    range_max = _check_arguments(pairs, language, num_negatives, range_min, range_max)
    key_names = ["parallel_id"] + [name for name in _OPTIONAL_KEYS if name in pairs.column_names]
    pool_column = ["query_language"] if language == "query" else []
    columns = pairs.select_columns(
        list(dict.fromkeys([*_REQUIRED_COLUMNS, *key_names, *pool_column]))
    ).to_dict()
    queries = np.asarray(columns["query"], dtype=object)
    passages = np.asarray(columns["passage"], dtype=object)
    passage_languages = np.asarray(columns["passage_language"], dtype=object).astype(str)
    groups = _positive_groups(
        [np.asarray(columns[name], dtype=object).astype(str) for name in key_names], [queries, passages]
    )

    corpus_texts, corpus_languages = _corpus_columns(corpus)
    if avoid_training_positives and not len(corpus_texts):
        raise ValueError(
            "avoid_training_positives=True leaves no candidates without a corpus: pass corpus= (e.g. "
            "st_hybrid.mining.lareqa_corpus('../shared/data/mlqa-r'), every sentence of the paragraphs)."
        )
    # One code per distinct text over queries, passages and corpus; a text's group is that of its rows.
    num_rows = len(pairs)
    text_codes, texts = _factorize(np.concatenate([queries, passages, corpus_texts]))
    query_text, passage_text = text_codes[:num_rows], text_codes[num_rows : 2 * num_rows]
    text_group = np.full(len(texts), -1, dtype=np.int64)  # -1: in no row (a corpus-only text)
    text_group[query_text] = groups
    text_group[passage_text] = groups

    # Candidates: (text, language) of the passages and of the corpus.
    candidate_text = np.concatenate([passage_text, text_codes[2 * num_rows :]])
    candidate_language = np.concatenate([passage_languages, corpus_languages])
    if avoid_training_positives:
        is_free = text_group[candidate_text] == -1
        candidate_text, candidate_language = candidate_text[is_free], candidate_language[is_free]

    # Each distinct text encoded once per role: queries with the query prompt, candidates with the passage one.
    margins = absolute_margin is not None or relative_margin is not None
    query_ids = np.unique(query_text)
    document_ids = np.unique(
        np.concatenate([candidate_text, passage_text if margins else []]).astype(np.int64)
    )
    text_array = np.asarray(texts, dtype=object)
    query_embeddings = _embed_into(
        len(texts), query_ids, text_array, model, "query", query_prompt_name, query_prompt, batch_size,
        show_progress_bar,
    )  # fmt: skip
    document_embeddings = _embed_into(
        len(texts), document_ids, text_array, model, "passage", passage_prompt_name, passage_prompt,
        batch_size, show_progress_bar,
    )  # fmt: skip

    # Anchors: (query text, pool) - rows with the same key share their search and their negatives.
    if language == "passage":
        row_pool, candidate_pool = passage_languages, candidate_language
    elif language == "query":
        row_pool = np.asarray(columns["query_language"], dtype=object).astype(str)
        candidate_pool = candidate_language
    else:
        row_pool, candidate_pool = (
            np.full(num_rows, "*", dtype=object),
            np.full(len(candidate_text), "*", dtype=object),
        )
    pool_codes, pool_names = _factorize(np.concatenate([row_pool, candidate_pool]))
    row_pool_codes, candidate_pool_codes = pool_codes[:num_rows], pool_codes[num_rows:]
    anchor_codes, anchor_key_values = _factorize(
        query_text.astype(np.int64) * len(pool_names) + row_pool_codes
    )
    anchor_key_values = np.asarray(anchor_key_values, dtype=np.int64)
    anchor_query, anchor_pool = anchor_key_values // len(pool_names), anchor_key_values % len(pool_names)
    anchor_group = np.empty(len(anchor_key_values), dtype=np.int64)
    anchor_group[anchor_codes] = groups

    # Highest score a negative may reach: the margin below the anchor's lowest positive score.
    bound = np.full(len(anchor_key_values), np.inf, dtype=np.float32)
    if margins:
        positive_scores = np.einsum(
            "ij,ij->i", query_embeddings[query_text], document_embeddings[passage_text]
        ).astype(np.float32)
        lowest = np.full(len(anchor_key_values), np.inf, dtype=np.float32)
        np.minimum.at(lowest, anchor_codes, positive_scores)
        if absolute_margin is not None:
            bound = np.minimum(bound, lowest - absolute_margin)
        if relative_margin is not None:
            bound = np.minimum(bound, lowest - np.abs(lowest) * relative_margin)

    negatives = np.full((len(anchor_key_values), num_negatives), -1, dtype=np.int64)
    for pool in range(len(pool_names)):
        candidates = np.unique(candidate_text[candidate_pool_codes == pool])  # text codes in this pool
        anchors = np.flatnonzero(anchor_pool == pool)
        if not len(candidates) or not len(anchors):
            continue
        index = _Index(document_embeddings[candidates], ivf_threshold, nprobe, use_gpu)
        # Each anchor searches deep enough to pass every member of its own group in the pool.
        candidate_groups = text_group[candidates]
        group_members = np.bincount(candidate_groups[candidate_groups >= 0], minlength=int(groups.max()) + 1)
        depth = np.minimum(range_max + group_members[anchor_group[anchors]], len(candidates))
        bucket = np.minimum(2 ** np.ceil(np.log2(np.maximum(depth, 1))).astype(np.int64), len(candidates))
        for k in np.unique(bucket):
            members = anchors[bucket == k]
            scores, found = index.search(query_embeddings[anchor_query[members]], int(k))
            found_texts = np.where(found >= 0, candidates[np.maximum(found, 0)], -1)
            allowed = (found >= 0) & (text_group[np.maximum(found_texts, 0)] != anchor_group[members, None])
            negatives[members] = _select(
                found_texts, scores, allowed, bound[members], range_min, range_max, num_negatives
            )
        logger.info("Pool %s: %d candidates, %d anchors", pool_names[pool], len(candidates), len(anchors))

    row_negatives = negatives[anchor_codes]
    complete = (row_negatives >= 0).all(axis=1)
    if not complete.all():
        warnings.warn(
            f"{int((~complete).sum())} of {len(pairs)} rows got fewer than {num_negatives} negatives and were "
            "dropped (their pool has too few candidates outside the group within range_max, or margins removed "
            "them): raise range_max, lower range_min or the margins, or use language='any'.",
            UserWarning,
            stacklevel=2,
        )
    kept = np.flatnonzero(complete)
    mined = pairs.select(kept) if len(kept) < len(pairs) else pairs
    names = negative_columns(num_negatives)
    for position, name in enumerate(names):
        mined = mined.add_column(name, text_array[row_negatives[kept, position]].tolist())
    order = ["query", "passage", *names] + [c for c in pairs.column_names if c not in ("query", "passage")]
    return mined.select_columns(order)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list]:
    """Codes per value and the distinct values, in order of first appearance (deterministic)."""
    import pandas as pd

    codes, uniques = pd.factorize(values)
    return codes, list(uniques)
