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
without metadata (e.g. a plain eval set) gets sentence-transformers' default batch sampler. Use one
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
from st_hybrid.sampler import HybridBatchSampler, PairMetadata

__all__ = ["HybridSamplerFactory", "HybridTrainer", "hybrid_batch_sampler", "split_metadata"]

logger = logging.getLogger(__name__)


def split_metadata(dataset: Dataset) -> tuple[Dataset, PairMetadata | None]:
    """Split a pairs dataset into its text columns and its metadata.

    Args:
        dataset: A ``datasets.Dataset``, possibly with the columns of :data:`st_hybrid.data.METADATA_COLUMNS`.

    Returns:
        ``(dataset without the metadata columns, PairMetadata)``, or ``(dataset, None)`` when it has no
        metadata column. Metadata columns are removed even when the required ones are incomplete (they
        would otherwise reach the collator); the metadata is then None and a warning is logged.
    """
    present = [name for name in METADATA_COLUMNS if name in dataset.column_names]
    if not present:
        return dataset, None
    try:
        metadata = PairMetadata.from_dataset(dataset)
    except ValueError as error:
        logger.warning(f"Removing metadata columns {present} without hybrid batching: {error}")
        metadata = None
    return dataset.remove_columns(present), metadata


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

    def preprocess_dataset(
        self, dataset: DatasetDict | Dataset | None = None, dataset_name: str | None = None
    ) -> DatasetDict | Dataset | None:
        """Remove and keep the metadata columns, then run sentence-transformers' preprocessing."""
        return super().preprocess_dataset(self._strip_metadata(dataset), dataset_name=dataset_name)

    def _strip_metadata(self, dataset):
        if isinstance(dataset, DatasetDict):
            return DatasetDict({name: self._strip_metadata(split) for name, split in dataset.items()})
        if not isinstance(dataset, Dataset):
            return dataset  # None, IterableDataset: nothing to strip without reading it
        stripped, metadata = split_metadata(dataset)
        if metadata is not None:
            self.pair_metadata[stripped._fingerprint] = metadata
        return stripped

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
    :class:`~st_hybrid.sampler.HybridBatchSampler` with the kept metadata; with any other dataset (the
    eval set) it builds sentence-transformers' default sampler (a ``DefaultBatchSampler`` over a
    ``RandomSampler``). The metadata is not pickled (transformers saves the training arguments in every
    checkpoint); an unpickled factory falls back to the default sampler.

    Args:
        metadata: The metadata of the train dataset.
        fingerprint: The ``datasets`` fingerprint of the train dataset without its metadata columns.
        **sampler_kwargs: Keyword options of HybridBatchSampler (``strategy``, ``alpha``, ...).
    """

    def __init__(self, metadata: PairMetadata, fingerprint: str, **sampler_kwargs: Any) -> None:
        self.metadata = metadata
        self.fingerprint = fingerprint
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
        matches = (
            self.metadata is not None
            and getattr(dataset, "_fingerprint", None) == self.fingerprint
            and len(dataset) == len(self.metadata)
        )
        if not matches:
            return DefaultBatchSampler(RandomSampler(dataset, generator=generator), **kwargs)
        return HybridBatchSampler(dataset, metadata=self.metadata, **kwargs, **self.sampler_kwargs)

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
        Pass this very ``train_dataset`` (any ``select``/``map`` changes its fingerprint and loses the match).

    Raises:
        ValueError: If ``pairs`` lacks the metadata columns.

    Usage:
        >>> from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        >>> from st_hybrid.trainer import hybrid_batch_sampler
        >>> train_dataset, batch_sampler = hybrid_batch_sampler(pairs, strategy="hybrid", alpha=0.5)  # doctest: +SKIP
        >>> args = SentenceTransformerTrainingArguments(output_dir="out", batch_sampler=batch_sampler)  # doctest: +SKIP
        >>> trainer = SentenceTransformerTrainer(  # doctest: +SKIP
        ...     model=model, args=args, train_dataset=train_dataset, loss=loss)
    """
    stripped, metadata = split_metadata(pairs)
    if metadata is None:
        PairMetadata.from_dataset(pairs)  # raises the error that names the missing columns
    # Fail now, not when training starts, on bad options (a wrong strategy, alpha, too few languages).
    HybridBatchSampler(stripped, batch_size=1, drop_last=True, metadata=metadata, **sampler_kwargs)
    return stripped, HybridSamplerFactory(metadata, stripped._fingerprint, **sampler_kwargs)
