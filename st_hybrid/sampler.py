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
  step never share a parallel id, each epoch halves a source's parallel ids at random (A, B): half of
  its steps take mono rows from A and cross rows from B, the other half the reverse.

How an epoch is planned (all in numpy, once per epoch, then the batches are sliced off):

* **Step groups.** With ``W`` processes, accelerate gives rank ``r`` the batches ``r, r + W, ...``, so
  one optimizer step (one forward pass per rank) consumes ``W`` consecutive batches. The sampler plans
  a *step group* of ``W * batch_size`` rows as one global batch and cuts it into ``W`` batches: one
  type, one ``source``, one language (mono) or one pair (``one_pair_per_batch``), one composition
  (mixed), and no ``parallel_id`` twice in the whole group, so ``gather_across_devices=True`` sees no
  translation of a positive as a negative. With ``W == 1`` a group is a batch.
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
* **No repeated parallel id.** A pool's rows are dealt into groups like cards: rows sorted by parallel
  id (ids in a random order), cut into ``group_size`` rounds of ``k`` rows, each round shuffled across
  the ``k`` groups. A parallel id's rows sit in at most two adjacent rounds, and the few ids straddling
  two rounds get their columns swapped apart, so each group holds every id at most once. Per pass an id
  contributes at most ``k`` rows (the excess waits for the next pass), which is why a pool needs at
  least ``W * batch_size`` distinct parallel ids.
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
    >>> sampler = HybridBatchSampler(pairs, batch_size=4, drop_last=True, seed=0, alpha=0.5, num_processes=1)
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

from st_hybrid.data import METADATA_COLUMNS

__all__ = [
    "LANGUAGE_WEIGHTINGS",
    "REQUIRED_METADATA_COLUMNS",
    "STRATEGIES",
    "HybridBatchSampler",
    "PairMetadata",
    "detect_num_processes",
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
def _dictionary_encode(values) -> tuple[np.ndarray, list]:
    """(codes, categories) of a column: arrow dictionary encoding, O(rows) and no Python loop over rows."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        categories, codes = np.unique(values, return_inverse=True)
        return codes.astype(np.int64), categories.tolist()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    elif not isinstance(values, pa.Array):
        values = pa.array(values.tolist() if isinstance(values, np.ndarray) else list(values))
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    encoded = values.dictionary_encode()
    if encoded.null_count:
        raise ValueError("Metadata columns must not contain missing values (None).")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _dataset_column(dataset: Dataset, name: str):
    """A column of a datasets.Dataset as arrow, honouring an indices mapping (select/shuffle) cheaply."""
    column = dataset.data.column(name)
    if dataset._indices is None:
        return column
    indices = dataset._indices.column(0).to_numpy()
    return column.combine_chunks().take(pa.array(indices))


@dataclass(frozen=True)
class PairMetadata:
    """Language metadata of a training-pairs dataset, as integer codes per row.

    Attributes:
        query_language: Language code index of each row's query (into ``languages``).
        passage_language: Language code index of each row's passage (into ``languages``).
        parallel_id: Parallel-id code of each row: rows sharing it are translations of each other.
        source: Source (dataset name) index of each row (into ``sources``); all zeros without a column.
        languages: Language names, shared by queries and passages.
        sources: Source names (``[""]`` without a ``source`` column).

    Usage:
        >>> meta = PairMetadata.from_columns({"query_language": ["en", "de"], "passage_language": ["de", "de"],
        ...                                   "parallel_id": ["1", "1"]})
        >>> meta.languages, meta.query_language.tolist(), len(meta)
        (['en', 'de'], [0, 1], 2)
    """

    query_language: np.ndarray
    passage_language: np.ndarray
    parallel_id: np.ndarray
    source: np.ndarray
    languages: list
    sources: list

    def __len__(self) -> int:
        return len(self.parallel_id)

    @classmethod
    def from_columns(cls, columns: Mapping) -> PairMetadata:
        """Build from a mapping column name -> values (lists, numpy or arrow arrays)."""
        missing = [name for name in REQUIRED_METADATA_COLUMNS if name not in columns]
        if missing:
            raise ValueError(
                f"HybridBatchSampler needs the metadata columns {list(REQUIRED_METADATA_COLUMNS)} "
                f"(optional: 'source'); missing: {missing}. Build the pairs with "
                "st_hybrid.data.build_training_pairs, or add these columns to your dataset "
                "(or pass them as metadata=...)."
            )
        lengths = {name: len(columns[name]) for name in METADATA_COLUMNS if name in columns}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Metadata columns have different lengths: {lengths}.")
        # Queries and passages share one language vocabulary so that codes compare across the two.
        num_rows = lengths["parallel_id"]
        both = pa.concat_arrays(
            [_as_arrow(columns[name]).cast(pa.string()) for name in ("query_language", "passage_language")]
        )
        language_codes, languages = _dictionary_encode(both)
        parallel_id, _ = _dictionary_encode(_as_arrow(columns["parallel_id"]).cast(pa.string()))
        if "source" in columns:
            source, sources = _dictionary_encode(_as_arrow(columns["source"]).cast(pa.string()))
        else:
            source, sources = np.zeros(num_rows, dtype=np.int64), [""]
        return cls(
            query_language=language_codes[:num_rows],
            passage_language=language_codes[num_rows:],
            parallel_id=parallel_id,
            source=source,
            languages=languages,
            sources=sources,
        )

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> PairMetadata:
        """Read the metadata columns of a ``datasets.Dataset`` (column-wise, no row loop)."""
        names = [name for name in METADATA_COLUMNS if name in dataset.column_names]
        return cls.from_columns({name: _dataset_column(dataset, name) for name in names})


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
        if not isinstance(dataset, Dataset):
            raise ValueError(
                "HybridBatchSampler needs a datasets.Dataset with the metadata columns "
                f"{list(REQUIRED_METADATA_COLUMNS)}, or metadata=... passed separately."
            )
        return PairMetadata.from_dataset(dataset)
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
    local_pid: np.ndarray  # parallel id per row, re-coded 0..num_pids-1 within the pool
    sorted_counts: np.ndarray  # rows per parallel id, ascending
    count_cumsum: np.ndarray  # prefix sums of sorted_counts, with a leading 0

    @classmethod
    def build(cls, kind: int, source: int, label: str, rows: np.ndarray, parallel_id: np.ndarray) -> _Pool:
        uniques, local_pid, counts = np.unique(parallel_id[rows], return_inverse=True, return_counts=True)
        del uniques
        counts.sort()
        return cls(kind, source, label, rows, local_pid.astype(np.int64), counts, np.r_[0, np.cumsum(counts)])

    @property
    def num_pids(self) -> int:
        return len(self.sorted_counts)

    def rows_with_cap(self, cap: int) -> int:
        """How many rows are usable when each parallel id contributes at most ``cap`` of them."""
        below = np.searchsorted(self.sorted_counts, cap, side="left")
        return int(self.count_cumsum[below] + cap * (self.num_pids - below))

    def capacity(self, group_size: int) -> int:
        """Most step groups of ``group_size`` rows one pass can fill with distinct parallel ids per group."""
        high = len(self.rows) // group_size
        if high == 0 or self.num_pids < group_size:
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
        """``(num_groups, group_size)`` dataset rows, no parallel id twice in a group; reused by passes."""
        capacity = self.capacity(group_size)
        if capacity == 0:
            raise RuntimeError(f"Pool {self.label} cannot fill a group of {group_size} rows.")
        passes = []
        while num_groups > 0:
            k = min(capacity, num_groups)
            passes.append(self._deal_pass(k, group_size, rng))
            num_groups -= k
        return np.concatenate(passes) if len(passes) > 1 else passes[0]

    def _deal_pass(self, k: int, group_size: int, rng: np.random.Generator) -> np.ndarray:
        if self.sorted_counts[-1] == 1:  # every parallel id once (typical mono pool): any split works
            take = rng.permutation(len(self.rows))[: k * group_size]
            return self.rows[take].reshape(k, group_size)
        # Rows in runs per parallel id (ids in random order, rows in random order within an id).
        order = rng.permutation(len(self.rows))
        # uint16 keys make the stable argsort a radix sort (~10x faster) in the common case.
        key_dtype = np.uint16 if self.num_pids <= np.iinfo(np.uint16).max + 1 else np.int64
        priority = rng.permutation(self.num_pids).astype(key_dtype)
        order = order[np.argsort(priority[self.local_pid[order]], kind="stable")]
        pid = self.local_pid[order]
        run_start = np.r_[True, pid[1:] != pid[:-1]]
        occurrence = np.arange(len(order)) - np.flatnonzero(run_start)[np.cumsum(run_start) - 1]
        # The smallest cap that still fills the pass spreads the used rows evenly over the ids.
        cap, high = 1, k
        while cap < high:
            mid = (cap + high) // 2
            if self.rows_with_cap(mid) >= k * group_size:
                high = mid
            else:
                cap = mid + 1
        order = order[occurrence < cap][: k * group_size]
        rounds = order.reshape(group_size, k)
        round_pid = self.local_pid[rounds]
        columns = rng.permuted(np.broadcast_to(np.arange(k), (group_size, k)), axis=1)
        # An id whose run crosses from round r into round r+1 could meet itself in a column: swap apart.
        for r in np.flatnonzero(round_pid[:-1, -1] == round_pid[1:, 0]):
            _separate(columns, round_pid, int(r), rng)
        groups = np.empty((group_size, k), dtype=np.int64)
        np.put_along_axis(groups, columns, rounds, axis=1)
        # Shuffle within a group so that each of its W batches is a random part of it.
        return self.rows[rng.permuted(groups.T, axis=1)]


def _separate(columns: np.ndarray, round_pid: np.ndarray, r: int, rng: np.random.Generator) -> None:
    """Move the straddling id's round-(r+1) rows out of the columns it already holds in round r."""
    pid = round_pid[r, -1]
    taken = columns[r][round_pid[r] == pid]
    nxt = columns[r + 1]
    is_pid = round_pid[r + 1] == pid
    in_taken = np.isin(nxt, taken)
    clash = np.flatnonzero(is_pid & in_taken)
    if clash.size == 0:
        return
    # Enough partners always exist: with a rows in round r and b in r+1 (a + b <= k), free >= clashes.
    partners = rng.choice(np.flatnonzero(~is_pid & ~in_taken), size=clash.size, replace=False)
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
        dataset: The training pairs (a ``datasets.Dataset``). It needs the metadata columns
            ``query_language``, ``passage_language``, ``parallel_id`` (optional ``source``) unless
            ``metadata`` is given.
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
        metadata: The metadata columns given separately (a :class:`PairMetadata`, a mapping of columns or
            a Dataset), aligned with ``dataset``; used when the trainer strips them off the dataset.
        drop_small_pools: Skip (with a warning) languages / pairs with fewer than ``W * batch_size``
            distinct parallel ids instead of raising.

    Raises:
        ValueError: Unknown strategy or weighting, ``alpha`` outside [0, 1], missing metadata columns, too
            few languages or no cross rows for a cross-lingual strategy, a pool too small for one step, or
            a batch larger than the data. Each message names the fix.

    Usage:
        >>> from functools import partial
        >>> from sentence_transformers import SentenceTransformerTrainingArguments
        >>> from st_hybrid.sampler import HybridBatchSampler
        >>> args = SentenceTransformerTrainingArguments(  # doctest: +SKIP
        ...     output_dir="out", batch_sampler=partial(HybridBatchSampler, strategy="hybrid", alpha=0.5))
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
            pool = _Pool.build(kind, source, label, rows[start:end], meta.parallel_id)
            if pool.capacity(self.group_size) == 0:
                too_small.append(f"{label}: {end - start} rows, {pool.num_pids} distinct parallel ids")
            else:
                pools.append(pool)
        if too_small:
            message = (
                f"{len(too_small)} pool(s) have fewer distinct parallel ids than one step needs "
                f"(batch_size {self.batch_size} x {self.num_processes} process(es) = {self.group_size}): "
                f"{'; '.join(too_small[:5])}{' ...' if len(too_small) > 5 else ''}."
            )
            if not self.drop_small_pools:
                raise ValueError(
                    message + " Lower batch_size, remove those languages from the data, or pass "
                    "drop_small_pools=True to skip them."
                )
            logger.warning(message + " Skipping them (drop_small_pools=True).")
        return pools

    def _mixed_parts(self, source: int, mono_mask: np.ndarray, cross_mask: np.ndarray, name: str) -> dict:
        """Rows of a mixed source and the rows per step each side supplies."""
        n_mono = round(self.alpha * self.batch_size)
        parts = {"mono_rows": np.flatnonzero(mono_mask), "cross_rows": np.flatnonzero(cross_mask)}
        parts["mono_size"] = n_mono * self.num_processes
        parts["cross_size"] = (self.batch_size - n_mono) * self.num_processes
        parts["label"] = name
        parts["ids"] = np.union1d(
            self.metadata.parallel_id[parts["mono_rows"]], self.metadata.parallel_id[parts["cross_rows"]]
        )
        # Fail early (not mid-training) when the split of epoch 0 cannot fill a step.
        self._mixed_phases(parts, np.random.default_rng([self._seed_int(), 0]))
        return parts

    def _mixed_phases(self, parts: dict, rng: np.random.Generator) -> list[tuple[_Pool | None, _Pool | None]]:
        """(mono pool, cross pool) per phase, never sharing a parallel id within a phase.

        The source's ids are halved at random: one phase takes mono rows from half A and cross rows from
        half B, the other phase the reverse, so a step never repeats an id and every row stays in use.
        """
        pid = self.metadata.parallel_id
        mono_rows, cross_rows = parts["mono_rows"], parts["cross_rows"]
        mono_size, cross_size = parts["mono_size"], parts["cross_size"]
        if mono_size and cross_size:
            in_a = np.zeros(int(pid.max()) + 1, dtype=bool)
            in_a[rng.permutation(parts["ids"])[: len(parts["ids"]) // 2]] = True
            sides = [
                (mono_rows[in_a[pid[mono_rows]] == a], cross_rows[in_a[pid[cross_rows]] != a])
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
                pool = _Pool.build(kind, 0, f"mixed {_KIND_NAMES[kind]} part{parts['label']}", rows, pid)
                if pool.capacity(size) == 0:
                    raise ValueError(
                        f"strategy='mixed': the {_KIND_NAMES[kind]} rows{parts['label']} cannot fill {size} rows "
                        f"per step with distinct parallel ids ({len(rows)} rows, {pool.num_pids} ids in the half "
                        "of the ids this side gets); lower batch_size or add data."
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
