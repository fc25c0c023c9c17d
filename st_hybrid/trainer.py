"""HybridTrainer and a helper for the stock SentenceTransformerTrainer.

Both keep the metadata columns of a training-pairs dataset (``query_language``, ``passage_language``,
``parallel_id``, ``source``; see :data:`st_hybrid.data.METADATA_COLUMNS`) away from the data collator
(sentence-transformers tokenizes every column but the label, so a metadata column would become an input,
e.g. a "hard negative" for ``MultipleNegativesRankingLoss``), from the loss and from the model card's
widget examples, and hand them to :class:`~st_hybrid.sampler.HybridBatchSampler` instead.

1. :class:`HybridTrainer`, a thin ``SentenceTransformerTrainer`` subclass::

       trainer = HybridTrainer(model=model, args=args, train_dataset=pairs, loss=loss,
                               batch_sampler=partial(HybridBatchSampler, strategy="hybrid", alpha=0.5))

2. The stock trainer, through :func:`hybrid_batch_sampler`::

       train_dataset, batch_sampler = hybrid_batch_sampler(pairs, strategy="hybrid", alpha=0.5)
       args = SentenceTransformerTrainingArguments(output_dir="out", batch_sampler=batch_sampler)
       trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)

Datasets are matched to their metadata by their ``datasets`` fingerprint (and length); a dataset
without metadata (e.g. a plain eval set) gets sentence-transformers' default batch sampler. The train
dataset never falls back: without complete metadata (HybridTrainer), or not the very dataset
:func:`hybrid_batch_sampler` returned (the stock trainer), it raises rather than silently train on
random batches. Passing the raw pairs to the stock trainer with ``batch_sampler=HybridBatchSampler``
raises too (:class:`~st_hybrid.sampler.HybridBatchSampler` refuses a dataset that still has metadata
columns, which the collator would tokenize). Use one
``Dataset`` with a ``source`` column rather than a ``DatasetDict`` for several sources: the
multi-dataset sampler of sentence-transformers interleaves batches and would split step groups.

Usage:
    >>> from datasets import Dataset
    >>> from st_hybrid.trainer import split_metadata
    >>> pairs = Dataset.from_dict({"query": ["q1", "q2"], "passage": ["p1", "p2"],
    ...     "query_language": ["en", "de"], "passage_language": ["de", "de"], "parallel_id": ["1", "1"]})
    >>> texts, metadata = split_metadata(pairs)
    >>> texts.column_names, metadata.languages
    (['query', 'passage'], ['en', 'de'])
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.base.sampler import DefaultBatchSampler
from torch.utils.data import RandomSampler

from st_hybrid.data import METADATA_COLUMNS
from st_hybrid.sampler import REQUIRED_METADATA_COLUMNS, HybridBatchSampler, PairMetadata

__all__ = ["HybridSamplerFactory", "HybridTrainer", "hybrid_batch_sampler", "split_metadata"]

logger = logging.getLogger(__name__)


def split_metadata(dataset: Dataset, strict: bool = False) -> tuple[Dataset, PairMetadata | None]:
    """Split a pairs dataset into its text columns and its metadata.

    Args:
        dataset: A ``datasets.Dataset``, possibly with the columns of :data:`st_hybrid.data.METADATA_COLUMNS`.
        strict: Raise when the metadata is incomplete or invalid (a train set) instead of warning.

    Returns:
        ``(dataset without the metadata columns, PairMetadata)``, or ``(dataset, None)`` when it has no
        metadata column. Metadata columns are removed even when the required ones are incomplete (they
        would otherwise reach the collator); the metadata is then None and a warning is logged.

    Raises:
        ValueError: With ``strict=True``, metadata that is missing a required column or holds bad values.
    """
    present = [name for name in METADATA_COLUMNS if name in dataset.column_names]
    if not present:
        return dataset, None
    try:
        metadata = PairMetadata.from_dataset(dataset)
    except ValueError as error:
        if strict:
            raise
        logger.warning(f"Removing metadata columns {present} without hybrid batching: {error}")
        metadata = None
    return dataset.remove_columns(present), metadata


def _find_hybrid_sampler(loader: Any) -> HybridBatchSampler | None:
    """The HybridBatchSampler under a (prepared, possibly skipping) dataloader's batch-sampler wrappers."""
    sampler = getattr(loader, "batch_sampler", None)
    for _ in range(8):  # DataLoaderShard -> SkipBatchSampler -> BatchSamplerShard -> HybridBatchSampler
        if sampler is None or isinstance(sampler, HybridBatchSampler):
            return sampler
        sampler = getattr(sampler, "batch_sampler", None)
    return None


def lower_is_better(metric: str | None) -> bool:
    """Whether a metric name is a rank distance (lower is better), e.g. ``"eval_xquad-r_rank_distance"``."""
    return metric is not None and "rank_distance" in metric


def _requested_dataloader_kind() -> str | None:
    """``"train"`` / ``"eval"`` / ``"test"`` when called from sentence-transformers' ``_build_dataloader``.

    A sampler callable is given only the dataset; the kind of dataloader the trainer is building is a
    local of the caller (sentence-transformers >= 5). None when not called from there.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == "_build_dataloader" and "dataset_kind" in frame.f_locals:
                return frame.f_locals["dataset_kind"]
            frame = frame.f_back
        return None
    finally:
        del frame


def _uses_hybrid(batch_sampler: Any) -> bool:
    """Whether ``batch_sampler`` is HybridBatchSampler, a subclass, or a partial of one."""
    while isinstance(batch_sampler, functools.partial):
        batch_sampler = batch_sampler.func
    return inspect.isclass(batch_sampler) and issubclass(batch_sampler, HybridBatchSampler)


class HybridTrainer(SentenceTransformerTrainer):
    """A ``SentenceTransformerTrainer`` that builds hybrid batches from the pairs' language metadata.

    It removes the metadata columns from the train and eval datasets (so they never reach the collator,
    the loss or the model card), keeps them per dataset, and builds ``batch_sampler`` with
    ``metadata=...`` for each dataset that had them. Datasets without metadata use the sampler of
    ``args.batch_sampler`` (sentence-transformers' default unless set). Everything else is the stock
    trainer: losses such as ``MultipleNegativesRankingLoss`` / ``CachedMultipleNegativesRankingLoss``
    run unchanged, with ``gather_across_devices=True`` too (a step group never repeats a parallel id).

    It also closes three gaps of the stock trainer for this data:

    * A train set without complete, valid metadata raises (instead of training on random batches).
    * The hybrid sampler's epoch is set at the start of every epoch by the trainer itself. A run resumed
      mid-epoch with several processes otherwise replays epoch 0's order: after ``skip_first_batches``
      the sampler sits under ``SkipBatchSampler`` and ``BatchSamplerShard``, which neither accelerate's
      nor transformers' ``set_epoch`` reaches.
    * ``args.metric_for_best_model`` naming a rank distance (e.g. ``"eval_xquad-r_rank_distance"``)
      sets ``args.greater_is_better = False``: transformers derives "greater is better" from the name
      (everything but ``*loss``), so ``load_best_model_at_end`` would keep the worst checkpoint.

    Args:
        *args: Positional arguments of ``SentenceTransformerTrainer``.
        batch_sampler: :class:`~st_hybrid.sampler.HybridBatchSampler` (default), a subclass, or a
            callable such as ``functools.partial(HybridBatchSampler, strategy="mono")``; it is called like
            sentence-transformers calls a batch sampler, plus ``metadata=``. When None and
            ``args.batch_sampler`` is a HybridBatchSampler (partial), that one is used.
        **kwargs: Keyword arguments of ``SentenceTransformerTrainer`` (``model``, ``args``,
            ``train_dataset``, ``eval_dataset``, ``loss``, ``evaluator``, ...).

    Usage:
        >>> from functools import partial
        >>> from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
        >>> from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        >>> from st_hybrid.data import build_training_pairs, load_lareqa
        >>> from st_hybrid.sampler import HybridBatchSampler
        >>> from st_hybrid.trainer import HybridTrainer
        >>> model = SentenceTransformer("intfloat/multilingual-e5-small")  # doctest: +SKIP
        >>> pairs = build_training_pairs(load_lareqa("../shared/data/mlqa-r"))  # doctest: +SKIP
        >>> trainer = HybridTrainer(  # doctest: +SKIP
        ...     model=model,
        ...     args=SentenceTransformerTrainingArguments(output_dir="out", per_device_train_batch_size=32),
        ...     train_dataset=pairs,
        ...     loss=MultipleNegativesRankingLoss(model),
        ...     batch_sampler=partial(HybridBatchSampler, strategy="hybrid", alpha=0.5),
        ... )
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self, *args, batch_sampler: Callable[..., DefaultBatchSampler] | None = None, **kwargs
    ) -> None:
        if isinstance(batch_sampler, DefaultBatchSampler):
            raise TypeError(
                "HybridTrainer(batch_sampler=...) takes the class or a functools.partial of it, not an "
                "instance: the trainer builds one per dataset with its batch size and seed."
            )
        if batch_sampler is not None and not callable(batch_sampler):
            raise TypeError(f"batch_sampler must be a class or callable, not {type(batch_sampler).__name__}.")
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if batch_sampler is None:
            configured = getattr(training_args, "batch_sampler", None)
            batch_sampler = configured if _uses_hybrid(configured) else HybridBatchSampler
        self.hybrid_batch_sampler = batch_sampler
        # Metadata per dataset fingerprint; must exist before the parent calls preprocess_dataset.
        self.pair_metadata: dict[str, PairMetadata] = {}
        super().__init__(*args, **kwargs)
        if not hasattr(SentenceTransformerTrainer, "_run_epoch"):  # the hook below (transformers >= 5.2x)
            logger.warning(
                "This transformers version has no Trainer._run_epoch: HybridTrainer cannot set the sampler's "
                "epoch itself, so a multi-process run resumed mid-epoch may replay epoch 0's batch order."
            )
        if lower_is_better(self.args.metric_for_best_model) and self.args.greater_is_better is not False:
            logger.info(
                f"metric_for_best_model={self.args.metric_for_best_model!r} is a rank distance (lower is "
                "better): setting greater_is_better=False."
            )
            self.args.greater_is_better = False

    def preprocess_dataset(
        self, dataset: DatasetDict | Dataset | None = None, dataset_name: str | None = None
    ) -> DatasetDict | Dataset | None:
        """Remove and keep the metadata columns, then run sentence-transformers' preprocessing.

        Raises:
            ValueError: The train dataset (``dataset_name="train"``) lacks a metadata column or holds
                missing / invalid metadata values.
        """
        is_train = dataset_name == "train"
        return super().preprocess_dataset(self._strip_metadata(dataset, is_train), dataset_name=dataset_name)

    def _strip_metadata(self, dataset, is_train: bool = False):
        if isinstance(dataset, DatasetDict):
            return DatasetDict(
                {name: self._strip_metadata(split, is_train) for name, split in dataset.items()}
            )
        if not isinstance(dataset, Dataset):
            return dataset  # None, IterableDataset: nothing to strip without reading it
        try:
            if is_train and not any(name in dataset.column_names for name in METADATA_COLUMNS):
                raise ValueError(f"it has none of the metadata columns {list(REQUIRED_METADATA_COLUMNS)}.")
            stripped, metadata = split_metadata(dataset, strict=is_train)
        except ValueError as error:
            raise ValueError(
                f"HybridTrainer cannot build hybrid batches for the train dataset: {error} Without them the "
                "training would silently use random batches. Build the pairs with "
                "st_hybrid.data.build_training_pairs, or use SentenceTransformerTrainer for random batches."
            ) from error
        if metadata is not None:
            self.pair_metadata[stripped._fingerprint] = metadata
        return stripped

    def _run_epoch(self, *args, **kwargs):
        """Set the hybrid sampler's epoch, then run transformers' epoch loop.

        transformers calls ``set_epoch`` on the dataloader and on ``dataloader.batch_sampler.batch_sampler``;
        when resuming mid-epoch it first wraps the loader with accelerate's ``skip_first_batches``, and with
        several processes the sampler then sits one level deeper (``SkipBatchSampler`` ->
        ``BatchSamplerShard`` -> sampler) where neither call reaches it: the resumed epoch would replay
        epoch 0's order. The epoch is set here on the sampler itself, before the loop iterates.
        """
        # transformers' signature: _run_epoch(model, epoch, train_dataloader, ...), called with keywords.
        epoch = kwargs["epoch"] if "epoch" in kwargs else args[1]
        loader = kwargs["train_dataloader"] if "train_dataloader" in kwargs else args[2]
        sampler = _find_hybrid_sampler(loader)
        if sampler is not None:
            sampler.set_epoch(epoch)
        return super()._run_epoch(*args, **kwargs)

    def metadata_for(self, dataset: Any) -> PairMetadata | None:
        """The metadata kept for ``dataset`` (matched by fingerprint and length), or None."""
        metadata = self.pair_metadata.get(getattr(dataset, "_fingerprint", None))
        if metadata is None or len(metadata) != len(dataset):
            return None
        return metadata

    def get_batch_sampler(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ):
        """A hybrid batch sampler for a dataset that had metadata; the parent's choice otherwise.

        An eval dataset whose pools cannot fill a step (e.g. a small dev set) falls back to the parent's
        sampler with a warning; the train dataset raises the sampler's error.
        """
        kwargs = {
            "batch_size": batch_size,
            "drop_last": drop_last,
            "valid_label_columns": valid_label_columns,
            "generator": generator,
            "seed": seed,
        }
        metadata = self.metadata_for(dataset)
        if metadata is None:
            if self._is_train_dataset(dataset):
                raise ValueError(
                    "HybridTrainer has no metadata for this train dataset (it was replaced or changed after the "
                    "trainer was built); pass the training pairs with their metadata columns as train_dataset."
                )
            return self._fallback_batch_sampler(dataset, **kwargs)
        try:
            return self.hybrid_batch_sampler(dataset, metadata=metadata, **kwargs)
        except ValueError as error:
            if self._is_train_dataset(dataset):
                raise
            # An eval set too small for hybrid steps still gets its loss, with the default batches.
            logger.warning(f"Evaluating with the default batch sampler: {error}")
            return self._fallback_batch_sampler(dataset, **kwargs)

    def _fallback_batch_sampler(self, dataset, **kwargs):
        """The parent's sampler, or ST's default one when ``args.batch_sampler`` is itself hybrid."""
        if _uses_hybrid(self.args.batch_sampler):  # it would need the metadata this dataset lacks
            return DefaultBatchSampler(RandomSampler(dataset, generator=kwargs["generator"]), **kwargs)
        return super().get_batch_sampler(dataset, **kwargs)

    def _is_train_dataset(self, dataset: Any) -> bool:
        train = self.train_dataset
        candidates = train.values() if isinstance(train, DatasetDict) else [train]
        return any(
            getattr(c, "_fingerprint", None) == getattr(dataset, "_fingerprint", 0) for c in candidates
        )


class HybridSamplerFactory:
    """A batch-sampler callable for ``SentenceTransformerTrainingArguments(batch_sampler=...)``.

    Built by :func:`hybrid_batch_sampler`. Called by the stock trainer with the train dataset it builds a
    :class:`~st_hybrid.sampler.HybridBatchSampler` with the kept metadata. The metadata is matched to the
    dataset by its ``datasets`` fingerprint (and length): any ``shuffle`` / ``select`` / ``map`` after
    :func:`hybrid_batch_sampler`, or passing the original pairs, gives another fingerprint, and the kept
    metadata no longer lines up with the rows.

    Called for the **train** dataset without that match, it raises: falling back to random batches would
    silently train the wrong thing (and the original pairs would also feed their metadata columns to the
    model). A dataset counts as the train dataset when the trainer asks for the train dataloader
    (sentence-transformers' ``_build_dataloader(..., dataset_kind="train")`` on the call stack), when it
    still has metadata columns, or when it has the train set's length. Any other dataset (an eval set)
    gets sentence-transformers' default sampler (a ``DefaultBatchSampler`` over a ``RandomSampler``).
    The metadata is not pickled (transformers saves the training arguments in every checkpoint); an
    unpickled factory serves eval sets only.

    Args:
        metadata: The metadata of the train dataset.
        fingerprint: The ``datasets`` fingerprint of the train dataset without its metadata columns.
        **sampler_kwargs: Keyword options of HybridBatchSampler (``strategy``, ``alpha``, ...).
    """

    def __init__(self, metadata: PairMetadata, fingerprint: str, **sampler_kwargs: Any) -> None:
        self.metadata = metadata
        self.fingerprint = fingerprint
        self.num_rows = len(metadata) if metadata is not None else None
        self.sampler_kwargs = sampler_kwargs

    def __call__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> DefaultBatchSampler:
        kwargs = {
            "batch_size": batch_size,
            "drop_last": drop_last,
            "valid_label_columns": valid_label_columns,
            "generator": generator,
            "seed": seed,
        }
        fingerprint = getattr(dataset, "_fingerprint", None)
        if self.metadata is not None and fingerprint == self.fingerprint and len(dataset) == self.num_rows:
            return HybridBatchSampler(dataset, metadata=self.metadata, **kwargs, **self.sampler_kwargs)
        leaking = [name for name in METADATA_COLUMNS if name in getattr(dataset, "column_names", ())]
        if leaking or _requested_dataloader_kind() == "train" or len(dataset) == self.num_rows:
            raise ValueError(self._mismatch_message(fingerprint, leaking))
        return DefaultBatchSampler(RandomSampler(dataset, generator=generator), **kwargs)

    def _mismatch_message(self, fingerprint: str | None, leaking: list[str]) -> str:
        if self.metadata is None:
            why = (
                "this factory carries no metadata (it was restored from a checkpoint's training_args.bin, "
                "which does not store it)"
            )
        elif leaking:
            why = (
                f"the dataset still has the metadata columns {leaking} (the original pairs?): the trainer "
                "would feed them to the model as extra text inputs"
            )
        else:
            why = (
                f"its fingerprint {fingerprint!r} is not the one of the dataset hybrid_batch_sampler() returned "
                f"({self.fingerprint!r}): a shuffle, select or map after it breaks the row alignment of the kept "
                "metadata"
            )
        return (
            f"HybridSamplerFactory was asked for the train dataset's batch sampler, but {why}. Falling back "
            "to random batches would silently train without hybrid batching. Pass as train_dataset the very "
            "dataset returned by `train_dataset, batch_sampler = hybrid_batch_sampler(pairs, ...)` (shuffle or "
            "select the pairs before that call), or use HybridTrainer, which keeps the metadata through "
            "preprocessing."
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "metadata": None}

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.sampler_kwargs.items())
        return f"{type(self).__name__}({options})"


def hybrid_batch_sampler(pairs: Dataset, **sampler_kwargs: Any) -> tuple[Dataset, HybridSamplerFactory]:
    """Prepare a pairs dataset and a batch sampler for the stock ``SentenceTransformerTrainer``.

    Args:
        pairs: Training pairs with the metadata columns (see :func:`st_hybrid.data.build_training_pairs`).
        **sampler_kwargs: Keyword options of :class:`~st_hybrid.sampler.HybridBatchSampler`:
            ``strategy``, ``alpha``, ``language_weighting``, ``temperature``, ``one_pair_per_batch``,
            ``num_processes``, ``drop_small_pools``.

    Returns:
        ``(train_dataset, batch_sampler)``: the pairs without their metadata columns, to pass as
        ``train_dataset``, and the callable to pass as ``SentenceTransformerTrainingArguments(batch_sampler=...)``.
        Pass this very ``train_dataset``: after a ``shuffle``/``select``/``map`` the sampler raises for it
        (see :class:`HybridSamplerFactory`). With several processes, resuming mid-epoch needs
        :class:`HybridTrainer` (the stock trainer does not reach the sampler's ``set_epoch`` then).

    Raises:
        ValueError: If ``pairs`` lacks the metadata columns or holds bad metadata values.

    Usage:
        >>> from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        >>> from st_hybrid.trainer import hybrid_batch_sampler
        >>> train_dataset, batch_sampler = hybrid_batch_sampler(pairs, strategy="hybrid", alpha=0.5)  # doctest: +SKIP
        >>> args = SentenceTransformerTrainingArguments(output_dir="out", batch_sampler=batch_sampler)  # doctest: +SKIP
        >>> trainer = SentenceTransformerTrainer(  # doctest: +SKIP
        ...     model=model, args=args, train_dataset=train_dataset, loss=loss)
    """
    stripped, metadata = split_metadata(pairs, strict=True)
    if metadata is None:
        PairMetadata.from_dataset(pairs)  # raises the error that names the missing columns
    # Fail now, not when training starts, on bad options (a wrong strategy, alpha, too few languages).
    HybridBatchSampler(stripped, batch_size=1, drop_last=True, metadata=metadata, **sampler_kwargs)
    return stripped, HybridSamplerFactory(metadata, stripped._fingerprint, **sampler_kwargs)
