"""st-hybrid: hybrid monolingual / cross-lingual batch training for multilingual retrieval.

Usage:
    >>> from st_hybrid import HybridBatchSampler, HybridTrainer  # doctest: +SKIP
    >>> trainer = HybridTrainer(model=model, args=args, train_dataset=pairs, loss=loss,  # doctest: +SKIP
    ...                         batch_sampler=HybridBatchSampler)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> submodule. Imported on first use so that `import st_hybrid.data` (or the `evaluate`
# metric module) does not pull in torch and the trainer.
_EXPORTS = {
    "HybridBatchSampler": "sampler",
    "PairMetadata": "sampler",
    "positive_groups": "sampler",
    "HybridTrainer": "trainer",
    "hybrid_batch_sampler": "trainer",
    "split_metadata": "trainer",
    "LanguageAwareRetrievalEvaluator": "evaluation",
    "build_training_pairs": "data",
    "load_lareqa": "data",
    "load_lareqa_retrieval": "data",
    "load_parallel": "data",
    "load_tatoeba": "data",
    "split_parallel": "data",
    "split_tatoeba": "data",
    "tatoeba_retrieval": "data",
    "interpolate": "merge",
    "save_merged": "merge",
    "mine_hard_negatives": "mining",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .data import (
        build_training_pairs,
        load_lareqa,
        load_lareqa_retrieval,
        load_parallel,
        load_tatoeba,
        split_parallel,
        split_tatoeba,
        tatoeba_retrieval,
    )
    from .evaluation import LanguageAwareRetrievalEvaluator
    from .merge import interpolate, save_merged
    from .mining import mine_hard_negatives
    from .sampler import HybridBatchSampler, PairMetadata, positive_groups
    from .trainer import HybridTrainer, hybrid_batch_sampler, split_metadata


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'st_hybrid' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
