"""Dataset cards for st-hybrid training-pairs and parallel datasets, on huggingface_hub's ``DatasetCardData``.

:func:`dataset_statistics` counts rows per split, language, language pair and source; :func:`render_dataset_card`
writes the card (``model_cards/dataset_card.md``) with the metadata ``Dataset.push_to_hub`` wrote kept.

Usage:
    >>> from st_hybrid.dataset_card import DatasetCardInfo, dataset_statistics, render_dataset_card
    >>> text = render_dataset_card(DatasetCardInfo(pretty_name="XQuAD-R pairs", license="cc-by-sa-4.0"),
    ...                            dataset_statistics(pairs), repo_id="user/xquad-r-pairs")  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from huggingface_hub import DatasetCard, DatasetCardData

from st_hybrid.card_templates import CardInfo, render_template, st_hybrid_version

__all__ = ["DATASET_CARD_TEMPLATE", "DatasetCardInfo", "build_dataset_card_data", "dataset_statistics",
           "render_dataset_card"]  # fmt: skip

DATASET_CARD_TEMPLATE = "dataset_card.md"
# Language column pairs, most specific first: st-hybrid training pairs, then common parallel-corpus layouts.
_PAIR_COLUMNS = (("query_language", "passage_language"), ("source_language", "target_language"),
                 ("src_lang", "tgt_lang"), ("language1", "language2"))  # fmt: skip
_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
                    (10**11, "10B<n<100B"), (10**12, "100B<n<1T"))  # fmt: skip


@dataclass
class DatasetCardInfo(CardInfo):
    """Facts about a training-pairs or parallel dataset, shown in its dataset card.

    Args:
        pretty_name: Display name.
        description: What the dataset is (markdown).
        source: Where the text comes from (markdown), e.g. "XQuAD-R (Roy et al., 2020), CC-BY-SA-4.0".
        source_datasets: Hub ids of the source datasets.
        license: License id (Hub identifier).
        how_built: How the dataset was built (markdown): filtering, pairing, translation.
        languages: Languages; computed from the language columns when empty.
        task_categories: Hub task categories.
        citation: BibTeX of the source, appended to the card.
        tags: Extra Hub tags.

    Usage:
        >>> DatasetCardInfo(pretty_name="XQuAD-R pairs", license="cc-by-sa-4.0").license
        'cc-by-sa-4.0'
    """

    _kind: ClassVar[str] = "dataset card"
    pretty_name: str | None = None
    description: str | None = None
    source: str | None = None
    source_datasets: list[str] = field(default_factory=list)
    license: str | None = None
    how_built: str | None = None
    languages: list[str] = field(default_factory=list)
    task_categories: list[str] = field(default_factory=lambda: ["sentence-similarity", "text-retrieval"])
    citation: str | None = None
    tags: list[str] = field(default_factory=list)


def dataset_statistics(dataset) -> dict[str, Any]:
    """Sizes of a training-pairs or parallel dataset: rows, per language, per language pair, per source.

    Language columns are ``query_language``/``passage_language`` (st-hybrid training pairs),
    ``source_language``/``target_language``, ``src_lang``/``tgt_lang``, or a single ``language`` column.
    A ``DatasetDict`` is summed over its splits.

    Returns:
        ``{"num_rows", "splits", "languages", "per_language", "per_pair", "mono_rows", "cross_rows",
        "per_source", "num_parallel_ids", "columns"}``.

    Usage:
        >>> from datasets import Dataset
        >>> stats = dataset_statistics(Dataset.from_dict({"query_language": ["en", "de"],
        ...                                               "passage_language": ["de", "de"]}))
        >>> stats["per_pair"]
        {'de-de': 1, 'en-de': 1}
    """
    splits = dict(dataset) if isinstance(dataset, Mapping) else {"train": dataset}  # a DatasetDict is a dict
    per_language, per_pair, per_source, parallel_ids = Counter(), Counter(), Counter(), set()
    mono = 0
    for part in splits.values():
        names = set(part.column_names)
        pair = next((p for p in _PAIR_COLUMNS if set(p) <= names), None)
        for left, right in zip(part[pair[0]], part[pair[1]], strict=True) if pair else ():
            per_pair[f"{left}-{right}"] += 1
            per_language.update({left} | {right})  # a monolingual pair counts its language once
            mono += left == right
        if not pair and "language" in names:
            per_language.update(part["language"])
        per_source.update(part["source"] if "source" in names else [])
        parallel_ids.update(part["parallel_id"] if "parallel_id" in names else [])
    return {
        "num_rows": sum(len(part) for part in splits.values()),
        "splits": {name: len(part) for name, part in splits.items()},
        "languages": sorted(per_language),
        "per_language": dict(sorted(per_language.items())),
        "per_pair": dict(sorted(per_pair.items())),
        "mono_rows": mono,
        "cross_rows": sum(per_pair.values()) - mono,
        "per_source": dict(sorted(per_source.items())),
        "num_parallel_ids": len(parallel_ids) or None,
        "columns": list(next(iter(splits.values())).column_names) if splits else [],
    }


def build_dataset_card_data(
    info: DatasetCardInfo, stats: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> DatasetCardData:
    """The dataset card's YAML metadata as a ``huggingface_hub.DatasetCardData``.

    Args:
        info: Dataset facts.
        stats: :func:`dataset_statistics` output.
        extra: Metadata to keep (``dataset_info`` and ``configs`` written by ``Dataset.push_to_hub``).

    Usage:
        >>> build_dataset_card_data(DatasetCardInfo(), {"languages": ["en", "de"], "num_rows": 10}).multilinguality
        'multilingual'
    """
    languages = list(info.languages) or list(stats.get("languages", []))
    num_rows = int(stats.get("num_rows", 0))
    return DatasetCardData(
        language=languages or None,
        license=info.license,
        multilinguality="multilingual" if len(languages) > 1 else "monolingual",
        size_categories=next((label for bound, label in _SIZE_CATEGORIES if num_rows < bound), "n>1T"),
        source_datasets=list(info.source_datasets) or None,
        task_categories=list(info.task_categories) or None,
        pretty_name=info.pretty_name,
        tags=list(dict.fromkeys(["sentence-transformers", "st-hybrid", "multilingual", *info.tags])),
        **{k: v for k, v in (extra or {}).items() if k in ("dataset_info", "configs")},
    )


def render_dataset_card(
    info: DatasetCardInfo,
    stats: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> str:
    """Render a dataset card (README.md text) for a training-pairs or parallel dataset.

    Args:
        info: Dataset facts.
        stats: :func:`dataset_statistics` output.
        repo_id: Hub dataset id, used in the loading snippet.
        extra_metadata: YAML metadata to keep (``dataset_info``/``configs`` from ``Dataset.push_to_hub``).

    Usage:
        >>> text = render_dataset_card(DatasetCardInfo(pretty_name="pairs"), {"num_rows": 2, "languages": ["en"]})
        >>> "# pairs" in text
        True
    """
    card_data = build_dataset_card_data(info, stats, extra_metadata)
    empty = {"num_rows": 0, "splits": {}, "columns": [], "per_language": {}, "per_pair": {}, "mono_rows": 0,
             "cross_rows": 0, "per_source": {}, "num_parallel_ids": None}  # fmt: skip
    context = {**empty, **stats, **info.to_dict()}
    context.update(
        card_data=card_data.to_yaml(),
        pretty_name=info.pretty_name or repo_id or "st-hybrid dataset",
        repo_id=repo_id or "user/dataset",
        languages=card_data.language or [],
        is_training_pairs={"query", "passage", "query_language"} <= set(context["columns"]),
        st_hybrid_version=st_hybrid_version(),
    )
    text = render_template(DATASET_CARD_TEMPLATE, **context)
    DatasetCard(text)  # parse once: fails loudly if the YAML block is malformed
    return text
