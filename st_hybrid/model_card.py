"""Model and dataset cards for st-hybrid models, built on sentence-transformers' own model-card machinery.

A model card is sentence-transformers' card with st-hybrid's LAReQA sections on top. :class:`HybridModelCardData`
subclasses ``SentenceTransformerModelCardData``: sentence-transformers fills it during training (architecture,
usage, evaluator tables, dataset statistics and samples, loss, hyperparameters, training logs, framework
versions, citations) and renders its own template; st-hybrid adds the batch strategy and alpha, the languages
seen and unseen in training, the training data with its licenses, the per-language and language-pair tables of
every evaluation report, the before/after comparison with the base model, and an honest ``model-index`` (every
entry names its evaluation pool; NaN never reaches it).

Only what sentence-transformers cannot express lives here. The same card comes out of three paths: ``model.save()``
of a model whose card data is a :class:`HybridModelCardData` (the trainer's path), :func:`write_model_card` on a
trained model in memory, and :func:`write_model_card` on a saved folder after the fact (``st-hybrid card model``):
the training facts sentence-transformers collected are kept beside the weights in ``st_hybrid_card.json``.

Evaluation reports are the ``{name}_metrics.json`` files written by ``LanguageAwareRetrievalEvaluator`` (schema in
``docs/architecture.md``); a heatmap ``{name}_pair_map.png`` next to a report is shipped under ``assets/``.

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
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "CARD_STATE_FILE",
    "DATASET_CARD_TEMPLATE",
    "DATA_LICENSES",
    "KNOWN_POOLS",
    "MODEL_CARD_TEMPLATE",
    "SECTIONS_TEMPLATE",
    "STRATEGIES",
    "TEMPLATES_ENV_VAR",
    "DatasetCardInfo",
    "EvaluationPool",
    "EvaluationReport",
    "HybridModelCardData",  # noqa: F822 - built lazily by __getattr__ (no torch import at module load)
    "ModelCardInfo",
    "base_model_license",
    "build_dataset_card_data",
    "build_eval_results",
    "dataset_statistics",
    "describe_pool",
    "find_template",
    "hub_asset_base_url",
    "load_report",
    "model_card_files",
    "render_dataset_card",
    "render_model_card",
    "training_pair_statistics",
    "write_model_card",
]

MODEL_CARD_TEMPLATE = "model_card.md"
SECTIONS_TEMPLATE = "hybrid_sections.md"
DATASET_CARD_TEMPLATE = "dataset_card.md"
TEMPLATES_ENV_VAR = "ST_HYBRID_CARD_TEMPLATES"
#: Written beside the weights: the card's inputs (training facts, reports, what the trainer recorded).
CARD_STATE_FILE = "st_hybrid_card.json"
_MERGE_INFO_FILE = "st_hybrid_merge.json"  # written by st_hybrid.merge.save_merged

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

#: Licenses of the training sources st-hybrid reads (Hub identifiers), stated in the card's training-data table.
DATA_LICENSES = {"mlqa-r": "cc-by-nc-4.0", "xquad-r": "cc-by-sa-4.0", "tatoeba": "cc-by-2.0"}
_DATA_LICENSE_NOTES = {"tatoeba": "CC BY 2.0 FR"}
# Licenses of the paper's base models, used when their card is not available locally (offline builds ship none).
_KNOWN_BASE_LICENSES = {
    "intfloat/multilingual-e5-small": "mit",
    "intfloat/multilingual-e5-base": "mit",
    "FacebookAI/xlm-roberta-base": "mit",
    "xlm-roberta-base": "mit",
    "sentence-transformers/LaBSE": "apache-2.0",
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
        "XQuAD-R",
        dict.fromkeys(["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"], 1190),
        {
            "ar": 1222,
            "de": 1276,
            "el": 1234,
            "en": 1180,
            "es": 1215,
            "hi": 1244,
            "ru": 1219,
            "th": 852,
            "tr": 1167,
            "vi": 1209,
            "zh": 1196,
        },  # fmt: skip
        48,
    ),
    "mlqa-r": _FullPool(
        "MLQA-R",
        {"ar": 517, "de": 512, "en": 1148, "es": 500, "hi": 507, "vi": 511, "zh": 504},
        {"ar": 2545, "de": 2362, "en": 6264, "es": 1787, "hi": 2426, "vi": 2828, "zh": 2322},
        None,
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
_LOWER_IS_BETTER = {"rank_distance"}

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
# Templates
# ---------------------------------------------------------------------------------------------------------------
def _template_candidates(name: str) -> list[Path]:
    from importlib.resources import files

    candidates = []
    if os.environ.get(TEMPLATES_ENV_VAR):
        candidates.append(Path(os.environ[TEMPLATES_ENV_VAR]) / name)
    candidates.append(Path(str(files("st_hybrid").joinpath("templates", name))))  # installed package data
    candidates.append(Path(__file__).resolve().parent.parent / "model_cards" / name)  # a source checkout
    return candidates


def find_template(name: str) -> Path:
    """Locate a card template by file name.

    Looks in ``$ST_HYBRID_CARD_TEMPLATES`` (an explicit override), then the package data
    (``importlib.resources``: ``st_hybrid/templates/``), then ``model_cards/`` of a source checkout.

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
    candidates = _template_candidates(name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Card template {name!r} not found (looked in: {looked}). Reinstall st-hybrid (the templates are package "
        f"data) or point {TEMPLATES_ENV_VAR} to a folder with the templates."
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
            block_start = line.startswith(("#", "![", "<details>", "**Language-pair", "Other metrics"))
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of the fields."""
        return asdict(self)


@dataclass
class ModelCardInfo(_CardInfo):
    """Facts about how a model was trained that sentence-transformers does not record, shown in its card.

    Args:
        base_model: Hub id of the initial model.
        base_model_path: A local copy of the base model, read for its license when ``license`` is not given.
        strategy: Batch strategy: ``"hybrid"``, ``"mono"``, ``"cross"`` or ``"mixed"``.
        alpha: Probability of a monolingual batch (hybrid strategy).
        languages: Training languages (ISO 639 codes); report languages outside it are marked unseen.
        language_weighting: How languages (and datasets) were sampled, e.g. ``"uniform"``.
        train_datasets: Training data: names or dicts with ``name``, ``id`` (Hub dataset id), ``size``,
            ``languages``, ``license``, ``notes``. Languages, sizes and known licenses are filled in from the
            training pairs and :data:`DATA_LICENSES`.
        hyperparameters: Hyperparameters to show when the card is written without a trainer record.
        loss: Loss name, shown when the card is written without a trainer record.
        model_name: Display name; sentence-transformers' default otherwise.
        license: License id (Hub identifier); the base model's license by default (:func:`base_model_license`).
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
        if self.merge_ratio is not None and not math.isfinite(float(self.merge_ratio)):
            raise ValueError(f"merge_ratio must be a finite number, got {self.merge_ratio}.")


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


def base_model_license(
    base_model: str | None, base_model_path: str | os.PathLike | None = None
) -> str | None:
    """The base model's license: from its card metadata when available locally, else a known default.

    Reads ``license`` from the README.md of ``base_model_path`` (or of ``base_model`` when it is a folder), then
    from the Hugging Face cache, then the paper's base models' known licenses. Never touches the network.

    Usage:
        >>> base_model_license("intfloat/multilingual-e5-small")
        'mit'
    """
    from huggingface_hub import ModelCard, try_to_load_from_cache

    readmes = [Path(p) / "README.md" for p in (base_model_path, base_model) if p and Path(p).is_dir()]
    if base_model and not Path(base_model).exists():
        cached = try_to_load_from_cache(base_model, "README.md")
        if isinstance(cached, str):
            readmes.append(Path(cached))
    for readme in readmes:
        if readme.is_file():
            license_id = ModelCard(readme.read_text(encoding="utf-8")).data.license
            if license_id:
                return str(license_id)
    return _KNOWN_BASE_LICENSES.get(base_model or "")


# ---------------------------------------------------------------------------------------------------------------
# Evaluation reports and their pools
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluationPool:
    """What an evaluation ran on, as it must appear in the card and the model-index.

    Attributes:
        dataset_name: Name for the model-index, e.g. ``"XQuAD-R (subset: 4 of 48 articles, 1,485 queries x
            915 candidates)"``.
        config: ``"full"`` for the complete test pool, ``"subset-4-articles"``, ``"subset"`` or ``"unknown"``.
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

    ``pool`` describes a subset explicitly: ``{"max_articles": 4}`` (first N articles of each file) or
    ``{"config": ..., "description": ...}``; read from the report's ``pool`` or ``max_articles`` key otherwise.

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
    pool: dict[str, Any] = field(default_factory=dict)
    heatmap: Path | None = None
    source: Path | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], heatmap: str | os.PathLike | None = None) -> EvaluationReport:
        missing = [key for key in ("name", "metrics") if key not in data]
        if missing:
            raise ValueError(f"Evaluation report is missing {missing} (schema: docs/architecture.md).")
        pool = dict(data.get("pool") or {})
        if data.get("max_articles") is not None:
            pool.setdefault("max_articles", data["max_articles"])
        return cls(
            name=str(data["name"]),
            languages=list(data.get("languages") or sorted(data.get("per_language", {}))),
            metrics=dict(data["metrics"]),
            per_language={k: dict(v) for k, v in (data.get("per_language") or {}).items()},
            pair_map={k: dict(v) for k, v in (data.get("pair_map") or {}).items()},
            num_queries=data.get("num_queries"),
            num_candidates=data.get("num_candidates"),
            pool=pool,
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
        keys = (
            "name",
            "languages",
            "num_queries",
            "num_candidates",
            "pool",
            "metrics",
            "per_language",
            "pair_map",
        )
        return {key: getattr(self, key) for key in keys}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def load_report(
    report: str | os.PathLike | Mapping[str, Any] | EvaluationReport,
    heatmap: str | os.PathLike | None = None,
    *,
    pool: Mapping[str, Any] | None = None,
) -> EvaluationReport:
    """Load an evaluation report from a path, a dict or an :class:`EvaluationReport`.

    For a path ``.../{name}_metrics.json``, a sibling ``{name}_pair_map.png`` becomes the heatmap unless one is given.

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
        loaded = EvaluationReport.from_dict(data)
        loaded.source = path
        stem = path.name[: -len("_metrics.json")] if path.name.endswith("_metrics.json") else path.stem
        candidate = path.with_name(f"{stem}_pair_map.png")
        loaded.heatmap = candidate if candidate.is_file() else None
    if heatmap:
        loaded.heatmap = Path(heatmap)
    if pool:
        loaded.pool = {**loaded.pool, **dict(pool)}
    return loaded


def _known_pool(name: str) -> tuple[str, _FullPool] | None:
    key = name.lower().replace("_", "-")
    return next(((k, p) for k, p in KNOWN_POOLS.items() if key == k or key.startswith(k + "-")), None)


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
    known = _known_pool(report.name)
    title = known[1].title if known else report.name
    size = (
        f"{report.num_queries:,} queries x {report.num_candidates:,} candidates"
        if report.num_queries is not None and report.num_candidates is not None
        else "pool size not recorded"
    )
    pool = report.pool
    if pool.get("max_articles") is not None:
        articles = int(pool["max_articles"])
        total = f" of {known[1].articles}" if known and known[1].articles else ""
        what = f"{articles}{total} articles" + ("" if total else " of each language file")
        return EvaluationPool(f"{title} (subset: {what}, {size})", f"subset-{articles}-articles", True,
                              f"a subset of {title}: the first {what} ({size})")  # fmt: skip
    if pool.get("config") or pool.get("description"):
        config = str(pool.get("config") or "subset")
        what = str(pool.get("description") or config)
        is_subset = config != "full"
        name = f"{title} ({'subset: ' if is_subset else ''}{what}, {size})"
        return EvaluationPool(name, config, is_subset, f"{title}, {what} ({size})")
    if not known or report.num_queries is None or report.num_candidates is None:
        return EvaluationPool(f"{title} ({size})", "unknown", False, f"{title} ({size}; not checked against the full benchmark)")  # fmt: skip
    full = known[1]
    languages = [lang for lang in report.languages if lang in full.queries] or list(full.queries)
    full_queries = sum(full.queries[lang] for lang in languages)
    full_candidates = sum(full.candidates[lang] for lang in languages)
    subset_of_languages = len(languages) < len(full.queries)
    scope = f"{len(languages)} of {len(full.queries)} languages, " if subset_of_languages else ""
    if report.num_queries >= full_queries and report.num_candidates >= full_candidates:
        return EvaluationPool(f"{title} ({scope}full test set, {size})", "full", False, f"the full {title} test set ({scope}{size})")  # fmt: skip
    whole = f"{full_queries:,} queries x {full_candidates:,} candidates"
    return EvaluationPool(f"{title} (subset: {scope}{size} of {whole})", "subset", True,
                          f"a subset of {title}: {scope}{size} of the full {whole}")  # fmt: skip


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: strict JSON, as the evaluator writes its reports."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def build_eval_results(reports: Iterable[EvaluationReport]) -> list:
    """``huggingface_hub.EvalResult`` entries (the card's ``model-index``) for the reports.

    One result per headline metric over all languages and per language. The dataset name and config name the
    pool (:func:`describe_pool`): ``"full"``/``"subset-4-articles"`` and ``"<config>-<language>"``. Missing, NaN
    and infinite values are left out.

    Usage:
        >>> results = build_eval_results([load_report({"name": "xquad-r", "metrics": {"mono_map": 0.8}})])
        >>> results[0].metric_type, results[0].metric_value
        ('mono_map', 0.8)
    """
    from huggingface_hub import EvalResult

    results = []
    for report in reports:
        pool = describe_pool(report)
        scopes = [(pool.config, "", report.metrics)] + [
            (f"{pool.config}-{lang}", f" [{lang}]", report.per_language[lang])
            for lang in sorted(report.per_language)
        ]
        for config, suffix, metrics in scopes:
            for key, metric_type, pretty, _ in _MAIN_METRICS:
                value = _finite(metrics.get(key))
                if value is None:
                    continue
                results.append(
                    EvalResult(
                        task_type="retrieval",
                        task_name="Retrieval",
                        dataset_type=report.name,
                        dataset_name=pool.dataset_name,
                        dataset_config=config,
                        dataset_split="test",
                        metric_type=metric_type,
                        metric_value=round(value, 6),
                        metric_name=pretty + suffix,
                    )
                )
    return results


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
        files[f"eval/{report.json_name}"] = json.dumps(_json_safe(report.to_json_dict()), indent=2).encode()
        if report.heatmap is not None:
            if not report.heatmap.is_file():
                raise FileNotFoundError(f"Heatmap {report.heatmap} of report {report.name!r} does not exist.")
            files[f"assets/{report.asset_name}"] = report.heatmap
    return files


def _write_files(root: Path, files: Mapping[str, Path | bytes]) -> None:
    for path_in_repo, content in files.items():
        target = root / path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()  # a link into another folder (an upload folder): replace it, never write through it
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif Path(content).resolve() != target.resolve():
            shutil.copyfile(content, target)


def hub_asset_base_url(repo_id: str, revision: str | None = None, endpoint: str | None = None) -> str:
    """URL prefix of a model repository's files: ``{endpoint}/{repo_id}/resolve/{revision}/``.

    The endpoint defaults to huggingface_hub's (``HF_ENDPOINT`` as read at import).

    Usage:
        >>> hub_asset_base_url("user/model", endpoint="https://huggingface.co")
        'https://huggingface.co/user/model/resolve/main/'
    """
    from urllib.parse import quote

    from huggingface_hub import constants

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    return f"{endpoint}/{repo_id}/resolve/{quote(revision or 'main', safe='')}/"


# ---------------------------------------------------------------------------------------------------------------
# The LAReQA sections
# ---------------------------------------------------------------------------------------------------------------
def _fmt(value: Any, pattern: str) -> str:
    number = _finite(value)
    if number is None:
        return "–" if value is None or isinstance(value, float | int) else str(value)  # missing, NaN or inf
    return pattern.format(number)


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


def _report_context(report: EvaluationReport, seen: set[str], heatmap_ref: str | None) -> dict:
    per_language = []
    for lang in report.languages or sorted(report.per_language):
        label = lang if (not seen or lang in seen) else f"{lang} †"
        per_language.append({"language": label, **_metric_row(report.per_language.get(lang, {}))})
    main_keys = {key for key, *_ in _MAIN_METRICS}
    extra = [(k, _fmt(v, "{:.4f}")) for k, v in sorted(report.metrics.items()) if k not in main_keys]
    return {
        "name": report.name,
        "pool": describe_pool(report),
        "languages": report.languages,
        "num_queries": report.num_queries if report.num_queries is not None else "–",
        "num_candidates": report.num_candidates if report.num_candidates is not None else "–",
        "summary": _metric_row(report.metrics),
        "per_language": per_language,
        "extra_metrics": extra,
        "heatmap": heatmap_ref,
        "pair_table": _pair_table(report),
    }


def _before_after(reports: Sequence[EvaluationReport], baselines: Sequence[EvaluationReport]) -> list[dict]:
    """Headline metrics of the base model vs this model, per benchmark evaluated on the same pool."""
    by_name = {b.name: b for b in baselines}
    rows = []
    for report in reports:
        base = by_name.get(report.name)
        if base is None:
            continue
        same_pool = (base.num_queries, base.num_candidates, sorted(base.languages)) == (
            report.num_queries, report.num_candidates, sorted(report.languages))  # fmt: skip
        lines = []
        for key, _, pretty, pattern in _MAIN_METRICS:
            old, new = _finite(base.metrics.get(key)), _finite(report.metrics.get(key))
            if old is None or new is None:
                continue
            better = (new < old) if key in _LOWER_IS_BETTER else (new > old)
            delta = ("{:+.1f}" if key in _LOWER_IS_BETTER else "{:+.4f}").format(new - old)
            lines.append({"metric": pretty, "before": pattern.format(old), "after": pattern.format(new),
                          "delta": delta + (" ✓" if better else "")})  # fmt: skip
        rows.append(
            {"name": report.name, "pool": describe_pool(report), "same_pool": same_pool, "lines": lines}
        )
    return rows


def training_pair_statistics(train_dataset) -> dict[str, dict[str, Any]]:
    """Per training source: languages, pairs, mono/cross pairs (from the training-pairs metadata columns).

    Pass the result as ``HybridModelCardData(train_pair_statistics=...)`` when the card is written by ``model.save()``.

    Usage:
        >>> from datasets import Dataset
        >>> training_pair_statistics(Dataset.from_dict({"query_language": ["en", "de"], "passage_language": ["de", "de"],
        ...                                             "source": ["mlqa-r", "mlqa-r"]}))["mlqa-r"]["cross_pairs"]
        1
    """
    if train_dataset is None or not {"query_language", "passage_language"} <= set(train_dataset.column_names):
        return {}
    sources = train_dataset["source"] if "source" in train_dataset.column_names else None
    stats: dict[str, dict[str, Any]] = {}
    rows = zip(train_dataset["query_language"], train_dataset["passage_language"], strict=True)
    for index, (query_lang, passage_lang) in enumerate(rows):
        entry = stats.setdefault(
            sources[index] if sources else "", {"languages": set(), "size": 0, "cross": 0}
        )
        entry["languages"].update((query_lang, passage_lang))
        entry["size"] += 1
        entry["cross"] += query_lang != passage_lang
    return {
        name: {
            "languages": sorted(s["languages"]),
            "size": s["size"],
            "cross_pairs": s["cross"],
            "mono_pairs": s["size"] - s["cross"],
        }  # fmt: skip
        for name, s in stats.items()
    }


def _dataset_entries(
    info: ModelCardInfo, pair_stats: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Training-data rows: given facts, completed with counts from the pairs and the known source licenses."""
    items = list(info.train_datasets) or [name for name in pair_stats if name]
    entries = []
    for item in items:
        entry = {"name": item} if isinstance(item, str) else dict(item)
        entry.setdefault("name", entry.get("id"))
        key = str(entry["name"] or "")
        stats = pair_stats.get(key) or (pair_stats.get("") if len(items) == 1 else None)
        if stats is None and len(items) == 1 and len(pair_stats) == 1:
            stats = next(iter(pair_stats.values()))
        stats = stats or {}
        known = _known_pool(key)
        entry.setdefault("languages", stats.get("languages") or [])
        entry.setdefault("size", stats.get("size"))
        entry.setdefault("mono_pairs", stats.get("mono_pairs"))
        entry.setdefault("cross_pairs", stats.get("cross_pairs"))
        entry.setdefault("license", DATA_LICENSES.get(known[0] if known else key.lower()))
        entry["license_note"] = _DATA_LICENSE_NOTES.get(key.lower())
        entry.setdefault("id", None)
        entry.setdefault("notes", None)
        entry["url"] = f"https://huggingface.co/datasets/{entry['id']}" if entry["id"] else None
        entries.append(entry)
    return entries


def _merge_context(info: ModelCardInfo, model_dir: Path | None) -> dict[str, Any] | None:
    record = {}
    if model_dir is not None and (model_dir / _MERGE_INFO_FILE).is_file():
        record = json.loads((model_dir / _MERGE_INFO_FILE).read_text(encoding="utf-8"))
    ratio = info.merge_ratio if info.merge_ratio is not None else record.get("ratio")
    if ratio is None:
        return None
    return {"ratio": ratio, "base": record.get("base_model") or info.base_model,
            "tuned": record.get("tuned_model")}  # fmt: skip


def _sections(
    info: ModelCardInfo,
    reports: Sequence[EvaluationReport],
    baselines: Sequence[EvaluationReport],
    *,
    license_id: str | None,
    pair_stats: Mapping[str, Mapping[str, Any]],
    asset_base_url: str | None,
    model_dir: Path | None,
    has_trainer_record: bool,
) -> str:
    """Render st-hybrid's sections (``hybrid_sections.md``), placed on top of sentence-transformers' card."""
    seen = set(info.languages)
    evaluated = sorted({lang for r in reports for lang in r.languages})
    strategy_title, strategy_description = STRATEGIES[info.strategy]
    datasets = _dataset_entries(info, pair_stats)
    return _render(
        SECTIONS_TEMPLATE,
        strategy=info.strategy,
        strategy_title=strategy_title,
        strategy_description=strategy_description,
        alpha=info.alpha,
        languages=list(info.languages),
        unseen=[lang for lang in evaluated if seen and lang not in seen],
        language_weighting=info.language_weighting,
        loss=None if has_trainer_record else info.loss,
        hyperparameters={} if has_trainer_record else dict(info.hyperparameters),
        query_prefix=info.query_prefix,
        passage_prefix=info.passage_prefix,
        num_training_pairs=info.num_training_pairs or sum(d["size"] or 0 for d in datasets) or None,
        train_datasets=datasets,
        noncommercial=[d["name"] for d in datasets if "-nc" in str(d.get("license") or "")],
        license=license_id,
        base_model=info.base_model,
        merge=_merge_context(info, model_dir),
        training_notes=info.training_notes,
        reports=[
            _report_context(r, seen, f"{asset_base_url or ''}assets/{r.asset_name}" if r.heatmap else None)
            for r in reports
        ],
        before_after=_before_after(reports, baselines),
        st_hybrid_version=_version(),
    )


# ---------------------------------------------------------------------------------------------------------------
# sentence-transformers integration
# ---------------------------------------------------------------------------------------------------------------
# What sentence-transformers' trainer records in the card data, kept beside the weights for after-the-fact cards.
_RECORDED_FIELDS = ("train_datasets", "eval_datasets", "all_hyperparameters", "non_default_hyperparameters",
                    "training_logs", "citations", "best_model_step", "tags", "widget", "base_model_revision")  # fmt: skip
# Rendered values that cannot be rebuilt without the trainer (evaluator objects, wall-clock times).
_RECORDED_RENDERED = ("eval_metrics", "st_eval_results", "training_time", "evaluation_time", "total_time")


def _split_st_card(text: str) -> tuple[str, str]:
    """sentence-transformers' rendered card without its YAML block: (title + introduction, the ``##`` sections)."""
    if text.startswith("---"):
        text = text.split("\n---", 2)[-1].lstrip("-\n")
    head, marker, body = text.partition("\n## ")
    return head.strip(), (marker.lstrip("\n") + body).strip()


def _eval_result_dicts(results) -> list[dict[str, Any]]:
    keys = ("task_type", "task_name", "dataset_type", "dataset_name", "dataset_config", "dataset_split",
            "metric_type", "metric_value", "metric_name")  # fmt: skip
    return [{k: getattr(r, k) for k in keys if getattr(r, k) is not None} for r in results]


def _pool_from_evaluator(evaluator) -> EvaluationPool | None:
    """The pool of an st-hybrid evaluator that ran during training (its metrics have no report file)."""
    if not hasattr(evaluator, "query_ids") or not hasattr(evaluator, "candidate_ids"):
        return None
    report = EvaluationReport(
        name=evaluator.name or "language_aware_retrieval", languages=list(getattr(evaluator, "languages", [])),
        metrics={}, num_queries=len(evaluator.query_ids), num_candidates=len(evaluator.candidate_ids),
        pool=dict(getattr(evaluator, "pool", None) or {}),
    )  # fmt: skip
    return describe_pool(report)


def _hybrid_model_card_data_class():
    from huggingface_hub import EvalResult
    from huggingface_hub.repocard_data import eval_results_to_model_index
    from sentence_transformers import SentenceTransformerModelCardData

    st_template = SentenceTransformerModelCardData.__dataclass_fields__["template_path"].default

    @dataclass
    class _HybridModelCardData(SentenceTransformerModelCardData):
        """sentence-transformers' card data plus st-hybrid's facts: ``model.save()`` writes the extended card.

        Everything sentence-transformers records during training stays (and renders with its own template);
        st-hybrid's LAReQA sections go on top, the ``model-index`` names every evaluation pool, and ``save()`` also
        writes the reports (``eval/``), their heatmaps (``assets/``) and ``st_hybrid_card.json``.

        Args:
            hybrid_info: Training facts sentence-transformers does not record.
            hybrid_reports: Evaluation reports of this model.
            baseline_reports: The same evaluations of the base model, for the before/after table.
            train_pair_statistics: Per-source languages and pair counts (filled from the training pairs).
            asset_base_url: Prefix of the heatmap links; ``https://huggingface.co/{model_id}/resolve/main/`` when
                the model id is known, relative links otherwise.

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
        recorded: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

        @classmethod
        def extend(cls, data, **kwargs):
            """A copy of existing sentence-transformers card data (everything the trainer recorded) as ours."""
            new = cls(**kwargs, local_files_only=data.local_files_only,
                      generate_widget_examples=data.generate_widget_examples)  # fmt: skip
            for f in fields(data):
                if f.name not in kwargs and f.name not in ("template_path", "recorded"):
                    value = getattr(data, f.name)
                    setattr(new, f.name, copy.copy(value) if isinstance(value, list | dict) else value)
            return new

        def restore(self, state: Mapping[str, Any]) -> None:
            """Take back what the trainer recorded, from a saved ``st_hybrid_card.json``."""
            st_state = dict(state.get("sentence_transformers") or {})
            for name in _RECORDED_FIELDS:
                if name in st_state and not getattr(self, name, None):
                    setattr(self, name, st_state[name])
            self.recorded = {k: st_state[k] for k in _RECORDED_RENDERED if st_state.get(k)}

        def _info(self) -> ModelCardInfo:
            info = self.hybrid_info
            if not info.languages and self.language:
                info.languages = [self.language] if isinstance(self.language, str) else list(self.language)
            return info

        def _st_eval_results(self, data: Mapping[str, Any], replaced: set[str]) -> list:
            """sentence-transformers' model-index entries, without NaN, with pools named, minus replaced ones."""
            pools = {getattr(e, "name", None): _pool_from_evaluator(e) for e in self.eval_results_dict or {}}
            results = []
            if data.get("model-index"):
                from huggingface_hub.repocard_data import model_index_to_eval_results

                results = model_index_to_eval_results(data["model-index"])[1]
            elif self.recorded.get("st_eval_results"):
                results = [EvalResult(**r) for r in self.recorded["st_eval_results"]]
            kept = []
            for result in results:
                value = _finite(result.metric_value)
                if value is None or result.dataset_type in replaced:
                    continue
                pool = pools.get(result.dataset_type)
                if pool is not None:
                    result.dataset_name, result.dataset_config = pool.dataset_name, pool.config
                result.metric_value = value
                kept.append(result)
            return kept

        def to_dict(self) -> dict[str, Any]:
            info = self._info()
            reports = [load_report(r) for r in self.hybrid_reports]
            baselines = [load_report(r) for r in self.baseline_reports]
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
            if len(self.train_datasets) == 1 and not self.train_datasets[0].get("name") and any(names):
                self.train_datasets[0]["name"] = ", ".join(str(n) for n in names if n)
            self.add_tags(["st-hybrid", "multilingual", "cross-lingual-retrieval", f"{info.strategy}-batches",
                           *(["merge"] if _merge_context(info, self._model_dir()) else []), *info.tags])  # fmt: skip
            if not self.citations:
                self.set_losses([])  # sentence-transformers' own citation
            self.citations = {
                **self.citations,
                **{k: v for k, v in _CITATIONS.items() if k not in self.citations},
            }

            data = super().to_dict()
            for key, value in self.recorded.items():
                if key != "st_eval_results" and not data.get(key):
                    data[key] = value
            st_results = self._st_eval_results(data, {r.name for r in reports})
            eval_results = build_eval_results(reports) + st_results
            data["model-index"] = (
                eval_results_to_model_index(data["model_name"], eval_results) if eval_results else None
            )
            data["metrics"] = list(dict.fromkeys(r.metric_type for r in eval_results)) or None

            import jinja2

            st_text = jinja2.Template(Path(st_template).read_text(encoding="utf-8")).render(
                **{**data, "card_data": ""}
            )
            data["st_header"], data["st_body"] = _split_st_card(st_text)
            asset_base = self.asset_base_url or (hub_asset_base_url(self.model_id) if self.model_id else None)
            data["hybrid_sections"] = _sections(
                info, reports, baselines, license_id=self.license, pair_stats=self.train_pair_statistics,
                asset_base_url=asset_base, model_dir=self._model_dir(),
                has_trainer_record=bool(self.all_hyperparameters),
            )  # fmt: skip
            if self.save_dir:
                self._save_state(info, reports, baselines, data, st_results)
            self._cached_dict = data
            return data

        def _model_dir(self) -> Path | None:
            return Path(self.save_dir) if self.save_dir else None

        def _save_state(self, info, reports, baselines, data, st_results) -> None:
            root = Path(self.save_dir)
            _write_files(root, model_card_files(reports))
            st_state = {name: getattr(self, name) for name in _RECORDED_FIELDS}
            st_state.update({k: data.get(k) for k in _RECORDED_RENDERED if k != "st_eval_results"})
            st_state["st_eval_results"] = _eval_result_dicts(st_results)
            state = {
                "info": info.to_dict(),
                "reports": [
                    {**r.to_json_dict(), "heatmap": f"assets/{r.asset_name}" if r.heatmap else None}
                    for r in reports
                ],  # fmt: skip
                "baseline_reports": [b.to_json_dict() for b in baselines],
                "train_pair_statistics": self.train_pair_statistics,
                "sentence_transformers": st_state,
            }
            text = json.dumps(_json_safe(state), indent=2, default=str, allow_nan=False)
            tmp = root / f".{CARD_STATE_FILE}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, root / CARD_STATE_FILE)

    return _HybridModelCardData


def __getattr__(name: str):
    # Built lazily so importing st_hybrid.model_card does not import sentence-transformers (and torch).
    if name == "HybridModelCardData":
        cls = _hybrid_model_card_data_class()
        cls.__name__ = cls.__qualname__ = "HybridModelCardData"
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _saved_reports(model_dir: Path, state: Mapping[str, Any], key: str) -> list[EvaluationReport]:
    loaded = []
    for item in state.get(key) or []:
        heatmap = item.get("heatmap")
        loaded.append(EvaluationReport.from_dict(item, heatmap=model_dir / heatmap if heatmap else None))
    return loaded


def render_model_card(
    info: ModelCardInfo | None = None,
    reports: Sequence[str | os.PathLike | Mapping[str, Any] | EvaluationReport] = (),
    *,
    model=None,
    model_path: str | os.PathLike | None = None,
    repo_id: str | None = None,
    baseline_reports: Sequence[str | os.PathLike | Mapping[str, Any] | EvaluationReport] = (),
    train_dataset=None,
    asset_base_url: str | None = None,
) -> str:
    """Render a model card (README.md text) through sentence-transformers, with st-hybrid's sections on top.

    Args:
        info: Training facts; read back from the folder's ``st_hybrid_card.json`` when ``None``, else defaults.
        reports: Evaluation reports (paths to ``{name}_metrics.json``, dicts or :class:`EvaluationReport`);
            the folder's saved reports when empty.
        model: The model in memory (a trained one keeps what its trainer recorded).
        model_path: A saved model folder, loaded when ``model`` is ``None``; its ``st_hybrid_card.json`` supplies
            what the trainer recorded.
        repo_id: Hub repo id, used in the usage snippet and for absolute asset links.
        baseline_reports: The same evaluations of the base model (before/after table).
        train_dataset: The training pairs, for the languages and pair counts per source.
        asset_base_url: Prefix of the heatmap links (default: the Hub URL of ``repo_id``, else relative).

    Returns:
        The card text.

    Usage:
        >>> text = render_model_card(ModelCardInfo(languages=["en", "de"]), model_path="out/model",
        ...                          repo_id="user/model")  # doctest: +SKIP
    """
    text, _ = _card(info, reports, model=model, model_path=model_path, repo_id=repo_id,
                    baseline_reports=baseline_reports, train_dataset=train_dataset, save_dir=None,
                    asset_base_url=asset_base_url)  # fmt: skip
    return text


def _card(
    info, reports, *, model, model_path, repo_id, baseline_reports, train_dataset, save_dir, asset_base_url
):
    from huggingface_hub import ModelCard
    from sentence_transformers.base.model_card import generate_model_card

    if model is None:
        if model_path is None:
            raise ValueError(
                "Pass the model (model=...) or its saved folder (model_path=...) to render its card."
            )
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_path), local_files_only=True)
    folder = Path(model_path) if model_path is not None else None
    state = _load_state(folder) if folder is not None else {}
    if info is None:
        info = ModelCardInfo.from_dict(state["info"]) if state.get("info") else ModelCardInfo()
    loaded = [load_report(r) for r in reports] or (_saved_reports(folder, state, "reports") if folder else [])
    baselines = [load_report(r) for r in baseline_reports] or (
        _saved_reports(folder, state, "baseline_reports") if folder else []
    )
    card_data_class = __getattr__("HybridModelCardData")
    original = model.model_card_data
    data = card_data_class.extend(
        original, hybrid_info=info, hybrid_reports=loaded, baseline_reports=baselines,
        train_pair_statistics=training_pair_statistics(train_dataset) or dict(state.get("train_pair_statistics") or {}),
    )  # fmt: skip
    data.restore(state)
    data.asset_base_url = asset_base_url
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
    return text, data


def write_model_card(
    model_path: str | os.PathLike,
    info: ModelCardInfo | None = None,
    reports: Sequence[str | os.PathLike | Mapping[str, Any] | EvaluationReport] = (),
    *,
    repo_id: str | None = None,
    model=None,
    baseline_reports: Sequence[str | os.PathLike | Mapping[str, Any] | EvaluationReport] = (),
    train_dataset=None,
    asset_base_url: str | None = None,
) -> Path:
    """Write ``README.md`` (+ ``assets/``, ``eval/``, ``st_hybrid_card.json``) into a saved model folder.

    Pass the trained ``model`` right after training to keep what its trainer recorded (training logs,
    hyperparameters, dataset statistics, evaluator tables); a card written later from the folder alone reads
    that record back from ``st_hybrid_card.json`` and gets the same sections.

    Args:
        model_path: The saved sentence-transformers folder.
        info: Training facts (read back from the folder when ``None``).
        reports: Evaluation reports (the folder's saved ones when empty).
        repo_id: Hub repo id for the usage snippet.
        model: The model in memory (else loaded from ``model_path``).
        baseline_reports: The base model's evaluations on the same pools (before/after table).
        train_dataset: The training pairs (languages and pair counts per source).
        asset_base_url: Prefix of the heatmap links (default: the Hub URL of ``repo_id``, else relative).

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
    text, _ = _card(info, reports, model=model, model_path=root, repo_id=repo_id,
                    baseline_reports=baseline_reports, train_dataset=train_dataset, save_dir=root,
                    asset_base_url=asset_base_url)  # fmt: skip
    readme = root / "README.md"
    tmp = root / ".README.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)
    return readme


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
