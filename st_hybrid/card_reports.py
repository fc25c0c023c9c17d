"""Evaluation reports as cards show them: the report files, the pool each ran on, the ``model-index`` entries.

A report is the ``{name}_metrics.json`` that ``LanguageAwareRetrievalEvaluator`` writes (schema in
``docs/architecture.md``), with an optional ``{name}_pair_map.png`` heatmap beside it. :func:`describe_pool` names what
it ran on (the full benchmark, or which subset and how big) so that no number is published without its pool, and
:func:`build_eval_results` turns reports into ``huggingface_hub.EvalResult`` entries that never hold NaN.

Usage:
    >>> from st_hybrid.card_reports import describe_pool, load_report
    >>> report = load_report({"name": "xquad-r", "languages": ["en"], "num_queries": 100, "num_candidates": 90,
    ...                       "metrics": {"mono_map": 0.8}}, pool={"max_articles": 4})
    >>> describe_pool(report).config
    'subset-4-articles'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HEADLINE_METRICS", "KNOWN_POOLS", "EvaluationPool", "EvaluationReport", "benchmark_key",
           "build_eval_results", "describe_pool", "finite", "json_safe", "load_report"]  # fmt: skip

#: Report metric key -> (card column, EvalResult metric_type, pretty name, number format)
HEADLINE_METRICS = {
    "mono_map": ("mono_map", "mono_map", "mAP (mono)", "{:.4f}"),
    "cross_map": ("cross_map", "cross_map", "mAP (cross)", "{:.4f}"),
    "multi_map": ("multi_map", "multi_map", "mAP (multi)", "{:.4f}"),
    "rank_distance": (
        "rank_distance",
        "rank_distance",
        "Rank distance (language bias, lower is better)",
        "{:.1f}",
    ),
    "multi_ndcg@10": ("ndcg", "ndcg_at_10", "nDCG@10 (multi)", "{:.4f}"),
}


@dataclass(frozen=True)
class _FullPool:
    """A benchmark's complete test pool: queries and candidates per language, articles per language file."""

    title: str
    queries: Mapping[str, int]
    candidates: Mapping[str, int]
    articles: int | None


#: Full LAReQA test pools (counted from the released files), to tell a full evaluation from a subset.
KNOWN_POOLS = {
    "xquad-r": _FullPool(
        "XQuAD-R", dict.fromkeys(["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"], 1190),
        {"ar": 1222, "de": 1276, "el": 1234, "en": 1180, "es": 1215, "hi": 1244, "ru": 1219, "th": 852,
         "tr": 1167, "vi": 1209, "zh": 1196}, articles=48),
    "mlqa-r": _FullPool(
        "MLQA-R", {"ar": 517, "de": 512, "en": 1148, "es": 500, "hi": 507, "vi": 511, "zh": 504},
        {"ar": 2545, "de": 2362, "en": 6264, "es": 1787, "hi": 2426, "vi": 2828, "zh": 2322}, articles=None),
}  # fmt: skip


def finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: strict JSON, as the evaluator writes its reports."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


@dataclass(frozen=True)
class EvaluationPool:
    """What an evaluation ran on, as the card and the model-index name it.

    Attributes:
        dataset_name: e.g. ``"XQuAD-R (subset: 4 of 48 articles, 1,485 queries x 915 candidates)"``.
        config: ``"full"``, ``"subset-4-articles"``, ``"subset"`` or ``"unknown"``.
        is_subset: Whether only part of the benchmark was used.
        description: One sentence for the card.
    """

    dataset_name: str
    config: str
    is_subset: bool
    description: str


@dataclass
class EvaluationReport:
    """One evaluation report (the evaluator's ``{name}_metrics.json``) and its optional heatmap PNG.

    ``pool`` names a subset explicitly: ``{"max_articles": 4}`` (first N articles of each file) or
    ``{"config": ..., "description": ...}``; read from the report's ``pool`` or ``max_articles`` key otherwise.

    Usage:
        >>> EvaluationReport.from_dict({"name": "xquad-r", "languages": ["en"], "metrics": {}}).slug
        'xquad-r'
    """

    name: str
    languages: list[str]
    metrics: dict[str, float]
    per_language: dict[str, dict[str, float]] = field(default_factory=dict)
    pair_map: dict[str, dict[str, float]] = field(default_factory=dict)
    num_queries: int | None = None
    num_candidates: int | None = None
    pool: dict[str, Any] = field(default_factory=dict)
    heatmap: Path | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], heatmap: str | os.PathLike | None = None) -> EvaluationReport:
        """Build from the report's JSON dict; ``name`` and ``metrics`` are required."""
        missing = [key for key in ("name", "metrics") if key not in data]
        if missing:
            raise ValueError(f"Evaluation report is missing {missing} (schema: docs/architecture.md).")
        pool = dict(data.get("pool") or {})
        if data.get("max_articles") is not None:
            pool.setdefault("max_articles", data["max_articles"])
        per_language = {k: dict(v) for k, v in (data.get("per_language") or {}).items()}
        return cls(name=str(data["name"]), languages=list(data.get("languages") or sorted(per_language)),
                   metrics=dict(data["metrics"]), per_language=per_language,
                   pair_map={k: dict(v) for k, v in (data.get("pair_map") or {}).items()},
                   num_queries=data.get("num_queries"), num_candidates=data.get("num_candidates"), pool=pool,
                   heatmap=Path(heatmap) if heatmap else None)  # fmt: skip

    @property
    def slug(self) -> str:
        """The name as a file-name stem: ``eval/{slug}_metrics.json``, ``assets/{slug}_pair_map.png``."""
        return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.name)

    def to_json_dict(self) -> dict[str, Any]:
        """The report as strict JSON (NaN and infinities as null), without the heatmap path."""
        return json_safe({k: v for k, v in asdict(self).items() if k != "heatmap"})


def load_report(
    report: str | os.PathLike | Mapping[str, Any] | EvaluationReport,
    heatmap: str | os.PathLike | None = None,
    *,
    pool: Mapping[str, Any] | None = None,
) -> EvaluationReport:
    """Load an evaluation report from a path, a dict or an :class:`EvaluationReport`.

    For a path ``.../{name}_metrics.json``, a sibling ``{name}_pair_map.png`` becomes the heatmap unless one is
    given.

    Args:
        report: The report.
        heatmap: A heatmap PNG path overriding the discovered one.
        pool: How the evaluation pool was cut, e.g. ``{"max_articles": 4}``; overrides the report's own.

    Usage:
        >>> load_report({"name": "mlqa-r", "metrics": {"mono_map": 0.6}}).metrics["mono_map"]
        0.6
    """
    if isinstance(report, EvaluationReport):
        loaded = report
    elif isinstance(report, Mapping):
        loaded = EvaluationReport.from_dict(report)
    else:
        path = Path(report)
        if not path.is_file():
            raise FileNotFoundError(f"Evaluation report {path} does not exist.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"Evaluation report {path} is not valid JSON: {err}") from err
        sibling = path.with_name(f"{path.stem.removesuffix('_metrics')}_pair_map.png")
        loaded = EvaluationReport.from_dict(data, heatmap=sibling if sibling.is_file() else None)
    if heatmap:
        loaded.heatmap = Path(heatmap)
    if pool:
        loaded.pool = {**loaded.pool, **dict(pool)}
    return loaded


def benchmark_key(name: str) -> str | None:
    """The :data:`KNOWN_POOLS` key a report or dataset name refers to (``"XQuAD_R-de"`` -> ``"xquad-r"``).

    Usage:
        >>> benchmark_key("MLQA-R-dev")
        'mlqa-r'
    """
    key = name.lower().replace("_", "-")
    return next((k for k in KNOWN_POOLS if key == k or key.startswith(f"{k}-")), None)


def _size(queries: int, candidates: int) -> str:
    return f"{queries:,} queries x {candidates:,} candidates"


def describe_pool(report: EvaluationReport) -> EvaluationPool:
    """Name a report's evaluation pool: the full benchmark or which subset, with its size.

    An explicit ``pool`` (``max_articles`` or ``config``/``description``) wins; otherwise the sizes are compared
    with the full pools of :data:`KNOWN_POOLS` for the report's languages.

    Usage:
        >>> report = load_report({"name": "xquad-r", "languages": ["en"], "num_queries": 100,
        ...                       "num_candidates": 90, "metrics": {}}, pool={"max_articles": 4})
        >>> describe_pool(report).dataset_name
        'XQuAD-R (subset: 4 of 48 articles, 100 queries x 90 candidates)'
    """
    full = KNOWN_POOLS.get(benchmark_key(report.name) or "")
    title, pool = (full.title if full else report.name), report.pool
    sized = report.num_queries is not None and report.num_candidates is not None
    size = _size(report.num_queries, report.num_candidates) if sized else "pool size not recorded"
    if pool.get("max_articles") is not None:
        articles = int(pool["max_articles"])
        of = f" of {full.articles}" if full and full.articles else ""
        what = f"{articles}{of} articles" + ("" if of else " of each language file")
        return EvaluationPool(f"{title} (subset: {what}, {size})", f"subset-{articles}-articles", True,
                              f"a subset of {title}: the first {what} ({size})")  # fmt: skip
    if pool.get("config") or pool.get("description"):
        config = str(pool.get("config") or "subset")
        what, is_subset = str(pool.get("description") or config), config != "full"
        name = f"{title} ({'subset: ' if is_subset else ''}{what}, {size})"
        return EvaluationPool(name, config, is_subset, f"{title}, {what} ({size})")
    if not full or not sized:
        return EvaluationPool(f"{title} ({size})", "unknown", False,
                              f"{title} ({size}; not checked against the full benchmark)")  # fmt: skip
    languages = [lang for lang in report.languages if lang in full.queries] or list(full.queries)
    queries, candidates = (
        sum(counts[lang] for lang in languages) for counts in (full.queries, full.candidates)
    )
    scope = (
        f"{len(languages)} of {len(full.queries)} languages, " if len(languages) < len(full.queries) else ""
    )
    if report.num_queries >= queries and report.num_candidates >= candidates:
        return EvaluationPool(f"{title} ({scope}full test set, {size})", "full", False,
                              f"the full {title} test set ({scope}{size})")  # fmt: skip
    whole = _size(queries, candidates)
    return EvaluationPool(f"{title} (subset: {scope}{size} of {whole})", "subset", True,
                          f"a subset of {title}: {scope}{size} of the full {whole}")  # fmt: skip


def build_eval_results(reports: Iterable[EvaluationReport]):
    """``huggingface_hub.EvalResult`` entries (a card's ``model-index``) for the reports.

    One result per headline metric over all languages and per language; the dataset name and config name the pool
    (:func:`describe_pool`): ``"full"``/``"subset-4-articles"`` and ``"<config>-<language>"``. Missing, NaN and
    infinite values are left out.

    Usage:
        >>> results = build_eval_results([load_report({"name": "xquad-r", "metrics": {"mono_map": 0.8}})])
        >>> results[0].metric_type, results[0].metric_value
        ('mono_map', 0.8)
    """
    from huggingface_hub import EvalResult

    results = []
    for report in reports:
        pool = describe_pool(report)
        scopes = [(pool.config, "", report.metrics)]
        languages = sorted(report.per_language)
        scopes += [(f"{pool.config}-{lang}", f" [{lang}]", report.per_language[lang]) for lang in languages]
        for config, suffix, metrics in scopes:
            for key, (_, metric_type, pretty, _) in HEADLINE_METRICS.items():
                if (value := finite(metrics.get(key))) is not None:
                    results.append(EvalResult(
                        task_type="retrieval", task_name="Retrieval", dataset_type=report.name,
                        dataset_name=pool.dataset_name, dataset_config=config, dataset_split="test",
                        metric_type=metric_type, metric_value=round(value, 6), metric_name=pretty + suffix,
                    ))  # fmt: skip
    return results
