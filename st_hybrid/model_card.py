"""Model and dataset cards for st-hybrid models: training facts, LAReQA results tables, Hub metadata.

Cards are rendered from the Jinja templates in the top-level ``model_cards/`` folder (``model_card.md`` and
``dataset_card.md``). The YAML metadata block is produced by ``huggingface_hub``'s own card data classes
(``ModelCardData`` with ``EvalResult`` entries for the ``model-index``, ``DatasetCardData``) so it validates on the Hub.

A model card takes the training facts (:class:`ModelCardInfo`) and zero or more evaluation reports: the
``{name}_metrics.json`` files written by ``LanguageAwareRetrievalEvaluator`` (schema in ``docs/architecture.md``).
A heatmap ``{name}_pair_map.png`` next to a report file is picked up and shipped under ``assets/``.

:class:`HybridModelCardData` plugs the same card into sentence-transformers' own ``model.save()``.

Usage:
    >>> from st_hybrid.model_card import ModelCardInfo, write_model_card
    >>> info = ModelCardInfo(base_model="intfloat/multilingual-e5-small", strategy="hybrid", alpha=0.5,
    ...                      languages=["en", "de", "ar"])
    >>> write_model_card("output/model", info, reports=["output/eval/xquad-r_metrics.json"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "DATASET_CARD_TEMPLATE",
    "MODEL_CARD_TEMPLATE",
    "STRATEGIES",
    "ST_MODEL_CARD_TEMPLATE",
    "TEMPLATES_ENV_VAR",
    "DatasetCardInfo",
    "EvaluationReport",
    "HybridModelCardData",  # noqa: F822 - built lazily by __getattr__ (no torch import at module load)
    "ModelCardInfo",
    "build_dataset_card_data",
    "build_eval_results",
    "build_model_card_data",
    "dataset_statistics",
    "find_template",
    "hub_asset_base_url",
    "load_report",
    "model_card_files",
    "render_dataset_card",
    "render_model_card",
    "write_model_card",
]

MODEL_CARD_TEMPLATE = "model_card.md"
DATASET_CARD_TEMPLATE = "dataset_card.md"
TEMPLATES_ENV_VAR = "ST_HYBRID_CARD_TEMPLATES"

STRATEGIES = {
    "hybrid": (
        "hybrid (mono + cross-lingual)",
        "Each batch is monolingual (X-X-mono: queries and passages all in one language) with probability alpha and "
        "cross-lingual (X-Y: every query paired with a passage in a different language) otherwise, which keeps "
        "monolingual quality while reducing language bias in multilingual retrieval.",
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

# Report metric key -> (column key in the card, EvalResult metric_type, pretty name, format)
_MAIN_METRICS = (
    ("mono_map", "mono_map", "mAP (mono)", "{:.4f}"),
    ("cross_map", "cross_map", "mAP (cross)", "{:.4f}"),
    ("multi_map", "multi_map", "mAP (multi)", "{:.4f}"),
    ("rank_distance", "rank_distance", "Rank distance (language bias, lower is better)", "{:.1f}"),
    ("multi_ndcg@10", "ndcg_at_10", "nDCG@10 (multi)", "{:.4f}"),
)
_COLUMN = {"mono_map": "mono_map", "cross_map": "cross_map", "multi_map": "multi_map",
           "rank_distance": "rank_distance", "multi_ndcg@10": "ndcg"}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------------------------
def _template_dirs() -> list[Path]:
    package_dir = Path(__file__).resolve().parent
    dirs = []
    if os.environ.get(TEMPLATES_ENV_VAR):
        dirs.append(Path(os.environ[TEMPLATES_ENV_VAR]))
    dirs.append(package_dir.parent / "model_cards")  # source checkout / editable install
    dirs.append(package_dir / "templates")  # wheel install (package data)
    return dirs


def find_template(name: str) -> Path:
    """Locate a card template by file name.

    Looks in ``$ST_HYBRID_CARD_TEMPLATES``, then ``model_cards/`` next to the ``st_hybrid`` package (a source
    checkout or an editable install), then ``st_hybrid/templates/`` (package data of a wheel).

    Args:
        name: Template file name, e.g. ``"model_card.md"``.

    Returns:
        The template path.

    Raises:
        FileNotFoundError: When no candidate folder holds the template.

    Usage:
        >>> find_template("model_card.md").name
        'model_card.md'
    """
    candidates = [folder / name for folder in _template_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Card template {name!r} not found (looked in: {looked}). Install st-hybrid from a source checkout "
        f"(pip install -e .) or point {TEMPLATES_ENV_VAR} to a folder with the templates."
    )


def _render(template_name: str, **context: Any) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(find_template(template_name).parent)),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return _tidy_markdown(env.get_template(template_name).render(**context))


def _tidy_markdown(text: str) -> str:
    """Blank lines around tables, headings and images (outside code fences); no runs of blank lines."""
    out: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        if line.startswith("```"):
            in_fence = not in_fence
        prev = out[-1] if out else ""
        if not in_fence and prev.strip() and not line.startswith("```"):
            table_edge = prev.startswith("|") != line.startswith("|") and line.strip()
            block_start = line.startswith(
                ("#", "![", "<details>", "**Language-pair", "Other metrics", "The raw")
            )
            if table_edge or block_start:
                out.append("")
        if line.strip() or (prev.strip() or in_fence):
            out.append(line)
    return "\n".join(out)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("st-hybrid")
    except Exception:
        return "(development version)"


# ---------------------------------------------------------------------------------------------------------------
# Training facts
# ---------------------------------------------------------------------------------------------------------------
class _CardInfo:
    """Strict loading shared by the card-info dataclasses: unknown keys are an error, not ignored."""

    _kind: ClassVar[str] = "card"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from a dict (e.g. a YAML or JSON file); unknown keys raise a ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown {cls._kind} field(s) {unknown}; known fields: {sorted(known)}.")
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | os.PathLike):
        """Load from a ``.json`` or ``.yaml``/``.yml`` file."""
        return cls.from_dict(_load_mapping(path))


@dataclass
class ModelCardInfo(_CardInfo):
    """Facts about how a model was trained, shown in its card.

    Args:
        base_model: Hub id (or path) of the initial model.
        strategy: Batch strategy: ``"hybrid"``, ``"mono"``, ``"cross"`` or ``"mixed"``.
        alpha: Probability of a monolingual batch (hybrid strategy).
        languages: Training languages (ISO 639 codes).
        language_weighting: How languages (and datasets) were sampled, e.g. ``"uniform"``.
        train_datasets: Training data: names or dicts with ``name``, ``id`` (Hub dataset id), ``size``,
            ``languages``, ``notes``.
        hyperparameters: Training hyperparameters (learning rate, batch size, epochs, ...).
        loss: Loss name, e.g. ``"MultipleNegativesRankingLoss (scale=20)"``.
        model_name: Display name; the repo id by default.
        license: License id (Hub identifier).
        query_prefix: Prefix added to queries during training.
        passage_prefix: Prefix added to passages during training.
        num_training_pairs: Number of training pairs.
        training_notes: Free markdown appended to the training section.
        tags: Extra Hub tags.

    Usage:
        >>> info = ModelCardInfo(strategy="hybrid", alpha=0.5, languages=["en", "de"])
        >>> ModelCardInfo.from_dict(info.to_dict()) == info
        True
    """

    _kind: ClassVar[str] = "model card"
    base_model: str | None = None
    strategy: str = "hybrid"
    alpha: float | None = 0.5
    languages: list[str] = field(default_factory=list)
    language_weighting: str | None = None
    train_datasets: list[Any] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    loss: str | None = None
    model_name: str | None = None
    license: str | None = "apache-2.0"
    query_prefix: str | None = "Query: "
    passage_prefix: str | None = "Passage: "
    num_training_pairs: int | None = None
    training_notes: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}: expected one of {sorted(STRATEGIES)}.")
        if self.alpha is not None and not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}.")
        if self.strategy != "hybrid" and self.alpha == 0.5:
            self.alpha = None  # the default alpha only means something for hybrid batches

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of the fields."""
        return asdict(self)


@dataclass
class DatasetCardInfo(_CardInfo):
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


def _load_mapping(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping (key: value), got {type(data).__name__}.")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Evaluation reports
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class EvaluationReport:
    """One evaluation report (the evaluator's ``{name}_metrics.json``) and its optional heatmap PNG.

    Usage:
        >>> report = EvaluationReport.from_dict({"name": "xquad-r", "languages": ["en"], "metrics": {}})
        >>> report.name
        'xquad-r'
    """

    name: str
    languages: list[str]
    metrics: dict[str, float]
    per_language: dict[str, dict[str, float]] = field(default_factory=dict)
    pair_map: dict[str, dict[str, float]] = field(default_factory=dict)
    num_queries: int | None = None
    num_candidates: int | None = None
    heatmap: Path | None = None
    source: Path | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], heatmap: str | os.PathLike | None = None) -> EvaluationReport:
        missing = [key for key in ("name", "metrics") if key not in data]
        if missing:
            raise ValueError(f"Evaluation report is missing {missing} (schema: docs/architecture.md).")
        return cls(
            name=str(data["name"]),
            languages=list(data.get("languages") or sorted(data.get("per_language", {}))),
            metrics=dict(data["metrics"]),
            per_language={k: dict(v) for k, v in (data.get("per_language") or {}).items()},
            pair_map={k: dict(v) for k, v in (data.get("pair_map") or {}).items()},
            num_queries=data.get("num_queries"),
            num_candidates=data.get("num_candidates"),
            heatmap=Path(heatmap) if heatmap else None,
        )

    @property
    def asset_name(self) -> str:
        """File name of the heatmap in the repository (under ``assets/``)."""
        return f"{_slug(self.name)}_pair_map.png"

    @property
    def json_name(self) -> str:
        """File name of the report in the repository (under ``eval/``)."""
        return f"{_slug(self.name)}_metrics.json"

    def to_json_dict(self) -> dict[str, Any]:
        keys = ("name", "languages", "num_queries", "num_candidates", "metrics", "per_language", "pair_map")
        return {key: getattr(self, key) for key in keys}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def load_report(
    report: str | os.PathLike | Mapping[str, Any] | EvaluationReport, heatmap: str | os.PathLike | None = None
) -> EvaluationReport:
    """Load an evaluation report from a path, a dict or an :class:`EvaluationReport`.

    For a path ``.../{name}_metrics.json``, a sibling ``{name}_pair_map.png`` becomes the heatmap unless one is given.

    Args:
        report: The report.
        heatmap: A heatmap PNG path overriding the discovered one.

    Returns:
        The report.

    Usage:
        >>> load_report({"name": "mlqa-r", "metrics": {"mono_map": 0.6}}).metrics["mono_map"]
        0.6
    """
    if isinstance(report, EvaluationReport):
        if heatmap:
            report.heatmap = Path(heatmap)
        return report
    if isinstance(report, Mapping):
        return EvaluationReport.from_dict(report, heatmap=heatmap)
    path = Path(report)
    if not path.is_file():
        raise FileNotFoundError(f"Evaluation report {path} does not exist.")
    data = json.loads(path.read_text(encoding="utf-8"))
    if heatmap is None:
        stem = path.name[: -len("_metrics.json")] if path.name.endswith("_metrics.json") else path.stem
        candidate = path.with_name(f"{stem}_pair_map.png")
        heatmap = candidate if candidate.is_file() else None
    loaded = EvaluationReport.from_dict(data, heatmap=heatmap)
    loaded.source = path
    return loaded


def _fmt(value: Any, pattern: str) -> str:
    if value is None:
        return "–"
    try:
        return pattern.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def _metric_row(metrics: Mapping[str, Any]) -> dict[str, str]:
    return {_COLUMN[key]: _fmt(metrics.get(key), pattern) for key, _, _, pattern in _MAIN_METRICS}


def _pair_table(report: EvaluationReport) -> str:
    if not report.pair_map:
        return ""
    columns = sorted({lang for row in report.pair_map.values() for lang in row})
    lines = ["| query \\ candidates | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for query_lang in sorted(report.pair_map):
        cells = [_fmt(report.pair_map[query_lang].get(c), "{:.4f}") for c in columns]
        lines.append(f"| {query_lang} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_context(
    report: EvaluationReport, training_languages: Sequence[str], heatmap_ref: str | None
) -> dict:
    seen = set(training_languages)
    per_language = []
    for lang in report.languages or sorted(report.per_language):
        label = lang if (not seen or lang in seen) else f"{lang} †"
        per_language.append({"language": label, **_metric_row(report.per_language.get(lang, {}))})
    main_keys = {key for key, *_ in _MAIN_METRICS}
    extra = [(k, _fmt(v, "{:.4f}")) for k, v in sorted(report.metrics.items()) if k not in main_keys]
    return {
        "name": report.name,
        "languages": report.languages,
        "num_queries": report.num_queries if report.num_queries is not None else "–",
        "num_candidates": report.num_candidates if report.num_candidates is not None else "–",
        "summary": _metric_row(report.metrics),
        "per_language": per_language,
        "extra_metrics": extra,
        "heatmap": heatmap_ref,
        "pair_table": _pair_table(report),
    }


def build_eval_results(reports: Iterable[EvaluationReport]) -> list:
    """``huggingface_hub.EvalResult`` entries (the card's ``model-index``) for the reports.

    One result per report metric over all languages (``dataset_config`` = ``"all"``) and per language
    (``dataset_config`` = the language code).

    Usage:
        >>> results = build_eval_results([load_report({"name": "xquad-r", "metrics": {"mono_map": 0.8}})])
        >>> results[0].metric_type, results[0].metric_value
        ('mono_map', 0.8)
    """
    from huggingface_hub import EvalResult

    results = []
    for report in reports:
        scopes = [("all", report.metrics)] + [
            (lang, report.per_language[lang]) for lang in sorted(report.per_language)
        ]
        for config, metrics in scopes:
            for key, metric_type, pretty, _ in _MAIN_METRICS:
                if metrics.get(key) is None:
                    continue
                results.append(
                    EvalResult(
                        task_type="retrieval",
                        task_name="Retrieval",
                        dataset_type=report.name,
                        dataset_name=report.name,
                        dataset_config=config,
                        dataset_split="test",
                        metric_type=metric_type,
                        metric_value=round(float(metrics[key]), 6),
                        metric_name=pretty if config == "all" else f"{pretty} [{config}]",
                    )
                )
    return results


# ---------------------------------------------------------------------------------------------------------------
# Model cards
# ---------------------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _model_facts(model_path: str | os.PathLike | None) -> dict[str, Any]:
    """Architecture facts read from a saved sentence-transformers folder (no model loading)."""
    facts: dict[str, Any] = {"embedding_dimension": None, "max_seq_length": None, "similarity_fn_name": None,
                             "modules": [], "prompts": {}}  # fmt: skip
    if model_path is None:
        return facts
    root = Path(model_path)
    modules = _read_json(root / "modules.json")
    if isinstance(modules, list):
        facts["modules"] = [m.get("type", "?").rsplit(".", 1)[-1] for m in modules]
        for module in modules:
            config = _read_json(root / module.get("path", "") / "config.json")
            dim = config.get("word_embedding_dimension") or config.get("embedding_dimension")
            if dim:
                facts["embedding_dimension"] = dim
    st_config = _read_json(root / "config_sentence_transformers.json")
    facts["prompts"] = st_config.get("prompts") or {}
    facts["similarity_fn_name"] = st_config.get("similarity_fn_name")
    bert_config = _read_json(root / "sentence_bert_config.json")
    facts["max_seq_length"] = bert_config.get("max_seq_length")
    return facts


def _usage_snippet(repo_id: str, info: ModelCardInfo, prompts: Mapping[str, str]) -> str:
    lines = [
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{repo_id}")',
    ]
    query, passages = (
        "Where is the Eiffel Tower?",
        ["La tour Eiffel se trouve à Paris.", "Der Rhein fließt durch Basel."],
    )
    if "query" in prompts and ("document" in prompts or "passage" in prompts):
        doc_prompt = "document" if "document" in prompts else "passage"
        lines += [
            "# The query/passage prefixes are stored in the model as prompts.",
            f"query_embeddings = model.encode_query([{query!r}])",
            f"passage_embeddings = model.encode_document({passages!r})"
            if doc_prompt == "document"
            else f"passage_embeddings = model.encode({passages!r}, prompt_name='passage')",
        ]
    else:
        q_prefix, p_prefix = info.query_prefix or "", info.passage_prefix or ""
        lines += [
            "# Use the prefixes the model was trained with.",
            f"query_embeddings = model.encode([{q_prefix + query!r}])",
            f"passage_embeddings = model.encode({[p_prefix + p for p in passages]!r})",
        ]
    lines += [
        "similarities = model.similarity(query_embeddings, passage_embeddings)",
        "print(similarities)  # the French passage scores highest",
    ]
    return "\n".join(lines)


def _dataset_entries(info: ModelCardInfo) -> list[dict[str, Any]]:
    entries = []
    for item in info.train_datasets:
        entry = {"name": item} if isinstance(item, str) else dict(item)
        entry.setdefault("name", entry.get("id"))
        entry.setdefault("id", None)
        entry.setdefault("size", None)
        entry.setdefault("languages", [])
        entry.setdefault("notes", None)
        entry["url"] = f"https://huggingface.co/datasets/{entry['id']}" if entry["id"] else None
        entries.append(entry)
    return entries


def build_model_card_data(
    info: ModelCardInfo, reports: Sequence[EvaluationReport], repo_id: str | None = None
):
    """The card's YAML metadata as a ``huggingface_hub.ModelCardData`` (with the ``model-index``).

    Usage:
        >>> data = build_model_card_data(ModelCardInfo(languages=["en", "de"]), [], repo_id="user/model")
        >>> data.library_name
        'sentence-transformers'
    """
    from huggingface_hub import ModelCardData

    dataset_ids = [e["id"] for e in _dataset_entries(info) if e["id"]]
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "multilingual",
            "cross-lingual-retrieval", "st-hybrid", f"{info.strategy}-batches", *info.tags]  # fmt: skip
    eval_results = build_eval_results(reports)
    base_model = info.base_model if info.base_model and not Path(info.base_model).exists() else None
    return ModelCardData(
        language=list(info.languages) or None,
        license=info.license,
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        tags=list(dict.fromkeys(tags)),
        base_model=base_model,
        datasets=dataset_ids or None,
        model_name=info.model_name or repo_id or "st-hybrid model",
        eval_results=eval_results or None,
    )


def render_model_card(
    info: ModelCardInfo,
    reports: Sequence[str | os.PathLike | Mapping[str, Any] | EvaluationReport] = (),
    *,
    repo_id: str | None = None,
    model_path: str | os.PathLike | None = None,
    asset_base_url: str | None = None,
    _facts: Mapping[str, Any] | None = None,
) -> str:
    """Render a model card (README.md text: YAML metadata + markdown).

    Args:
        info: Training facts.
        reports: Evaluation reports (paths to ``{name}_metrics.json``, dicts or :class:`EvaluationReport`).
            Heatmaps are referenced as ``assets/{name}_pair_map.png`` (see :func:`model_card_files`).
        repo_id: Hub repo id, used in the usage snippet and as the default model name.
        model_path: Saved model folder, read for the embedding dimension, max length, modules and prompts.
        asset_base_url: Prefix of the heatmap links (``{asset_base_url}assets/{name}_pair_map.png``), e.g.
            ``"https://huggingface.co/user/model/resolve/main/"`` (the Hub renders absolute image URLs reliably);
            links are relative to the repository root when ``None``.

    Returns:
        The card text.

    Usage:
        >>> text = render_model_card(ModelCardInfo(languages=["en", "de"]), repo_id="user/model")
        >>> 'SentenceTransformer("user/model")' in text
        True
    """
    from huggingface_hub import ModelCard

    loaded = [load_report(r) for r in reports]
    facts = dict(_facts) if _facts is not None else _model_facts(model_path)
    card_data = build_model_card_data(info, loaded, repo_id=repo_id)
    strategy_title, strategy_description = STRATEGIES[info.strategy]
    model_name = info.model_name or repo_id or "st-hybrid model"
    text = _render(
        MODEL_CARD_TEMPLATE,
        card_data=card_data.to_yaml(),
        model_name=model_name,
        base_model=info.base_model,
        base_model_url=f"https://huggingface.co/{info.base_model}" if info.base_model else None,
        languages=list(info.languages),
        strategy=info.strategy,
        strategy_title=strategy_title,
        strategy_description=strategy_description,
        alpha=info.alpha,
        language_weighting=info.language_weighting,
        loss=info.loss,
        query_prefix=info.query_prefix,
        passage_prefix=info.passage_prefix,
        num_training_pairs=info.num_training_pairs,
        train_datasets=_dataset_entries(info),
        hyperparameters=dict(info.hyperparameters),
        training_notes=info.training_notes,
        license=info.license,
        usage_snippet=_usage_snippet(repo_id or "user/model", info, facts["prompts"]),
        reports=[
            _report_context(
                r, info.languages, f"{asset_base_url or ''}assets/{r.asset_name}" if r.heatmap else None
            )
            for r in loaded
        ],
        st_hybrid_version=_version(),
        embedding_dimension=facts["embedding_dimension"],
        max_seq_length=facts["max_seq_length"],
        similarity_fn_name=facts["similarity_fn_name"],
        modules=facts["modules"],
    )
    ModelCard(text)  # parse once: fails loudly if the YAML block is malformed
    return text


def model_card_files(
    reports: Sequence[str | os.PathLike | Mapping[str, Any] | EvaluationReport],
) -> dict[str, Path | bytes]:
    """Files that accompany a card in the repository: heatmaps under ``assets/`` and reports under ``eval/``.

    Returns:
        ``{path_in_repo: local path or bytes}``.

    Usage:
        >>> model_card_files([{"name": "xquad-r", "metrics": {"mono_map": 0.8}}])  # doctest: +ELLIPSIS
        {'eval/xquad-r_metrics.json': b'{...}
    """
    files: dict[str, Path | bytes] = {}
    for report in (load_report(r) for r in reports):
        files[f"eval/{report.json_name}"] = json.dumps(report.to_json_dict(), indent=2).encode()
        if report.heatmap is not None:
            if not report.heatmap.is_file():
                raise FileNotFoundError(f"Heatmap {report.heatmap} of report {report.name!r} does not exist.")
            files[f"assets/{report.asset_name}"] = report.heatmap
    return files


def hub_asset_base_url(repo_id: str, revision: str | None = None, endpoint: str | None = None) -> str:
    """URL prefix of a model repository's files: ``{endpoint}/{repo_id}/resolve/{revision}/``.

    The endpoint defaults to ``$HF_ENDPOINT`` (read now) or ``https://huggingface.co``.

    Usage:
        >>> hub_asset_base_url("user/model", endpoint="https://huggingface.co")
        'https://huggingface.co/user/model/resolve/main/'
    """
    from urllib.parse import quote

    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    return f"{endpoint}/{repo_id}/resolve/{quote(revision or 'main', safe='')}/"


def write_model_card(
    model_path: str | os.PathLike,
    info: ModelCardInfo,
    reports: Sequence[str | os.PathLike | Mapping[str, Any] | EvaluationReport] = (),
    *,
    repo_id: str | None = None,
) -> Path:
    """Write ``README.md`` (and ``assets/``, ``eval/``) into a saved model folder.

    Args:
        model_path: The saved sentence-transformers folder.
        info: Training facts.
        reports: Evaluation reports.
        repo_id: Hub repo id for the usage snippet.

    Returns:
        The path of the written README.md.

    Usage:
        >>> write_model_card("output/model", ModelCardInfo(languages=["en"]), ["eval/xquad-r_metrics.json"])  # doctest: +SKIP
    """
    root = Path(model_path)
    if not root.is_dir():
        raise FileNotFoundError(f"Model folder {root} does not exist.")
    loaded = [load_report(r) for r in reports]
    base = hub_asset_base_url(repo_id) if repo_id else None
    text = render_model_card(info, loaded, repo_id=repo_id, model_path=root, asset_base_url=base)
    for path_in_repo, content in model_card_files(loaded).items():
        target = root / path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif Path(content).resolve() != target.resolve():
            shutil.copyfile(content, target)
    readme = root / "README.md"
    readme.write_text(text, encoding="utf-8")
    return readme


# ---------------------------------------------------------------------------------------------------------------
# sentence-transformers integration
# ---------------------------------------------------------------------------------------------------------------
ST_MODEL_CARD_TEMPLATE = "st_model_card.md"


def _facts_from_model(model) -> dict[str, Any]:
    facts = _model_facts(None)
    if model is None:
        return facts
    get_dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    facts["embedding_dimension"] = get_dimension()
    facts["max_seq_length"] = getattr(model, "max_seq_length", None)
    facts["similarity_fn_name"] = getattr(model, "similarity_fn_name", None)
    facts["prompts"] = dict(getattr(model, "prompts", None) or {})
    facts["modules"] = [type(module).__name__ for module in model]
    return facts


def _hybrid_model_card_data_class():
    from sentence_transformers import SentenceTransformerModelCardData

    @dataclass
    class _HybridModelCardData(SentenceTransformerModelCardData):
        """``SentenceTransformerModelCardData`` whose card is st-hybrid's: ``model.save()`` writes it.

        ``save()`` also copies the reports' heatmaps to ``assets/`` and the reports to ``eval/``.

        Usage:
            >>> data = HybridModelCardData(hybrid_info=ModelCardInfo(languages=["en", "de"]))  # doctest: +SKIP
            >>> model = SentenceTransformer(path, model_card_data=data)  # doctest: +SKIP
            >>> data.hybrid_reports.append("eval/xquad-r_metrics.json"); model.save("out")  # doctest: +SKIP
        """

        hybrid_info: ModelCardInfo = field(default_factory=ModelCardInfo)
        hybrid_reports: list[Any] = field(default_factory=list)
        template_path: Path = field(
            default_factory=lambda: find_template(ST_MODEL_CARD_TEMPLATE), init=False, repr=False
        )

        def _hybrid_info(self) -> ModelCardInfo:
            info = self.hybrid_info
            if not info.languages and self.language:
                info.languages = [self.language] if isinstance(self.language, str) else list(self.language)
            if not info.base_model and self.base_model:
                info.base_model = self.base_model
            return info

        def to_dict(self) -> dict[str, Any]:
            data = super().to_dict()
            reports = [load_report(r) for r in self.hybrid_reports]
            if self.save_dir:
                for path_in_repo, content in model_card_files(reports).items():
                    target = Path(self.save_dir) / path_in_repo
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if isinstance(content, bytes):
                        target.write_bytes(content)
                    else:
                        shutil.copyfile(content, target)
            data["st_hybrid_card"] = render_model_card(
                self._hybrid_info(),
                reports,
                repo_id=self.model_id,
                asset_base_url=hub_asset_base_url(self.model_id) if self.model_id else None,
                _facts=_facts_from_model(self.model),
            )
            return data

        def to_yaml(self, line_break=None) -> str:
            reports = [load_report(r) for r in self.hybrid_reports]
            return build_model_card_data(self._hybrid_info(), reports, repo_id=self.model_id).to_yaml()

    return _HybridModelCardData


def __getattr__(name: str):
    # Built lazily so importing st_hybrid.model_card does not import sentence-transformers (and torch).
    if name == "HybridModelCardData":
        cls = _hybrid_model_card_data_class()
        cls.__name__ = cls.__qualname__ = "HybridModelCardData"
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------------------
# Dataset cards
# ---------------------------------------------------------------------------------------------------------------
_PAIR_COLUMNS = (("query_language", "passage_language"), ("source_language", "target_language"),
                 ("src_lang", "tgt_lang"), ("language1", "language2"))  # fmt: skip


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]  # fmt: skip
    return next((label for bound, label in bounds if n < bound), "n>1T" if n > 10**12 else "100M<n<1B")


def dataset_statistics(dataset) -> dict[str, Any]:
    """Sizes of a training-pairs or parallel dataset: rows, per language, per language pair, per source.

    Language columns are ``query_language``/``passage_language`` (st-hybrid training pairs) or
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
    splits = dict(dataset.items()) if isinstance(dataset, Mapping) else None  # a DatasetDict is a dict
    parts = list(splits.values()) if splits else [dataset]
    per_language: Counter = Counter()
    per_pair: Counter = Counter()
    per_source: Counter = Counter()
    parallel_ids: set = set()
    mono = cross = 0
    columns = list(parts[0].column_names) if parts else []
    for part in parts:
        names = set(part.column_names)
        pair = next((p for p in _PAIR_COLUMNS if set(p) <= names), None)
        if pair:
            left, right = part[pair[0]], part[pair[1]]
            for a, b in zip(left, right, strict=True):
                per_pair[f"{a}-{b}"] += 1
                per_language[a] += 1
                if b != a:
                    per_language[b] += 1
                    cross += 1
                else:
                    mono += 1
        elif "language" in names:
            per_language.update(part["language"])
        if "source" in names:
            per_source.update(part["source"])
        if "parallel_id" in names:
            parallel_ids.update(part["parallel_id"])
    num_rows = sum(len(p) for p in parts)
    return {
        "num_rows": num_rows,
        "splits": {name: len(split) for name, split in splits.items()} if splits else {"train": num_rows},
        "languages": sorted(per_language),
        "per_language": dict(sorted(per_language.items())),
        "per_pair": dict(sorted(per_pair.items())),
        "mono_rows": mono,
        "cross_rows": cross,
        "per_source": dict(sorted(per_source.items())),
        "num_parallel_ids": len(parallel_ids) or None,
        "columns": columns,
    }


def build_dataset_card_data(
    info: DatasetCardInfo, stats: Mapping[str, Any], extra: Mapping[str, Any] | None = None
):
    """The dataset card's YAML metadata as a ``huggingface_hub.DatasetCardData``.

    Args:
        info: Dataset facts.
        stats: :func:`dataset_statistics` output.
        extra: Metadata to keep (e.g. ``dataset_info`` and ``configs`` written by ``Dataset.push_to_hub``).

    Usage:
        >>> build_dataset_card_data(DatasetCardInfo(), {"languages": ["en", "de"], "num_rows": 10}).multilinguality
        'multilingual'
    """
    from huggingface_hub import DatasetCardData

    languages = list(info.languages) or list(stats.get("languages", []))
    tags = list(dict.fromkeys(["sentence-transformers", "st-hybrid", "multilingual", *info.tags]))
    kept = {k: v for k, v in (extra or {}).items() if k in ("dataset_info", "configs")}
    return DatasetCardData(
        language=languages or None,
        license=info.license,
        multilinguality="multilingual" if len(languages) > 1 else "monolingual",
        size_categories=_size_category(int(stats.get("num_rows", 0))),
        source_datasets=list(info.source_datasets) or None,
        task_categories=list(info.task_categories) or None,
        pretty_name=info.pretty_name,
        tags=tags,
        **kept,
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

    Returns:
        The card text.

    Usage:
        >>> text = render_dataset_card(DatasetCardInfo(pretty_name="pairs"), {"num_rows": 2, "languages": ["en"]})
        >>> "# pairs" in text
        True
    """
    from huggingface_hub import DatasetCard

    card_data = build_dataset_card_data(info, stats, extra_metadata)
    per_language, per_pair = stats.get("per_language", {}), stats.get("per_pair", {})
    text = _render(
        DATASET_CARD_TEMPLATE,
        card_data=card_data.to_yaml(),
        pretty_name=info.pretty_name or repo_id or "st-hybrid dataset",
        repo_id=repo_id or "user/dataset",
        description=info.description,
        source=info.source,
        source_datasets=list(info.source_datasets),
        license=info.license,
        how_built=info.how_built,
        citation=info.citation,
        languages=card_data.language or [],
        num_rows=stats.get("num_rows", 0),
        splits=stats.get("splits", {}),
        columns=stats.get("columns", []),
        is_training_pairs={"query", "passage", "query_language"} <= set(stats.get("columns", [])),
        per_language=per_language,
        per_pair=per_pair,
        mono_rows=stats.get("mono_rows", 0),
        cross_rows=stats.get("cross_rows", 0),
        per_source=stats.get("per_source", {}),
        num_parallel_ids=stats.get("num_parallel_ids"),
        st_hybrid_version=_version(),
    )
    DatasetCard(text)  # parse once: fails loudly if the YAML block is malformed
    return text
