"""Model cards for st-hybrid models: sentence-transformers' own card with st-hybrid's LAReQA sections on top.

:class:`HybridModelCardData` subclasses ``SentenceTransformerModelCardData``: sentence-transformers fills it during
training (architecture, usage, evaluator tables, dataset statistics, loss, hyperparameters, training logs, framework
versions, citations) and renders its own template. Only what it cannot express lives here: the batch strategy and
alpha, the languages seen and unseen, the training data with its licenses, the per-language and language-pair tables
of each evaluation report, the before/after comparison with the base model, and a ``model-index`` whose entries name
their evaluation pool (full benchmark or which subset) and never hold NaN.

The same card comes out of ``model.save()`` (the trainer's path), :func:`write_model_card` on a model in memory,
and :func:`write_model_card` on a saved folder after the fact (``st-hybrid card model``): what the trainer recorded
is kept beside the weights in ``st_hybrid_card.json``. Reports are the evaluator's ``{name}_metrics.json`` files
(schema in ``docs/architecture.md``); a sibling ``{name}_pair_map.png`` heatmap is shipped under ``assets/``.

Usage:
    >>> from st_hybrid.model_card import ModelCardInfo, write_model_card
    >>> info = ModelCardInfo(base_model="intfloat/multilingual-e5-small", strategy="hybrid", alpha=0.5,
    ...                      languages=["en", "de", "ar"], train_datasets=["mlqa-r"])
    >>> write_model_card("output/model", info, ["output/eval/after/xquad-r_metrics.json"],
    ...                  baseline_reports=["output/eval/before/xquad-r_metrics.json"], model=trained_model,
    ...                  train_dataset=pairs)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from huggingface_hub import EvalResult, ModelCard, constants, try_to_load_from_cache
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results
from sentence_transformers import SentenceTransformerModelCardData
from sentence_transformers.base.model_card import generate_model_card

from st_hybrid.card_reports import (
    HEADLINE_METRICS,
    KNOWN_POOLS,
    EvaluationPool,
    EvaluationReport,
    benchmark_key,
    build_eval_results,
    describe_pool,
    finite,
    json_safe,
    load_report,
)
from st_hybrid.card_templates import (
    TEMPLATES_ENV_VAR,
    CardInfo,
    find_template,
    render_template,
    st_hybrid_version,
)

__all__ = [
    "CARD_STATE_FILE",
    "DATA_LICENSES",
    "KNOWN_POOLS",
    "MODEL_CARD_TEMPLATE",
    "SECTIONS_TEMPLATE",
    "STRATEGIES",
    "TEMPLATES_ENV_VAR",
    "EvaluationPool",
    "EvaluationReport",
    "HybridModelCardData",
    "ModelCardInfo",
    "base_model_license",
    "build_eval_results",
    "describe_pool",
    "find_template",
    "hub_asset_base_url",
    "load_report",
    "render_model_card",
    "training_pair_statistics",
    "write_model_card",
]

MODEL_CARD_TEMPLATE = "model_card.md"
SECTIONS_TEMPLATE = "hybrid_sections.md"
#: Written beside the weights: the card's inputs (training facts, reports, what the trainer recorded).
CARD_STATE_FILE = "st_hybrid_card.json"
_MERGE_INFO_FILE = "st_hybrid_merge.json"  # written by st_hybrid.merge.save_merged
_ST_TEMPLATE = SentenceTransformerModelCardData.__dataclass_fields__["template_path"].default

#: Batch strategy -> (title, description) for the card.
STRATEGIES = {
    "hybrid": (
        "hybrid (mono + cross-lingual)",
        "Each batch is monolingual (X-X-mono: queries and passages all in one language) with probability "
        "alpha and cross-lingual (X-Y: every query paired with a passage in a different language) otherwise, "
        "which keeps monolingual quality while reducing language bias in multilingual retrieval.",
    ),
    "mono": (
        "monolingual (X-X-mono)",
        "Every batch is in a single language, drawn uniformly from the training languages.",
    ),
    "cross": (
        "cross-lingual (X-Y)",
        "In every batch each query is paired with a passage in a different language.",
    ),
    "mixed": (
        "in-batch mixing",
        "Monolingual and cross-lingual pairs are mixed inside each batch (gradient mixing), "
        "a baseline for the hybrid strategy.",
    ),
}

#: Licenses of the training sources st-hybrid reads (Hub identifiers), stated in the card's training-data table.
DATA_LICENSES = {"mlqa-r": "cc-by-nc-4.0", "xquad-r": "cc-by-sa-4.0", "tatoeba": "cc-by-2.0"}
_DATA_LICENSE_NOTES = {"tatoeba": "CC BY 2.0 FR"}
# The paper's base models' licenses, for offline builds where their card is not in the local cache.
_KNOWN_BASE_LICENSES = {"intfloat/multilingual-e5-small": "mit", "intfloat/multilingual-e5-base": "mit",
                        "FacebookAI/xlm-roberta-base": "mit", "xlm-roberta-base": "mit",
                        "sentence-transformers/LaBSE": "apache-2.0"}  # fmt: skip


_CITATIONS = {
    "Hybrid batch training": """@article{elmahdy2024synergistic,
  title   = {A Synergistic Approach for Simultaneous Optimization of Monolingual, Cross-lingual, and Multilingual Information Retrieval},
  author  = {Elmahdy, Adel and Lin, Sheng-Chieh and Ahmad, Amin},
  journal = {arXiv preprint arXiv:2408.10536},
  year    = {2024},
  url     = {https://arxiv.org/abs/2408.10536}
}""",
    "LAReQA": """@inproceedings{roy2020lareqa,
  title     = {{LAReQA}: Language-Agnostic Answer Retrieval from a Multilingual Pool},
  author    = {Roy, Uma and Constant, Noah and Al-Rfou, Rami and Barua, Aditya and Phillips, Aaron and Yang, Yinfei},
  booktitle = {Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing (EMNLP)},
  year      = {2020},
  url       = {https://arxiv.org/abs/2004.05484}
}""",
}


# ---------------------------------------------------------------------------------------------------------------
# Training facts
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ModelCardInfo(CardInfo):
    """Facts about how a model was trained that sentence-transformers does not record, shown in its card.

    Args:
        base_model: Hub id of the initial model.
        base_model_path: A local copy of the base model, read for its license when ``license`` is not given.
        strategy: Batch strategy: ``"hybrid"``, ``"mono"``, ``"cross"`` or ``"mixed"``.
        alpha: Probability of a monolingual batch (hybrid strategy).
        languages: Training languages (ISO 639 codes); report languages outside it are marked unseen.
        language_weighting: How languages (and datasets) were sampled, e.g. ``"uniform"``.
        train_datasets: Names or dicts with ``name``, ``id`` (Hub dataset id), ``size``, ``languages``,
            ``license``, ``notes``; languages, sizes and known licenses are filled from the pairs and
            :data:`DATA_LICENSES`.
        hyperparameters: Shown when the card is written without a trainer record.
        loss: Loss name, shown when the card is written without a trainer record.
        model_name: Display name; sentence-transformers' default otherwise.
        license: License id (Hub identifier); the base model's by default (:func:`base_model_license`).
        query_prefix: Prefix added to queries during training.
        passage_prefix: Prefix added to passages during training.
        num_training_pairs: Number of training pairs.
        training_notes: Free markdown appended to the training section.
        tags: Extra Hub tags.
        merge_ratio: Set when the model is a weight-space merge ``(1 - r) * base + r * fine-tuned``.

    Usage:
        >>> info = ModelCardInfo(strategy="hybrid", alpha=0.5, languages=["en", "de"])
        >>> ModelCardInfo.from_dict(info.to_dict()) == info
        True
    """

    _kind: ClassVar[str] = "model card"
    base_model: str | None = None
    base_model_path: str | None = None
    strategy: str = "hybrid"
    alpha: float | None = 0.5
    languages: list[str] = field(default_factory=list)
    language_weighting: str | None = None
    train_datasets: list[Any] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    loss: str | None = None
    model_name: str | None = None
    license: str | None = None
    query_prefix: str | None = None
    passage_prefix: str | None = None
    num_training_pairs: int | None = None
    training_notes: str | None = None
    tags: list[str] = field(default_factory=list)
    merge_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}: expected one of {sorted(STRATEGIES)}.")
        if self.alpha is not None and not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}.")
        if self.strategy != "hybrid" and self.alpha == 0.5:
            self.alpha = None  # the default alpha only means something for hybrid batches
        if isinstance(self.languages, str):
            raise ValueError(f"languages must be a list of codes, got the string {self.languages!r}.")
        if self.merge_ratio is not None and finite(self.merge_ratio) is None:
            raise ValueError(f"merge_ratio must be a finite number, got {self.merge_ratio}.")


def base_model_license(
    base_model: str | None, base_model_path: str | os.PathLike | None = None
) -> str | None:
    """The base model's license: its card's ``license`` when available locally, else a known default.

    Reads the README.md of ``base_model_path`` (or of ``base_model`` when it is a folder), then of the Hugging Face
    cache, then falls back to the paper's base models' licenses. Never touches the network.

    Usage:
        >>> base_model_license("intfloat/multilingual-e5-small")
        'mit'
    """
    readmes = [Path(p) / "README.md" for p in (base_model_path, base_model) if p and Path(p).is_dir()]
    if base_model and not Path(base_model).exists():
        cached = try_to_load_from_cache(base_model, "README.md")
        readmes += [Path(cached)] if isinstance(cached, str) else []
    for readme in (r for r in readmes if r.is_file()):
        if license_id := ModelCard(readme.read_text(encoding="utf-8")).data.license:
            return str(license_id)
    return _KNOWN_BASE_LICENSES.get(base_model or "")


def hub_asset_base_url(repo_id: str, revision: str | None = None, endpoint: str | None = None) -> str:
    """URL prefix of a model repository's files, ``{endpoint}/{repo_id}/resolve/{revision}/``.

    sentence-transformers rewrites only its own ``src="assets/`` links, and only for huggingface.co; this also serves
    other endpoints (``HF_ENDPOINT`` as read at import by default) and revisions.

    Usage:
        >>> hub_asset_base_url("user/model", endpoint="https://huggingface.co")
        'https://huggingface.co/user/model/resolve/main/'
    """
    from urllib.parse import quote

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    return f"{endpoint}/{repo_id}/resolve/{quote(revision or 'main', safe='')}/"


# ---------------------------------------------------------------------------------------------------------------
# The LAReQA sections
# ---------------------------------------------------------------------------------------------------------------
def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    number = finite(value)
    if number is None:
        return "–" if value is None or isinstance(value, float | int) else str(value)  # missing, NaN or inf
    return pattern.format(number)


def _metric_row(metrics: Mapping[str, Any]) -> dict[str, str]:
    return {
        column: _fmt(metrics.get(key), pattern) for key, (column, *_, pattern) in HEADLINE_METRICS.items()
    }


def _report_context(report: EvaluationReport, seen: set[str], asset_base_url: str) -> dict[str, Any]:
    """One report's rows for the summary, per-language and language-pair tables."""
    columns = sorted({lang for row in report.pair_map.values() for lang in row})
    missing = "–"
    return {
        **asdict(report),
        "pool": describe_pool(report),
        "num_queries": missing if report.num_queries is None else report.num_queries,
        "num_candidates": missing if report.num_candidates is None else report.num_candidates,
        "summary": _metric_row(report.metrics),
        "per_language": [
            {
                "language": lang if not seen or lang in seen else f"{lang} †",
                **_metric_row(report.per_language.get(lang, {})),
            }
            for lang in report.languages
        ],
        "extra_metrics": [
            (k, _fmt(v)) for k, v in sorted(report.metrics.items()) if k not in HEADLINE_METRICS
        ],
        "heatmap": f"{asset_base_url}assets/{report.slug}_pair_map.png" if report.heatmap else None,
        "pair_columns": columns,
        "pair_rows": [
            (lang, [_fmt(row.get(c)) for c in columns]) for lang, row in sorted(report.pair_map.items())
        ],
    }


def _before_after(reports: Sequence[EvaluationReport], baselines: Sequence[EvaluationReport]) -> list[dict]:
    """Headline metrics of the base model vs this model, per benchmark, flagging a different pool."""
    by_name = {b.name: b for b in baselines}
    rows = []
    for report in (r for r in reports if r.name in by_name):
        base, lines = by_name[report.name], []
        for key, (*_, pretty, pattern) in HEADLINE_METRICS.items():
            old, new = finite(base.metrics.get(key)), finite(report.metrics.get(key))
            if old is not None and new is not None:
                lower_is_better = key == "rank_distance"
                delta = ("{:+.1f}" if lower_is_better else "{:+.4f}").format(new - old)
                better = new < old if lower_is_better else new > old
                lines.append({"metric": pretty, "before": pattern.format(old), "after": pattern.format(new),
                              "delta": delta + (" ✓" if better else "")})  # fmt: skip
        pools = [(r.num_queries, r.num_candidates, sorted(r.languages)) for r in (base, report)]
        rows.append({"name": report.name, "same_pool": pools[0] == pools[1], "lines": lines})
    return rows


def training_pair_statistics(train_dataset) -> dict[str, dict[str, Any]]:
    """Per training source: languages, pairs, mono and cross pairs (from the training-pairs metadata columns).

    Pass the result as ``HybridModelCardData(train_pair_statistics=...)`` when ``model.save()`` writes the card.

    Usage:
        >>> from datasets import Dataset
        >>> training_pair_statistics(Dataset.from_dict({"query_language": ["en", "de"], "passage_language": ["de", "de"],
        ...                                             "source": ["mlqa-r", "mlqa-r"]}))["mlqa-r"]["cross_pairs"]
        1
    """
    if train_dataset is None or not {"query_language", "passage_language"} <= set(train_dataset.column_names):
        return {}
    columns = [train_dataset["query_language"], train_dataset["passage_language"]]
    sources = train_dataset["source"] if "source" in train_dataset.column_names else [""] * len(train_dataset)
    stats: dict[str, dict[str, Any]] = {}
    for query_lang, passage_lang, source in zip(*columns, sources, strict=True):
        entry = stats.setdefault(source, {"languages": set(), "size": 0, "mono_pairs": 0, "cross_pairs": 0})
        entry["languages"].update((query_lang, passage_lang))
        entry["size"] += 1
        entry["cross_pairs" if query_lang != passage_lang else "mono_pairs"] += 1
    return {name: {**entry, "languages": sorted(entry["languages"])} for name, entry in stats.items()}


def _dataset_entries(
    info: ModelCardInfo, pair_stats: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Training-data rows: the given facts, completed with counts from the pairs and the known source licenses."""
    items = list(info.train_datasets) or [name for name in pair_stats if name]
    # One dataset and one (possibly unnamed) source of pairs: they are the same data.
    only = next(iter(pair_stats.values())) if len(items) == 1 and len(pair_stats) == 1 else {}
    entries = []
    for item in items:
        entry = {"name": item} if isinstance(item, str) else dict(item)
        name = str(entry.setdefault("name", entry.get("id")) or "")
        license_id = DATA_LICENSES.get(benchmark_key(name) or name.lower())
        defaults = {
            "languages": [],
            "size": None,
            "mono_pairs": None,
            "cross_pairs": None,
            "id": None,
            "notes": None,
        }
        entry = {**defaults, **(pair_stats.get(name) or only), "license": license_id, **entry}
        entry["license_note"] = _DATA_LICENSE_NOTES.get(name.lower())
        entry["url"] = f"https://huggingface.co/datasets/{entry['id']}" if entry["id"] else None
        entries.append(entry)
    return entries


def _merge_context(info: ModelCardInfo, model_dir: str | None) -> dict[str, Any] | None:
    record_file = Path(model_dir) / _MERGE_INFO_FILE if model_dir else None
    record = (
        json.loads(record_file.read_text(encoding="utf-8")) if record_file and record_file.is_file() else {}
    )
    ratio = info.merge_ratio if info.merge_ratio is not None else record.get("ratio")
    if ratio is None:
        return None
    return {
        "ratio": ratio,
        "base": record.get("base_model") or info.base_model,
        "tuned": record.get("tuned_model"),
    }


# ---------------------------------------------------------------------------------------------------------------
# sentence-transformers integration
# ---------------------------------------------------------------------------------------------------------------
# What sentence-transformers' trainer records in the card data, kept beside the weights for after-the-fact cards.
_RECORDED_FIELDS = (
    "train_datasets", "eval_datasets", "all_hyperparameters", "non_default_hyperparameters", "training_logs",
    "citations", "best_model_step", "tags", "widget", "base_model_revision",
)  # fmt: skip
# Rendered values that cannot be rebuilt without the trainer (evaluator objects, wall-clock times).
_RECORDED_RENDERED = ("eval_metrics", "training_time", "evaluation_time", "total_time")


def _pool_from_evaluator(evaluator) -> EvaluationPool | None:
    """The pool of an st-hybrid evaluator that ran during training (its metrics have no report file)."""
    if not hasattr(evaluator, "query_ids") or not hasattr(evaluator, "candidate_ids"):
        return None
    name, languages = evaluator.name or "language_aware_retrieval", list(getattr(evaluator, "languages", []))
    sizes = {"num_queries": len(evaluator.query_ids), "num_candidates": len(evaluator.candidate_ids)}
    pool = dict(getattr(evaluator, "pool", None) or {})
    return describe_pool(EvaluationReport(name, languages, metrics={}, pool=pool, **sizes))


@dataclass
class HybridModelCardData(SentenceTransformerModelCardData):
    """sentence-transformers' card data plus st-hybrid's facts: ``model.save()`` writes the extended card.

    Everything sentence-transformers records during training stays and renders with its own template; st-hybrid's
    sections go on top, the ``model-index`` names every evaluation pool, and saving also writes the reports
    (``eval/``), their heatmaps (``assets/``) and ``st_hybrid_card.json``.

    Args:
        hybrid_info: Training facts sentence-transformers does not record.
        hybrid_reports: Evaluation reports of this model (anything :func:`load_report` takes).
        baseline_reports: The same evaluations of the base model, for the before/after table.
        train_pair_statistics: Per-source languages and pair counts (:func:`training_pair_statistics`).
        asset_base_url: Prefix of the heatmap links; the Hub URL of the model id when known, else relative links.

    Usage:
        >>> data = HybridModelCardData(hybrid_info=ModelCardInfo(languages=["en", "de"]))  # doctest: +SKIP
        >>> model = SentenceTransformer(path, model_card_data=data)  # doctest: +SKIP
        >>> data.hybrid_reports.append("eval/xquad-r_metrics.json"); model.save("out")  # doctest: +SKIP
    """

    hybrid_info: ModelCardInfo = field(default_factory=ModelCardInfo)
    hybrid_reports: list[Any] = field(default_factory=list)
    baseline_reports: list[Any] = field(default_factory=list)
    train_pair_statistics: dict[str, Any] = field(default_factory=dict)
    asset_base_url: str | None = None
    template_path: Path = field(
        default_factory=lambda: find_template(MODEL_CARD_TEMPLATE), init=False, repr=False
    )
    # What the trainer recorded and a saved st_hybrid_card.json gave back (see restore()).
    recorded: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def extend(cls, data: SentenceTransformerModelCardData, **kwargs) -> HybridModelCardData:
        """A copy of existing sentence-transformers card data (everything the trainer recorded) as ours."""
        new = cls(
            **kwargs,
            local_files_only=data.local_files_only,
            generate_widget_examples=data.generate_widget_examples,
        )
        for f in fields(data):
            if f.name not in kwargs and f.name != "template_path":
                value = getattr(data, f.name)
                setattr(new, f.name, copy.copy(value) if isinstance(value, list | dict) else value)
        return new

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what the trainer recorded, from a saved ``st_hybrid_card.json``."""
        st_state = dict(state.get("sentence_transformers") or {})
        for name in _RECORDED_FIELDS:
            if name in st_state and not getattr(self, name, None):
                setattr(self, name, st_state[name])
        self.add_tags(st_state.get("tags") or [])  # the trainer's tags, beside the defaults of a loaded model
        self.recorded = {k: st_state[k] for k in (*_RECORDED_RENDERED, "model-index") if st_state.get(k)}

    def _prepare(self, info: ModelCardInfo) -> None:
        """Set sentence-transformers' own fields from st-hybrid's facts before it renders."""
        if not info.languages and self.language:
            info.languages = [self.language] if isinstance(self.language, str) else list(self.language)
        if info.base_model and not Path(info.base_model).exists() and not self.base_model:
            self.base_model = info.base_model
        self.language = list(info.languages) or self.language
        self.license = (
            info.license or self.license or base_model_license(info.base_model, info.base_model_path)
        )
        if info.model_name:
            self.model_name = info.model_name
        elif self.model is not None and self.model_name == self.model.__class__.__name__:
            self.model_name = None  # sentence-transformers' default, set before the base model was known
        names = [d if isinstance(d, str) else d.get("name") or d.get("id") for d in info.train_datasets]
        names = [str(name) for name in names if name]
        if len(self.train_datasets) == 1 and not self.train_datasets[0].get("name") and names:
            self.train_datasets[0]["name"] = ", ".join(names)
        merge = ["merge"] if _merge_context(info, self.save_dir) else []
        self.add_tags(
            [
                "st-hybrid",
                "multilingual",
                "cross-lingual-retrieval",
                f"{info.strategy}-batches",
                *merge,
                *info.tags,
            ]
        )
        if not self.citations:
            self.set_losses([])  # sentence-transformers' own citation
        self.citations = {**self.citations, **_CITATIONS}

    def _st_eval_results(self, model_index: list | None, replaced: set[str]) -> list[EvalResult]:
        """sentence-transformers' model-index entries with their pools named, minus NaN and replaced ones."""
        pools = {getattr(e, "name", None): _pool_from_evaluator(e) for e in self.eval_results_dict or {}}
        results = model_index_to_eval_results(model_index)[1] if model_index else []
        kept = []
        for result in results:
            result.metric_value = finite(result.metric_value)
            if result.metric_value is None or result.dataset_type in replaced:
                continue
            if pool := pools.get(result.dataset_type):
                result.dataset_name, result.dataset_config = pool.dataset_name, pool.config
            kept.append(result)
        return kept

    def to_dict(self) -> dict[str, Any]:
        info = self.hybrid_info
        reports = [load_report(r) for r in self.hybrid_reports]
        baselines = [load_report(r) for r in self.baseline_reports]
        self._prepare(info)
        data = super().to_dict()
        data.update({k: v for k, v in self.recorded.items() if not data.get(k)})
        st_results = self._st_eval_results(data.pop("model-index", None), {r.name for r in reports})
        eval_results = build_eval_results(reports) + st_results
        data["model-index"] = (
            eval_results_to_model_index(data["model_name"], eval_results) if eval_results else None
        )
        data["metrics"] = list(dict.fromkeys(r.metric_type for r in eval_results)) or None
        # sentence-transformers' card body, with the YAML block left to our template.
        st_text = jinja2.Template(Path(_ST_TEMPLATE).read_text(encoding="utf-8")).render(
            **{**data, "card_data": ""}
        )
        head, marker, body = st_text.split("\n---", 1)[1].lstrip("-\n").partition("\n## ")
        data["st_header"], data["st_body"] = head.strip(), (marker + body).strip()
        data["hybrid_sections"] = self._sections(info, reports, baselines)
        if self.save_dir:
            self._save_state(info, reports, baselines, data, st_results)
        self._cached_dict = data
        return data

    def _sections(
        self, info: ModelCardInfo, reports: list[EvaluationReport], baselines: list[EvaluationReport]
    ) -> str:
        """st-hybrid's sections (``hybrid_sections.md``), placed on top of sentence-transformers' card."""
        seen = set(info.languages)
        evaluated = sorted({lang for r in reports for lang in r.languages})
        datasets = _dataset_entries(info, self.train_pair_statistics)
        has_trainer_record = bool(self.all_hyperparameters)
        asset_base = self.asset_base_url or (hub_asset_base_url(self.model_id) if self.model_id else "")
        return render_template(
            SECTIONS_TEMPLATE,
            info=info,
            strategy_title=STRATEGIES[info.strategy][0],
            strategy_description=STRATEGIES[info.strategy][1],
            unseen=[lang for lang in evaluated if seen and lang not in seen],
            loss=None if has_trainer_record else info.loss,
            hyperparameters={} if has_trainer_record else info.hyperparameters,
            num_training_pairs=info.num_training_pairs or sum(d.get("size") or 0 for d in datasets) or None,
            train_datasets=datasets,
            noncommercial=[d["name"] for d in datasets if "-nc" in (d["license"] or "")],
            license=self.license,
            merge=_merge_context(info, self.save_dir),
            reports=[_report_context(r, seen, asset_base) for r in reports],
            before_after=_before_after(reports, baselines),
            st_hybrid_version=st_hybrid_version(),
        )

    def _save_state(self, info, reports, baselines, data, st_results) -> None:
        """Reports under ``eval/``, heatmaps under ``assets/``, and the card's inputs in ``st_hybrid_card.json``."""
        root = Path(self.save_dir)
        for report in reports:
            if report.heatmap is not None and not report.heatmap.is_file():
                raise FileNotFoundError(f"Heatmap {report.heatmap} of report {report.name!r} does not exist.")
        for report in reports:
            _write(root / "eval" / f"{report.slug}_metrics.json", json.dumps(report.to_json_dict(), indent=2))
            if report.heatmap is not None:
                _write(root / "assets" / f"{report.slug}_pair_map.png", report.heatmap)
        st_state = {name: getattr(self, name) for name in _RECORDED_FIELDS}
        st_state.update({k: data.get(k) for k in _RECORDED_RENDERED})
        st_state["model-index"] = eval_results_to_model_index("st", st_results) if st_results else None
        state = {
            "info": info.to_dict(),
            "reports": [
                {**r.to_json_dict(), "heatmap": f"assets/{r.slug}_pair_map.png" if r.heatmap else None}
                for r in reports
            ],
            "baseline_reports": [b.to_json_dict() for b in baselines],
            "train_pair_statistics": self.train_pair_statistics,
            "sentence_transformers": st_state,
        }
        _write(root / CARD_STATE_FILE, json.dumps(json_safe(state), indent=2, default=str, allow_nan=False))


def _write(target: Path, content: str | Path) -> None:
    """Replace ``target`` atomically with text or a file's copy; a link (e.g. from an upload folder into this
    one) is replaced, never written through."""
    if isinstance(content, Path) and not target.is_symlink() and target.exists() and target.samefile(content):
        return  # a card rewritten in place: the heatmap is already there
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if isinstance(content, Path):
        shutil.copyfile(content, tmp)
    else:
        tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, target)


# ---------------------------------------------------------------------------------------------------------------
# Cards of a model in memory or a saved folder
# ---------------------------------------------------------------------------------------------------------------
_ReportLike = str | os.PathLike | Mapping[str, Any] | EvaluationReport


def render_model_card(
    info: ModelCardInfo | None = None,
    reports: Sequence[_ReportLike] = (),
    *,
    model=None,
    model_path: str | os.PathLike | None = None,
    repo_id: str | None = None,
    baseline_reports: Sequence[_ReportLike] = (),
    train_dataset=None,
    asset_base_url: str | None = None,
    save_dir: str | os.PathLike | None = None,
) -> str:
    """Render a model card (README.md text) through sentence-transformers, with st-hybrid's sections on top.

    Args:
        info: Training facts; the folder's saved ones (``st_hybrid_card.json``) when ``None``, else defaults.
        reports: Evaluation reports (anything :func:`load_report` takes); the folder's saved ones when empty.
        model: The model in memory (a trained one keeps what its trainer recorded).
        model_path: A saved model folder, loaded when ``model`` is ``None``; its ``st_hybrid_card.json`` supplies
            what the trainer recorded.
        repo_id: Hub repo id, used in the usage snippet and for absolute asset links.
        baseline_reports: The same evaluations of the base model (before/after table).
        train_dataset: The training pairs, for the languages and pair counts per source.
        asset_base_url: Prefix of the heatmap links (default: the Hub URL of ``repo_id``, else relative).
        save_dir: Where to write the reports, heatmaps and ``st_hybrid_card.json`` (:func:`write_model_card`).

    Usage:
        >>> text = render_model_card(ModelCardInfo(languages=["en", "de"]), model_path="out/model",
        ...                          repo_id="user/model")  # doctest: +SKIP
    """
    if model is None and model_path is None:
        raise ValueError(
            "Pass the model (model=...) or its saved folder (model_path=...) to render its card."
        )
    if model is None:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_path), local_files_only=True)
    state = _load_state(Path(model_path)) if model_path is not None else {}
    original = model.model_card_data
    data = HybridModelCardData.extend(
        original,
        hybrid_info=info or ModelCardInfo.from_dict(state.get("info") or {}),
        hybrid_reports=[load_report(r) for r in reports] or _saved_reports(model_path, state, "reports"),
        baseline_reports=[load_report(r) for r in baseline_reports]
        or _saved_reports(model_path, state, "baseline_reports"),
        train_pair_statistics=training_pair_statistics(train_dataset)
        or state.get("train_pair_statistics", {}),
        asset_base_url=asset_base_url,
    )
    data.restore(state)
    if repo_id:
        data.set_model_id(repo_id)
    data.save_dir = str(save_dir) if save_dir is not None else None
    data.register_model(model)
    model.model_card_data = data
    try:
        text = generate_model_card(model)
    finally:
        model.model_card_data = original
    ModelCard(text)  # parse once: fails loudly if the YAML block is malformed
    return text


def _saved_reports(model_path, state: Mapping[str, Any], key: str) -> list[EvaluationReport]:
    """The reports a saved ``st_hybrid_card.json`` holds, with their heatmaps inside the model folder."""
    return [
        EvaluationReport.from_dict(r, heatmap=r.get("heatmap") and Path(model_path) / r["heatmap"])
        for r in state.get(key) or []
    ]


def _load_state(model_dir: Path) -> dict[str, Any]:
    path = model_dir / CARD_STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); delete it to card the model without it."
        ) from err


def write_model_card(
    model_path: str | os.PathLike,
    info: ModelCardInfo | None = None,
    reports: Sequence[_ReportLike] = (),
    **kwargs,
) -> Path:
    """Write ``README.md`` (+ ``assets/``, ``eval/``, ``st_hybrid_card.json``) into a saved model folder.

    Pass the trained ``model`` right after training to keep what its trainer recorded (training logs,
    hyperparameters, dataset statistics, evaluator tables); a card written later from the folder alone reads that
    record back from ``st_hybrid_card.json`` and gets the same sections.

    Args:
        model_path: The saved sentence-transformers folder.
        info: Training facts (read back from the folder when ``None``).
        reports: Evaluation reports (the folder's saved ones when empty).
        **kwargs: ``model``, ``repo_id``, ``baseline_reports``, ``train_dataset``, ``asset_base_url`` as in
            :func:`render_model_card`.

    Returns:
        The path of the written README.md.

    Usage:
        >>> write_model_card("output/model", ModelCardInfo(languages=["en"]), ["eval/xquad-r_metrics.json"])  # doctest: +SKIP
    """
    root = Path(model_path)
    if not (root / "modules.json").is_file():
        raise FileNotFoundError(
            f"{root} is not a saved sentence-transformers model folder (no modules.json)."
        )
    text = render_model_card(info, reports, model_path=root, save_dir=root, **kwargs)
    _write(root / "README.md", text)
    return root / "README.md"
