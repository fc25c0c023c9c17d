"""HybridBatchSampler: monolingual, cross-lingual, hybrid and mixed batches for sentence-transformers.

A drop-in batch sampler for ``SentenceTransformerTrainer`` (a :class:`DefaultBatchSampler` subclass with
the same constructor plus keyword options) that builds every batch from the language metadata of a
training-pairs dataset (see :mod:`st_hybrid.data`):

* ``hybrid`` (default): a batch is monolingual with probability ``alpha``, cross-lingual otherwise
  (Elmahdy et al. 2024). The epoch holds ``alpha`` of its step groups as monolingual ones, rounded at
  random (stratified sampling), in a random order.
* ``mono`` (X-X-mono): every batch is in one language, query and passages.
* ``cross`` (X-Y): every row has query language != passage language. Rows mix language pairs in a
  batch, or with ``one_pair_per_batch=True`` a batch holds one (query language, passage language) pair.
* ``mixed``: every batch holds ``round(alpha * batch_size)`` monolingual rows (any language) and
  cross-lingual rows for the rest (the "gradient mixing" baseline). So that mono and cross rows of a
  step never share a positive group, each epoch halves a source's positive groups at random (A, B),
  stratified so that either half can fill its side in every epoch (checked at construction): half of
  its steps take mono rows from A and cross rows from B, the other half the reverse.

How an epoch is planned (all in numpy, once per epoch, then the batches are sliced off):

* **Step groups.** With ``W`` processes, accelerate gives rank ``r`` the batches ``r, r + W, ...``, so
  one optimizer step (one forward pass per rank) consumes ``W`` consecutive batches. The sampler plans
  a *step group* of ``W * batch_size`` rows as one global batch and cuts it into ``W`` batches: one
  type, one ``source``, one language (mono) or one pair (``one_pair_per_batch``), one composition
  (mixed), and no positive group (below) twice in the whole group, so ``gather_across_devices=True``
  sees no positive, translation of a positive or repeated text as a negative. With ``W == 1`` a group is a batch.
* **Epoch length.** ``len(sampler) == W * (eligible_rows // (W * batch_size))`` batches, where
  ``eligible_rows`` counts the rows the strategy draws from: monolingual rows (``mono``), cross-lingual
  rows (``cross``) or all rows (``hybrid``, ``mixed``). An epoch thus shows as many rows as the data it
  can use, like the default sampler. When the mono and cross pools differ in size from what ``alpha``
  asks for, the smaller side is reused (a fresh shuffle per pass) and the larger side is partly seen;
  only full batches are emitted.
* **Weights.** Step groups go to sources in proportion to their eligible rows (each group from one
  source). Within a source, mono groups go to languages (and ``one_pair_per_batch`` cross groups to
  language pairs) by ``language_weighting``: ``"uniform"``, ``"size"`` (rows) or ``"temperature"``
  (``p ~ rows ** (1 / temperature)``). Counts are the expected counts rounded by systematic sampling
  with a random offset, so every epoch has exactly ``len(sampler)`` batches and the rounding is unbiased
  across epochs. Under ``hybrid`` a source with one side only (e.g. an English-only set, mono rows
  only) gives all its groups to that side. Cross batches with mixed pairs draw rows uniformly from the source's cross rows, so
  their pair mix is the one of the data (see ``cross_partners`` in :func:`st_hybrid.data.build_training_pairs`).
* **Positive groups.** The no-repeat unit is a *positive group*: the connected components of rows that
  share a ``parallel_id`` (translations), an ``answer_id`` (the same answer sentence, e.g. several SQuAD
  questions answered by one sentence, see :func:`st_hybrid.data.load_lareqa`) or a text: a query or
  passage text equal to another row's query or passage text, or a ``negative*`` (mined hard negative)
  text equal to another row's query or passage text. With in-batch negatives any such pair in one step
  would score a positive (or its translation) as a negative, a false negative; sentence-transformers'
  ``NoDuplicatesBatchSampler`` only avoids repeated texts, and text matching alone cannot see
  translations. Links chain (a Tatoeba sentence shared by 47 pair ids joins them all), so groups are
  computed once, vectorised, as the connected components of a bipartite row-key graph
  (:func:`positive_groups`). Hard negatives that chain many rows together make large groups: they still
  batch, each giving a few rows per pass (below).
* **No repeated positive group.** A pool's rows are dealt into step groups like cards: rows in runs per
  positive group (groups in a random order), cut into ``group_size`` rounds of ``k`` rows, each round
  shuffled across the ``k`` step groups. A group's rows sit in at most two adjacent rounds, and the few
  groups straddling two rounds get their columns swapped apart, so each step group holds every positive
  group at most once. Per pass a group contributes at most ``k`` rows, taken in turn from a random order
  of its rows (the excess waits for the next pass), so a giant group neither stalls nor starves the
  dealing; a pool needs at least ``W * batch_size`` positive groups.
* **Variants of the setting.** With accelerate's ``split_batches=True`` one batch is split over the
  processes: pass ``num_processes=1`` and the global batch size. Gradient accumulation needs nothing:
  each forward pass is one step group. Prefer one ``Dataset`` with a ``source`` column to a
  ``DatasetDict``: sentence-transformers' multi-dataset sampler interleaves the batches of several
  samplers and would cut step groups apart when ``W > 1``.
* **Determinism.** Everything is drawn from ``numpy.random.default_rng([seed, epoch])``; the torch
  ``generator`` that sentence-transformers passes is ignored, so every process builds the same sequence
  and a resumed run that skips the first batches of an epoch continues the interrupted sequence.

Usage:
    >>> from datasets import Dataset
    >>> from st_hybrid.sampler import HybridBatchSampler
    >>> langs = ["en", "de", "fr"]
    >>> rows = [(q, p, str(i)) for i in range(8) for q in langs for p in langs]
    >>> pairs = Dataset.from_dict({
    ...     "query": [f"q{i}-{q}" for q, p, i in rows],
    ...     "passage": [f"p{i}-{p}" for q, p, i in rows],
    ...     "query_language": [q for q, p, i in rows],
    ...     "passage_language": [p for q, p, i in rows],
    ...     "parallel_id": [i for q, p, i in rows],
    ... })
    >>> # Outside a trainer pass the metadata explicitly (HybridTrainer / hybrid_batch_sampler do it for you).
    >>> sampler = HybridBatchSampler(pairs, batch_size=4, drop_last=True, seed=0, alpha=0.5, num_processes=1,
    ...                              metadata=pairs)
    >>> len(sampler) == len(list(sampler)) == len(pairs) // 4
    True
    >>> batch = next(iter(sampler))
    >>> len(batch), len({pairs[i]["parallel_id"] for i in batch})
    (4, 4)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler

from st_hybrid.data import METADATA_COLUMNS, require_consistent_case, require_filled

__all__ = [
    "LANGUAGE_WEIGHTINGS",
    "REQUIRED_METADATA_COLUMNS",
    "STRATEGIES",
    "HybridBatchSampler",
    "PairMetadata",
    "detect_num_processes",
    "positive_groups",
]

logger = logging.getLogger(__name__)

#: Batch strategies of :class:`HybridBatchSampler`.
STRATEGIES = ("hybrid", "mono", "cross", "mixed")
#: How mono groups are spread over languages (and one-pair cross groups over language pairs).
LANGUAGE_WEIGHTINGS = ("uniform", "size", "temperature")
#: Metadata the sampler cannot work without (``source`` is optional).
REQUIRED_METADATA_COLUMNS = ("query_language", "passage_language", "parallel_id")

MONO, CROSS, MIXED = 0, 1, 2
_KIND_NAMES = {MONO: "mono", CROSS: "cross", MIXED: "mixed"}
_SIDE_NAMES = {"mono": "monolingual", "cross": "cross-lingual"}


def detect_num_processes() -> int:
    """The number of training processes: torch.distributed, then accelerate's state, then ``WORLD_SIZE``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    try:
        from accelerate.state import PartialState

        if PartialState._shared_state:  # initialized by an Accelerator / the trainer; never start one here
            return PartialState().num_processes
    except ImportError:  # pragma: no cover - accelerate is a dependency
        pass
    return int(os.environ.get("WORLD_SIZE", "1"))


# ---------------------------------------------------------------------------------------------
# Metadata: integer codes per row
# ---------------------------------------------------------------------------------------------
def _dictionary_encode(values, name: str = "metadata") -> tuple[np.ndarray, list]:
    """(codes, categories) of a column: arrow dictionary encoding, O(rows) and no Python loop over rows."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        categories, codes = np.unique(values, return_inverse=True)
        return codes.astype(np.int64), categories.tolist()
    values = _as_arrow(values)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    require_filled(values, name)
    encoded = values.dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _text_columns(column_names: Sequence[str], is_text) -> list[str]:
    """The text columns a collator would tokenize: every string column that is not metadata."""
    return [name for name in column_names if name not in METADATA_COLUMNS and is_text(name)]


def positive_groups(
    parallel_id: np.ndarray,
    answer_id: np.ndarray | None = None,
    texts: Mapping[str, pa.Array] | None = None,
) -> np.ndarray:
    """Positive-group code per row: connected components of rows sharing an id, answer or text.

    Two rows are in one group when they share a ``parallel_id`` (translations), an ``answer_id`` (the
    same answer sentence, see :func:`st_hybrid.data.load_lareqa`), or a text: any text of one row's
    query / passage (every text column not named ``negative*``) equal to any text of the other's, or a
    ``negative*`` text of one row equal to a query / passage text of the other (in one batch that
    negative would be the other row's positive, scored as a negative). Two rows sharing only a hard
    negative are not joined (a shared negative is a negative for both). Groups are closed under these
    links (transitively), computed at once as the connected components of a bipartite row-key graph.

    Args:
        parallel_id: Integer code per row.
        answer_id: Optional integer code per row (rows sharing it have the same answer sentence).
        texts: Optional text columns by name (arrow arrays aligned with the rows).

    Returns:
        An int64 array of group codes ``0..num_groups - 1``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    num_rows = len(parallel_id)
    # Key families (each a 2-D array: one row of codes per column, -1 for "no key"): ids, answers, texts.
    families = [parallel_id[None, :]]
    if answer_id is not None:
        families.append(answer_id[None, :])
    if texts:
        positive = [name for name in texts if not name.startswith("negative")]
        negative = [name for name in texts if name.startswith("negative")]
        # One vocabulary for every text column, so a query equal to another row's passage links them.
        encoded = pa.chunked_array(
            [_as_arrow(texts[name]).cast(pa.large_string()) for name in positive + negative]
        ).combine_chunks()
        codes = encoded.dictionary_encode().indices.to_numpy(zero_copy_only=False).astype(np.int64)
        codes = codes.reshape(len(positive) + len(negative), num_rows)
        if negative:
            # A negative text links only when it is some row's query / passage text.
            on_positive_side = np.zeros(int(codes.max()) + 1, dtype=bool)
            on_positive_side[codes[: len(positive)].ravel()] = True
            negative_codes = codes[len(positive) :]
            codes[len(positive) :] = np.where(on_positive_side[negative_codes], negative_codes, -1)
        families.append(codes)
    # Nodes: rows 0..n-1, then each key family in its own range; one edge per (row, key) pair.
    row_nodes, key_nodes, offset = [], [], num_rows
    row_index = np.arange(num_rows)
    for family in families:
        present = family >= 0
        row_nodes.append(np.broadcast_to(row_index, family.shape)[present])
        key_nodes.append(family[present] + offset)
        offset += int(family.max()) + 1 if family.size else 0
    rows, cols = np.concatenate(row_nodes), np.concatenate(key_nodes)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(offset, offset))
    _, labels = connected_components(graph.tocsr(), directed=False)
    return np.unique(labels[:num_rows], return_inverse=True)[1].astype(np.int64)


@dataclass(frozen=True)
class PairMetadata:
    """Language metadata and positive groups of a training-pairs dataset, as integer codes per row.

    Attributes:
        query_language: Language code index of each row's query (into ``languages``).
        passage_language: Language code index of each row's passage (into ``languages``).
        parallel_id: Parallel-id code of each row: rows sharing it are translations of each other.
        source: Source (dataset name) index of each row (into ``sources``); all zeros without a column.
        languages: Language names, shared by queries and passages.
        sources: Source names (``[""]`` without a ``source`` column).
        group: Positive-group code of each row (see :func:`positive_groups`): the sampler's no-repeat
            unit. Rows of one group are positives of each other (translations, the same answer sentence,
            the same text), so a step group never holds two rows of one group. Without text columns (or
            ``answer_id``) in the input, the groups are the parallel ids.

    Language codes are taken as written but must not differ only in case (``en`` and ``EN`` raise):
    normalising silently would disagree with language lists given elsewhere (evaluation, configs).

    Usage:
        >>> meta = PairMetadata.from_columns({"query_language": ["en", "de", "de"],
        ...     "passage_language": ["de", "de", "de"], "parallel_id": ["1", "1", "2"],
        ...     "passage": ["Hallo.", "Hallo.", "Hallo."]})
        >>> meta.languages, meta.query_language.tolist(), len(meta)
        (['en', 'de'], [0, 1, 1], 3)
        >>> meta.group.tolist()  # id 2 shares the passage text of id 1: one positive group
        [0, 0, 0]
        >>> meta.group_stats()["ids_joined"]
        2
    """

    query_language: np.ndarray
    passage_language: np.ndarray
    parallel_id: np.ndarray
    source: np.ndarray
    languages: list
    sources: list
    group: np.ndarray

    def __len__(self) -> int:
        return len(self.parallel_id)

    @property
    def num_groups(self) -> int:
        """Number of positive groups."""
        return int(self.group.max()) + 1 if len(self.group) else 0

    def group_stats(self) -> dict[str, int]:
        """How much the grouping merged: ids, groups, ids joined to another id, the largest group.

        Returns:
            ``{"rows", "ids", "groups", "ids_joined", "largest_group_ids", "largest_group_rows"}``, where
            ``ids_joined`` counts the parallel ids that share a group with at least one other id.
        """
        num_ids = int(self.parallel_id.max()) + 1 if len(self) else 0
        # One (group, id) pair per distinct id: ids per group.
        group_of_id = np.zeros(num_ids, dtype=np.int64)
        group_of_id[self.parallel_id] = self.group
        ids_per_group = np.bincount(group_of_id, minlength=self.num_groups)
        rows_per_group = np.bincount(self.group, minlength=self.num_groups)
        return {
            "rows": len(self),
            "ids": num_ids,
            "groups": self.num_groups,
            "ids_joined": int(ids_per_group[ids_per_group > 1].sum()),
            "largest_group_ids": int(ids_per_group.max(initial=0)),
            "largest_group_rows": int(rows_per_group.max(initial=0)),
        }

    @classmethod
    def from_columns(cls, columns: Mapping) -> PairMetadata:
        """Build from a mapping column name -> values (lists, numpy or arrow arrays).

        The mapping needs :data:`REQUIRED_METADATA_COLUMNS`; ``source`` and ``answer_id`` are optional.
        Any other entry is a text column (``query``, ``passage``, ``negative*``, ...) used for the
        positive groups.
        """
        missing = [name for name in REQUIRED_METADATA_COLUMNS if name not in columns]
        if missing:
            raise ValueError(
                f"HybridBatchSampler needs the metadata columns {list(REQUIRED_METADATA_COLUMNS)} "
                f"(optional: 'source', 'answer_id'); missing: {missing}. Build the pairs with "
                "st_hybrid.data.build_training_pairs, or add these columns to your dataset "
                "(or pass them as metadata=...)."
            )
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Metadata columns have different lengths: {lengths}.")
        num_rows = lengths["parallel_id"]
        # Queries and passages share one language vocabulary so that codes compare across the two.
        query_language, passage_language = (
            _as_arrow(columns[name]).cast(pa.string()) for name in ("query_language", "passage_language")
        )
        require_filled(query_language, "query_language")
        require_filled(passage_language, "passage_language")
        language_codes, languages = _dictionary_encode(
            pa.concat_arrays([query_language, passage_language]), "language"
        )
        require_consistent_case(languages)
        parallel_id, _ = _dictionary_encode(
            _as_arrow(columns["parallel_id"]).cast(pa.string()), "parallel_id"
        )
        if "source" in columns:
            source, sources = _dictionary_encode(_as_arrow(columns["source"]).cast(pa.string()), "source")
        else:
            source, sources = np.zeros(num_rows, dtype=np.int64), [""]
        answer_id = None
        if "answer_id" in columns:
            answer_id, _ = _dictionary_encode(_as_arrow(columns["answer_id"]).cast(pa.string()), "answer_id")
        texts = {name: values for name, values in columns.items() if name not in METADATA_COLUMNS}
        return cls(
            query_language=language_codes[:num_rows],
            passage_language=language_codes[num_rows:],
            parallel_id=parallel_id,
            source=source,
            languages=languages,
            sources=sources,
            group=positive_groups(parallel_id, answer_id, texts),
        )

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> PairMetadata:
        """Read the metadata and text columns of a ``datasets.Dataset`` (column-wise, no row loop)."""
        features = dataset.features
        texts = _text_columns(
            dataset.column_names,
            lambda name: getattr(features[name], "dtype", None) in ("string", "large_string"),
        )
        names = [name for name in METADATA_COLUMNS if name in dataset.column_names] + texts
        return cls.from_columns({name: _dataset_column(dataset, name) for name in names})


def _dataset_column(dataset: Dataset, name: str):
    """A column of a datasets.Dataset as arrow, honouring an indices mapping (select/shuffle) cheaply."""
    column = dataset.data.column(name)
    if dataset._indices is None:
        return column
    indices = dataset._indices.column(0).to_numpy()
    return column.combine_chunks().take(pa.array(indices))


def _as_arrow(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray):
        return pa.array(values.tolist())
    return pa.array(list(values))


def _coerce_metadata(dataset, metadata) -> PairMetadata:
    if metadata is None:
        leaking = [name for name in METADATA_COLUMNS if name in getattr(dataset, "column_names", ())]
        if leaking:
            # The trainer would tokenize these columns as extra inputs (hard negatives for MNRL).
            raise ValueError(
                f"The dataset given to HybridBatchSampler still has the metadata columns {leaking}: a "
                "SentenceTransformerTrainer would feed them to the model as extra text inputs (e.g. hard "
                "negatives for MultipleNegativesRankingLoss). Train with st_hybrid.HybridTrainer("
                "train_dataset=pairs, batch_sampler=...), or with the stock trainer through "
                "train_dataset, batch_sampler = st_hybrid.hybrid_batch_sampler(pairs, ...). To build "
                "batches outside a trainer, pass the metadata explicitly: HybridBatchSampler(pairs, ..., "
                "metadata=pairs)."
            )
        raise ValueError(
            "HybridBatchSampler needs the pairs' metadata: metadata=... (a PairMetadata, a Dataset or a mapping "
            f"with the columns {list(REQUIRED_METADATA_COLUMNS)}). Train with st_hybrid.HybridTrainer or "
            "st_hybrid.hybrid_batch_sampler(pairs, ...), which pass it."
        )
    if isinstance(metadata, PairMetadata):
        return metadata
    if isinstance(metadata, Dataset):
        return PairMetadata.from_dataset(metadata)
    if isinstance(metadata, Mapping):
        return PairMetadata.from_columns(metadata)
    raise TypeError(
        f"metadata must be a PairMetadata, a Dataset or a mapping of columns, not {type(metadata)}."
    )


# ---------------------------------------------------------------------------------------------
# Pools and the dealing of rows into step groups
# ---------------------------------------------------------------------------------------------
@dataclass
class _Pool:
    """Rows that may share a step group: one source, one batch type, one language or pair (or all)."""

    kind: int
    source: int
    label: str  # for messages: "mono en", "cross en->de", "cross (all pairs)"
    rows: np.ndarray  # dataset row indices
    local_group: np.ndarray  # positive group per row, re-coded 0..num_groups-1 within the pool
    group_counts: np.ndarray  # rows per local group
    sorted_counts: np.ndarray  # rows per local group, ascending
    count_cumsum: np.ndarray  # prefix sums of sorted_counts, with a leading 0

    @classmethod
    def build(cls, kind: int, source: int, label: str, rows: np.ndarray, group: np.ndarray) -> _Pool:
        _, local_group, counts = np.unique(group[rows], return_inverse=True, return_counts=True)
        sorted_counts = np.sort(counts)
        return cls(
            kind, source, label, rows, local_group.astype(np.int64), counts, sorted_counts,
            np.r_[0, np.cumsum(sorted_counts)],
        )  # fmt: skip

    @property
    def num_groups(self) -> int:
        return len(self.sorted_counts)

    def rows_with_cap(self, cap: int) -> int:
        """How many rows are usable when each positive group contributes at most ``cap`` of them."""
        below = np.searchsorted(self.sorted_counts, cap, side="left")
        return int(self.count_cumsum[below] + cap * (self.num_groups - below))

    def capacity(self, group_size: int) -> int:
        """Most step groups of ``group_size`` rows one pass can fill with distinct positive groups each."""
        high = len(self.rows) // group_size
        if high == 0 or self.num_groups < group_size:
            return 0
        low = 1  # rows_with_cap(k) / k is non-increasing in k: binary search the last k that fits
        while low < high:
            mid = (low + high + 1) // 2
            if self.rows_with_cap(mid) >= mid * group_size:
                low = mid
            else:
                high = mid - 1
        return low

    def deal(self, num_groups: int, group_size: int, rng: np.random.Generator) -> np.ndarray:
        """``(num_groups, group_size)`` dataset rows, no positive group twice in a step group.

        One pass fills at most :meth:`capacity` step groups, each positive group giving at most a few rows
        (the cap); further passes reuse the pool. Within a positive group, rows are taken in a fresh random
        order per epoch and in turn across passes, so a giant group (a sentence shared by thousands of
        rows) neither stalls the dealing nor repeats its rows before all have been used. A pass costs
        O(positive groups + rows it deals), not O(pool rows).
        """
        capacity = self.capacity(group_size)
        if capacity == 0:
            raise RuntimeError(f"Pool {self.label} cannot fill a group of {group_size} rows.")
        if self.sorted_counts[-1] == 1:  # every group once (typical mono pool): any split works
            passes = []
            while num_groups > 0:
                k = min(capacity, num_groups)
                passes.append(
                    self.rows[rng.permutation(len(self.rows))[: k * group_size]].reshape(k, group_size)
                )
                num_groups -= k
            return np.concatenate(passes) if len(passes) > 1 else passes[0]
        # Rows in runs per positive group, in a random order within each group (radix sort on small keys).
        order = rng.permutation(len(self.rows))
        key_dtype = np.uint16 if self.num_groups <= np.iinfo(np.uint16).max + 1 else np.int64
        order = order[np.argsort(self.local_group[order].astype(key_dtype), kind="stable")]
        starts = np.r_[0, np.cumsum(self.group_counts)[:-1]]
        taken = np.zeros(self.num_groups, dtype=np.int64)  # rows each group gave so far (its turn)
        passes = []
        while num_groups > 0:
            k = min(capacity, num_groups)
            passes.append(self._deal_pass(k, group_size, order, starts, taken, rng))
            num_groups -= k
        return np.concatenate(passes) if len(passes) > 1 else passes[0]

    def _deal_pass(
        self,
        k: int,
        group_size: int,
        order: np.ndarray,
        starts: np.ndarray,
        taken: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        need = k * group_size
        # The smallest cap that still fills the pass spreads the used rows evenly over the groups.
        cap, high = 1, k
        while cap < high:
            mid = (cap + high) // 2
            if self.rows_with_cap(mid) >= need:
                high = mid
            else:
                cap = mid + 1
        # Groups in a random order, each giving its next min(count, cap) rows, until the pass is full.
        group_order = rng.permutation(self.num_groups)
        gives = np.minimum(self.group_counts[group_order], cap)
        used = int(np.searchsorted(np.cumsum(gives), need)) + 1
        group_order, gives = group_order[:used], gives[:used]
        gives[-1] -= int(gives.sum()) - need
        group_of = np.repeat(group_order, gives)
        turn = np.arange(need) - np.repeat(np.cumsum(gives) - gives, gives)
        counts = self.group_counts[group_of]
        picked = order[starts[group_of] + (taken[group_of] + turn) % counts]
        taken[group_order] += gives
        rounds = picked.reshape(group_size, k)
        round_group = self.local_group[rounds]
        columns = rng.permuted(np.broadcast_to(np.arange(k), (group_size, k)), axis=1)
        # A group whose run crosses from round r into round r+1 could meet itself in a column: swap apart.
        for r in np.flatnonzero(round_group[:-1, -1] == round_group[1:, 0]):
            _separate(columns, round_group, int(r), rng)
        groups = np.empty((group_size, k), dtype=np.int64)
        np.put_along_axis(groups, columns, rounds, axis=1)
        # Shuffle within a step group so that each of its W batches is a random part of it.
        return self.rows[rng.permuted(groups.T, axis=1)]


def _separate(columns: np.ndarray, round_group: np.ndarray, r: int, rng: np.random.Generator) -> None:
    """Move the straddling group's round-(r+1) rows out of the columns it already holds in round r."""
    group = round_group[r, -1]
    taken = columns[r][round_group[r] == group]
    nxt = columns[r + 1]
    is_group = round_group[r + 1] == group
    in_taken = np.isin(nxt, taken)
    clash = np.flatnonzero(is_group & in_taken)
    if clash.size == 0:
        return
    # Enough partners always exist: with a rows in round r and b in r+1 (a + b <= k), free >= clashes.
    partners = rng.choice(np.flatnonzero(~is_group & ~in_taken), size=clash.size, replace=False)
    nxt[clash], nxt[partners] = nxt[partners].copy(), nxt[clash].copy()


def _apportion(weights: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integer counts summing to ``total``, each the floor or ceil of ``total * p``, unbiased (systematic)."""
    weights = np.asarray(weights, dtype=np.float64)
    counts = np.zeros(len(weights), dtype=np.int64)
    if total == 0 or len(weights) == 0:
        return counts
    order = rng.permutation(len(weights))  # a random unit order so no unit is favoured by its position
    cum = np.r_[0.0, np.cumsum(weights[order]) / weights.sum() * total]
    cum[-1] = total
    counts[order] = np.diff(np.floor(cum + rng.random())).astype(np.int64)
    return counts


# ---------------------------------------------------------------------------------------------
# The sampler
# ---------------------------------------------------------------------------------------------
class HybridBatchSampler(DefaultBatchSampler):
    """Batches of row indices that are monolingual, cross-lingual, hybrid or mixed (see the module docs).

    Args:
        dataset: The training pairs as the trainer sees them: without metadata columns (a dataset that
            still has them raises unless ``metadata`` is given, since a trainer would tokenize them).
        batch_size: Rows per batch (per process).
        drop_last: Ignored: only full batches are emitted (accelerate drops short batches mid-epoch).
        valid_label_columns: Unused; accepted for sentence-transformers compatibility.
        generator: Unused; the order comes from ``seed`` and the epoch only (identical on every process).
        seed: Seed of the batch order; combined with the epoch set by :meth:`set_epoch`.
        strategy: ``"hybrid"``, ``"mono"``, ``"cross"`` or ``"mixed"``.
        alpha: Share of monolingual step groups (``hybrid``) or of monolingual rows per batch (``mixed``).
        language_weighting: ``"uniform"``, ``"size"`` or ``"temperature"``, for choosing the language of
            mono groups and the pair of ``one_pair_per_batch`` cross groups.
        temperature: Temperature ``T`` of ``"temperature"`` weighting, ``p ~ rows ** (1 / T)``.
        one_pair_per_batch: Cross groups use one (query language, passage language) pair each.
        num_processes: Processes that share the batches (``W``); detected from torch.distributed /
            accelerate when None. Steps group ``W`` consecutive batches and ``len`` is a multiple of ``W``.
        metadata: Required. The metadata (a :class:`PairMetadata`, a mapping of columns or a Dataset with
            the metadata and text columns), aligned with ``dataset``; the trainers pass it after stripping
            the columns off the dataset.
        drop_small_pools: Skip (with a warning) languages / pairs with fewer than ``W * batch_size``
            positive groups (``mixed``: sources that cannot fill a step) instead of raising.

    Raises:
        ValueError: Unknown strategy or weighting, ``alpha`` outside [0, 1], no ``metadata`` (or a dataset
            still holding the metadata columns), missing or empty metadata values, language codes differing
            only in case, too few languages or no cross rows for a cross-lingual strategy, a pool (``mixed``:
            a source, in any epoch) too small for one step, or a batch larger than the data. Each message
            names the fix.

    Usage:
        >>> from functools import partial
        >>> from st_hybrid import HybridTrainer, hybrid_batch_sampler
        >>> from st_hybrid.sampler import HybridBatchSampler
        >>> # HybridTrainer strips the metadata columns and passes them as metadata=...
        >>> trainer = HybridTrainer(model=model, args=args, train_dataset=pairs, loss=loss,  # doctest: +SKIP
        ...     batch_sampler=partial(HybridBatchSampler, strategy="hybrid", alpha=0.5))
        >>> # The stock SentenceTransformerTrainer: strip them first (passing the raw pairs raises, since the
        >>> # trainer would tokenize the metadata columns as extra inputs).
        >>> train_dataset, batch_sampler = hybrid_batch_sampler(pairs, strategy="hybrid")  # doctest: +SKIP
        >>> args = SentenceTransformerTrainingArguments(output_dir="out", batch_sampler=batch_sampler)  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool = True,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        strategy: str = "hybrid",
        alpha: float = 0.5,
        language_weighting: str = "uniform",
        temperature: float = 2.0,
        one_pair_per_batch: bool = False,
        num_processes: int | None = None,
        metadata: PairMetadata | Mapping | Dataset | None = None,
        drop_small_pools: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}.")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (the share of monolingual batches), got {alpha}.")
        if language_weighting not in LANGUAGE_WEIGHTINGS:
            raise ValueError(
                f"Unknown language_weighting {language_weighting!r}; choose one of {list(LANGUAGE_WEIGHTINGS)}."
            )
        if language_weighting == "temperature" and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.dataset = dataset
        self.strategy = strategy
        self.alpha = float(alpha)
        self.language_weighting = language_weighting
        self.temperature = float(temperature)
        self.one_pair_per_batch = one_pair_per_batch
        self.drop_small_pools = drop_small_pools
        self.num_processes = int(num_processes) if num_processes is not None else detect_num_processes()
        if self.num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
        self.group_size = self.num_processes * batch_size

        self.metadata = _coerce_metadata(dataset, metadata)
        if dataset is not None and hasattr(dataset, "__len__") and len(dataset) != len(self.metadata):
            raise ValueError(
                f"metadata has {len(self.metadata)} rows but the dataset has {len(dataset)}; pass metadata "
                "read from this very dataset (before any select/filter)."
            )
        self._build_pools()

    # -- construction ---------------------------------------------------------------------------
    def _build_pools(self) -> None:
        meta = self.metadata
        is_mono = meta.query_language == meta.passage_language
        uses_mono = self.strategy == "mono" or (self.strategy in ("hybrid", "mixed") and self.alpha > 0)
        uses_cross = self.strategy == "cross" or (self.strategy in ("hybrid", "mixed") and self.alpha < 1)
        self._check_languages(is_mono, uses_mono, uses_cross)

        if self.strategy in ("hybrid", "mixed"):
            eligible = np.ones(len(meta), dtype=bool)
        else:
            eligible = is_mono if self.strategy == "mono" else ~is_mono
        if eligible.sum() < self.group_size:
            raise ValueError(
                f"batch_size {self.batch_size} x {self.num_processes} process(es) = {self.group_size} rows per "
                f"step, but the dataset has only {int(eligible.sum())} rows this strategy can use; lower batch_size "
                "or add data."
            )
        self.num_groups = int(eligible.sum()) // self.group_size

        # Per source: its weight (eligible rows) and its pools (mono / cross), or its two parts (mixed).
        self._sources = []
        for source in range(len(meta.sources)):
            in_source = meta.source == source
            source_eligible = int((eligible & in_source).sum())
            if source_eligible == 0:
                continue
            entry = {"source": source, "weight": source_eligible, "mono": [], "cross": []}
            name = f" (source {meta.sources[source]!r})" if len(meta.sources) > 1 else ""
            if self.strategy == "mixed":
                entry["mixed"] = self._mixed_parts(source, in_source & is_mono, in_source & ~is_mono, name)
                if entry["mixed"] is None:  # skipped (drop_small_pools)
                    continue
            else:
                if uses_mono:
                    entry["mono"] = self._pools_by(
                        MONO, source, in_source & is_mono, by_pair=False, name=name
                    )
                if uses_cross:
                    entry["cross"] = self._pools_by(
                        CROSS, source, in_source & ~is_mono, by_pair=self.one_pair_per_batch, name=name
                    )
                missing = [
                    k for k, used in (("mono", uses_mono), ("cross", uses_cross)) if used and not entry[k]
                ]
                if self.strategy == "hybrid" and len(missing) == 1:
                    # e.g. an English-only source: all its step groups take the side it has.
                    other = "cross" if missing[0] == "mono" else "mono"
                    logger.info(
                        f"Source {meta.sources[source]!r} has no {missing[0]} rows: {other} batches only."
                    )
                elif missing:
                    raise ValueError(
                        f"Source {meta.sources[source]!r} has no usable {' or '.join(missing)} rows for strategy "
                        f"{self.strategy!r}; give it such rows, filter it out, or change the strategy."
                    )
            self._sources.append(entry)
        if not self._sources:
            raise ValueError("No source can fill a step: every one was skipped (drop_small_pools=True).")

    def _check_languages(self, is_mono: np.ndarray, uses_mono: bool, uses_cross: bool) -> None:
        meta = self.metadata
        if uses_cross:
            languages = np.union1d(meta.query_language, meta.passage_language)
            if len(languages) < 2:
                raise ValueError(
                    f"strategy={self.strategy!r} needs cross-lingual batches, which need at least 2 languages; "
                    f"found only {[meta.languages[i] for i in languages]}. Add languages or use strategy='mono'"
                    + (" or alpha=1." if self.strategy in ("hybrid", "mixed") else ".")
                )
            if is_mono.all():
                raise ValueError(
                    f"strategy={self.strategy!r} needs cross-lingual rows (query_language != passage_language) "
                    "but there are none; build pairs with cross_partners >= 1 "
                    "(st_hybrid.data.build_training_pairs) or use strategy='mono'."
                )
        if uses_mono and not is_mono.any():
            raise ValueError(
                f"strategy={self.strategy!r} needs monolingual rows (query_language == passage_language) but "
                "there are none; build pairs with include_mono=True or use strategy='cross'"
                + (" or alpha=0." if self.strategy in ("hybrid", "mixed") else ".")
            )

    def _pools_by(self, kind: int, source: int, mask: np.ndarray, by_pair: bool, name: str) -> list[_Pool]:
        meta = self.metadata
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return []
        if kind == CROSS and not by_pair:
            keys = np.zeros(rows.size, dtype=np.int64)
        else:
            keys = meta.query_language[rows] * len(meta.languages) + meta.passage_language[rows]
        order = np.argsort(keys, kind="stable")
        rows, keys = rows[order], keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        pools, too_small = [], []
        for start, end in zip(starts, np.r_[starts[1:], rows.size]):
            q, p = divmod(int(keys[start]), len(meta.languages))
            if kind == MONO:
                label = f"mono {meta.languages[q]!r}{name}"
            elif by_pair:
                label = f"cross {meta.languages[q]!r}->{meta.languages[p]!r}{name}"
            else:
                label = f"cross (all pairs){name}"
            pool = _Pool.build(kind, source, label, rows[start:end], meta.group)
            if pool.capacity(self.group_size) == 0:
                too_small.append(f"{label}: {end - start} rows, {pool.num_groups} positive groups")
            else:
                pools.append(pool)
        if too_small:
            message = (
                f"{len(too_small)} pool(s) have fewer positive groups (rows sharing no parallel id or text) "
                "than one step needs "
                f"(batch_size {self.batch_size} x {self.num_processes} process(es) = {self.group_size}): "
                f"{'; '.join(too_small[:5])}{' ...' if len(too_small) > 5 else ''}."
            )
            if not self.drop_small_pools:
                raise ValueError(
                    message + " Lower batch_size, remove those languages from the data, or pass "
                    "drop_small_pools=True to skip them. (Hard negatives taken from the training passages "
                    "chain rows into few groups: mine them with st_hybrid.mining.mine_hard_negatives(..., "
                    "corpus=lareqa_corpus(path), avoid_training_positives=True).)"
                )
            logger.warning(message + " Skipping them (drop_small_pools=True).")
        return pools

    def _mixed_parts(
        self, source: int, mono_mask: np.ndarray, cross_mask: np.ndarray, name: str
    ) -> dict | None:
        """Rows of a mixed source, the rows per step each side supplies and its positive groups by stratum.

        Returns None when the source cannot fill a step and ``drop_small_pools`` skips it.
        """
        group = self.metadata.group
        n_mono = round(self.alpha * self.batch_size)
        parts = {
            "mono_rows": np.flatnonzero(mono_mask),
            "cross_rows": np.flatnonzero(cross_mask),
            "label": name,
        }
        parts["mono_size"] = n_mono * self.num_processes
        parts["cross_size"] = (self.batch_size - n_mono) * self.num_processes
        source_name = self.metadata.sources[source]
        for side, rows, size in (
            ("mono", parts["mono_rows"], n_mono),
            ("cross", parts["cross_rows"], self.batch_size - n_mono),
        ):
            if size and rows.size == 0:
                relation = "==" if side == "mono" else "!="
                return self._mixed_too_small(
                    f"Source {source_name!r} has no {_SIDE_NAMES[side]} rows (query_language {relation} "
                    f"passage_language), but strategy='mixed' puts {size} of them in every batch",
                    "filter the source out, or use strategy='hybrid' (one side per batch)",
                )
        has_mono = np.zeros(self.metadata.num_groups, dtype=bool)
        has_cross = np.zeros(self.metadata.num_groups, dtype=bool)
        has_mono[group[parts["mono_rows"]]] = True
        has_cross[group[parts["cross_rows"]]] = True
        # Strata in the order cross-only, both, mono-only: the groups with cross rows and those with mono
        # rows are each a contiguous run, so dealing them alternately to the halves gives each half
        # floor or ceil of half of either kind, in every epoch.
        parts["strata"] = [
            np.flatnonzero(has_cross & ~has_mono),
            np.flatnonzero(has_cross & has_mono),
            np.flatnonzero(has_mono & ~has_cross),
        ]
        n_cross_only, n_both, n_mono_only = (len(stratum) for stratum in parts["strata"])
        split = parts["mono_size"] > 0 and parts["cross_size"] > 0
        worst = {
            "mono": (n_both + n_mono_only) // 2 if split else n_both + n_mono_only,
            "cross": (n_cross_only + n_both) // 2 if split else n_cross_only + n_both,
        }
        short = [
            f"{side} rows from at most {worst[side]} positive groups, need {parts[side + '_size']}"
            for side in ("mono", "cross")
            if parts[side + "_size"] and worst[side] < parts[side + "_size"]
        ]
        if short:
            halves = " in the half of the source's positive groups it gets each epoch" if split else ""
            return self._mixed_too_small(
                f"strategy='mixed' cannot fill a step of source {source_name!r} with distinct positive groups "
                f"({'; '.join(short)}{halves})",
                "lower batch_size, change alpha, or add data",
            )
        return parts

    def _mixed_too_small(self, message: str, fix: str) -> None:
        if not self.drop_small_pools:
            raise ValueError(f"{message}; {fix}, or pass drop_small_pools=True to skip the source.")
        logger.warning(f"{message}; skipping the source (drop_small_pools=True).")
        return None

    def _mixed_phases(self, parts: dict, rng: np.random.Generator) -> list[tuple[_Pool | None, _Pool | None]]:
        """(mono pool, cross pool) per phase, never sharing a positive group within a phase.

        The source's positive groups are halved at random (stratified by whether a group has mono rows,
        cross rows or both, so each half can fill its side in every epoch, as checked at construction):
        one phase takes mono rows from half A and cross rows from half B, the other phase the reverse, so
        a step never repeats a group and every row stays in use.
        """
        group = self.metadata.group
        mono_rows, cross_rows = parts["mono_rows"], parts["cross_rows"]
        mono_size, cross_size = parts["mono_size"], parts["cross_size"]
        if mono_size and cross_size:
            order = np.concatenate([rng.permutation(stratum) for stratum in parts["strata"]])
            in_a = np.zeros(self.metadata.num_groups, dtype=bool)
            in_a[order[int(rng.integers(2)) :: 2]] = True
            sides = [
                (mono_rows[in_a[group[mono_rows]] == a], cross_rows[in_a[group[cross_rows]] != a])
                for a in (True, False)
            ]
        else:  # alpha rounds to all-mono or all-cross rows: no split needed
            sides = [(mono_rows, cross_rows)]
        phases = []
        for side in sides:
            pools = []
            for kind, rows, size in ((MONO, side[0], mono_size), (CROSS, side[1], cross_size)):
                if size == 0:
                    pools.append(None)
                    continue
                pool = _Pool.build(kind, 0, f"mixed {_KIND_NAMES[kind]} part{parts['label']}", rows, group)
                if pool.capacity(size) == 0:  # excluded by the stratified split and the check in _mixed_parts
                    raise RuntimeError(
                        f"{pool.label}: {pool.num_groups} positive groups cannot fill {size} rows."
                    )
                pools.append(pool)
            phases.append((pools[0], pools[1]))
        return phases

    def _seed_int(self) -> int:
        return int(self.seed or 0) % (2**63)

    def _weights(self, pools: Sequence[_Pool]) -> np.ndarray:
        sizes = np.array([len(pool.rows) for pool in pools], dtype=np.float64)
        if self.language_weighting == "uniform":
            return np.ones_like(sizes)
        if self.language_weighting == "size":
            return sizes
        return sizes ** (1.0 / self.temperature)

    # -- one epoch ------------------------------------------------------------------------------
    def plan_epoch(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's batches and their kinds, without iterating.

        Args:
            epoch: The epoch to plan; the current one (:meth:`set_epoch`) when None.

        Returns:
            ``(batches, kinds)``: an int64 array ``(len(self), batch_size)`` of row indices and an int array
            ``(len(self),)`` with 0 = mono, 1 = cross, 2 = mixed per batch.
        """
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self._seed_int(), int(epoch)])
        per_source = _apportion([entry["weight"] for entry in self._sources], self.num_groups, rng)
        groups, kinds = [], []
        for entry, count in zip(self._sources, per_source):
            if count == 0:
                continue
            if self.strategy == "mixed":
                groups.append(self._mixed_groups(entry["mixed"], int(count), rng))
                kinds.append(np.full(count, MIXED))
                continue
            if self.strategy == "hybrid" and entry["mono"] and entry["cross"]:
                num_mono, num_cross = _apportion([self.alpha, 1.0 - self.alpha], int(count), rng)
            elif self.strategy == "hybrid":  # a source with one side only
                num_mono, num_cross = (count, 0) if entry["mono"] else (0, count)
            elif self.strategy == "mono":
                num_mono, num_cross = count, 0
            else:
                num_mono, num_cross = 0, count
            for kind, pools, num in ((MONO, entry["mono"], num_mono), (CROSS, entry["cross"], num_cross)):
                if num == 0:
                    continue
                weights = self._weights(pools) if (kind == MONO or self.one_pair_per_batch) else None
                counts = _apportion(weights, int(num), rng) if weights is not None else [num]
                for pool, pool_count in zip(pools, counts):
                    if pool_count:
                        groups.append(pool.deal(int(pool_count), self.group_size, rng))
                        kinds.append(np.full(pool_count, kind))
        groups, kinds = np.concatenate(groups), np.concatenate(kinds)
        order = rng.permutation(len(groups))
        batches = groups[order].reshape(len(groups) * self.num_processes, self.batch_size)
        return batches, np.repeat(kinds[order], self.num_processes)

    def _mixed_groups(self, parts: dict, count: int, rng: np.random.Generator) -> np.ndarray:
        phases = self._mixed_phases(parts, rng)
        w, groups = self.num_processes, []
        for (mono_pool, cross_pool), phase_count in zip(phases, _apportion(np.ones(len(phases)), count, rng)):
            if phase_count == 0:
                continue
            pieces = [
                pool.deal(int(phase_count), size, rng).reshape(phase_count, w, size // w)
                for pool, size in ((mono_pool, parts["mono_size"]), (cross_pool, parts["cross_size"]))
                if pool is not None
            ]
            # Each of the W batches of a group gets the same number of mono and cross rows.
            groups.append(np.concatenate(pieces, axis=2).reshape(phase_count, self.group_size))
        return np.concatenate(groups)

    def __iter__(self) -> Iterator[list[int]]:
        batches, _ = self.plan_epoch()
        yield from batches.tolist()

    def __len__(self) -> int:
        return self.num_groups * self.num_processes

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strategy={self.strategy!r}, alpha={self.alpha}, batch_size={self.batch_size}, "
            f"num_processes={self.num_processes}, language_weighting={self.language_weighting!r}, "
            f"rows={len(self.metadata)}, batches={len(self)})"
        )
