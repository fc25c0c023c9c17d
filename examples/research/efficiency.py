"""Inference efficiency: does a hybrid-trained model cost less at serving time, or retrieve better at the same cost?

Hybrid training does not change the architecture, so the encode cost per text is the same for every model.
What a less language-biased model can change is how it is *served*. For the zero-shot base model and the
mono-, cross- and hybrid-trained models (one equal, short budget each, trained by ``examples/train.py``),
this script measures, on one encoding of the evaluation pool per model:

1. **Index layout**: one shared multilingual index vs one index per language merged by score or round-robin:
   quality (mAP@k, nDCG@10, recall@k, rank distance@k on top-k lists) and cost (index bytes, build time,
   query latency p50 / p95 one query at a time, QPS batched).
2. **Compression**: faiss Flat, SQ8, HNSW, IVF-Flat, IVF-PQ, and int8 / binary embeddings with float
   rescoring: the retention of each quality metric against exact search, bytes and latency.
3. **Scale** (latency only): the same indexes on a larger synthetic pool built from real embeddings, where
   approximate search has something to save.
4. **Encode throughput**: texts/s of the torch backend in fp32, bf16 and dynamic int8, and of
   sentence-transformers' ONNX / OpenVINO backends where they are installed, each with the quality it keeps
   (metrics on a named subset of the pool, against torch fp32).

Everything is cached under ``output_dir`` and reused while its inputs are unchanged (model files, data,
settings): trained models (``models/``), embeddings (``embeddings/*.npy``, keyed by a hash of the model,
data, languages, prompts and backend) and every experiment (``*.json`` with a ``.inputs.json`` record).
The markdown section in ``doc`` (between the ``efficiency`` markers, the text around them is kept) and the
plots are rewritten after each model's results land, so an interrupted run leaves partial tables.

Usage:
    python examples/research/efficiency.py --config examples/configs/research_efficiency_cpu.yaml --model PATH
    python examples/research/efficiency.py --config ... --experiments layouts,compression
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402  (examples/train.py, the single-run entry point)

from st_hybrid import metrics, serving  # noqa: E402
from st_hybrid.io import cached_json, content_hash, path_fingerprint, write_json, write_text  # noqa: E402

logger = logging.getLogger("st_hybrid.research.efficiency")

EXPERIMENTS = ("layouts", "compression", "scale", "throughput")
BACKENDS = ("torch-fp32", "torch-bf16", "torch-int8", "onnx", "onnx-int8", "openvino")
EXACT_METRICS = ("mono_map", "cross_map", "multi_map", "rank_distance", "multi_ndcg@10", "multi_recall@100")
BEGIN, END = "<!-- efficiency:begin (generated; edit outside these markers) -->", "<!-- efficiency:end -->"


@dataclass
class Settings:
    """The experiment's settings (the keys of ``examples/configs/research_efficiency_*.yaml``)."""

    train_config: str = "examples/configs/reproduce_cpu.yaml"  # budget, data and optimizer of trained models
    strategies: list[str] = field(default_factory=lambda: ["mono", "cross", "hybrid"])
    seed: int = 1
    eval_data: str = "../shared/data/xquad-r"
    eval_name: str = "xquad-r"
    eval_languages: list[str] | None = None
    eval_max_articles: int | None = None  # None: the full pool
    encode_batch_size: int = 64
    device: str | None = None  # torch device of the encoders; None: sentence-transformers' choice
    depth: int = 100  # length of the searched top-k lists
    layouts: list[str] = field(
        default_factory=lambda: [
            "shared:flat",
            "shared:hnsw",
            "per-language:flat:score",
            "per-language:flat:round_robin",
            "per-language:hnsw:round_robin",
        ]
    )
    compression: list[str] = field(
        default_factory=lambda: (
            [f"shared:{kind}" for kind in serving.INDEX_KINDS] + ["shared:int8", "shared:binary"]
        )
    )
    hnsw_m: int = 32
    ef_search: int = 128
    nprobe: int = 8
    rescore_multiplier: int = 4
    latency_single_queries: int = 300
    latency_batch_queries: int = 2000
    latency_repeats: int = 3
    scale_model: str = "hybrid"
    scale_copies: int = 5
    scale_noise: float = 0.02
    scale_setups: list[str] = field(
        default_factory=lambda: [
            "shared:flat",
            "shared:sq8",
            "shared:hnsw",
            "shared:ivf_flat",
            "shared:ivf_pq",
            "shared:int8",
            "shared:binary",
            "per-language:flat:score",
            "per-language:hnsw:round_robin",
        ]
    )
    throughput_model: str = "hybrid"
    throughput_texts: int = 512
    throughput_batch_size: int = 32
    throughput_repeats: int = 3
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    backend_quality_max_articles: int | None = 4
    experiments: list[str] = field(default_factory=lambda: list(EXPERIMENTS))
    output_dir: str = "outputs/research-efficiency"
    doc: str = "docs/research/efficiency.md"
    img_dir: str = "docs/research/img"
    command: str = "make research-efficiency"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.experiments) - set(EXPERIMENTS))
        if unknown:
            raise ValueError(f"Unknown experiments {unknown}; choose from {list(EXPERIMENTS)}.")
        unknown = sorted(set(self.backends) - set(BACKENDS))
        if unknown:
            raise ValueError(f"Unknown backends {unknown}; choose from {list(BACKENDS)}.")
        for spec in self.layouts + self.compression + self.scale_setups:
            parse_setup(spec)
        if self.depth < 10:
            raise ValueError(f"depth must be >= 10 (nDCG@10 is reported), got {self.depth}.")

    @property
    def index_options(self) -> dict[str, int]:
        return {"hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "nprobe": self.nprobe}


def load_settings(path: str | os.PathLike, **overrides: Any) -> Settings:
    """The YAML config as :class:`Settings`; an unknown key is an error naming the valid ones."""
    values = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{path} must hold a mapping of setting names to values.")
    valid = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise SystemExit(f"Unknown keys {unknown} in {path}. Valid keys: {sorted(valid)}.")
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return Settings(**values)
    except ValueError as err:
        raise SystemExit(f"{path}: {err}") from err


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="examples/configs/research_efficiency_*.yaml")
    parser.add_argument(
        "--model", help="base model (Hub id or local folder); overrides the training config's"
    )
    parser.add_argument("--output-dir", help="overrides the config's output_dir")
    parser.add_argument("--doc", help="overrides the config's doc (markdown file to write the tables into)")
    parser.add_argument("--experiments", help=f"comma-separated subset of {','.join(EXPERIMENTS)}")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Models and embeddings
# ---------------------------------------------------------------------------------------------
def train_arguments(settings: Settings, model: str | None, **cell: Any):
    """The training config's arguments, with the base model and one cell's overrides."""
    overrides = {"model": model} if model else {}
    return train.parse_args(["--config", settings.train_config], overrides={**overrides, **cell})


def trained_model(settings: Settings, model: str | None, strategy: str) -> Path:
    """Train one strategy at the config's budget (reused while its inputs are unchanged); its model folder."""
    folder = Path(settings.output_dir) / "models" / f"{strategy}-seed{settings.seed}"
    # The pool is evaluated here from cached embeddings, so training skips its own evaluations.
    cell = train_arguments(
        settings,
        model,
        strategy=strategy,
        seed=settings.seed,
        output_dir=str(folder),
        eval_data=None,
        evaluate_before=False,
    )
    if not (folder / "model" / "modules.json").exists():  # unfinished, or its model deleted
        (folder / "results.json").unlink(missing_ok=True)

    def fit() -> dict:
        cell.run.overwrite = True  # whatever the folder held is stale or unfinished
        return train.run(cell)

    cached_json(folder / "results.json", train.run_inputs(cell), fit, f"{strategy}-trained model")
    return folder / "model"


def build_evaluator(settings: Settings, base, max_articles: int | None):
    from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator

    return LanguageAwareRetrievalEvaluator.from_lareqa(
        settings.eval_data,
        languages=settings.eval_languages,
        max_articles=max_articles,
        name=settings.eval_name,
        query_prompt=base.model.query_prompt,
        corpus_prompt=base.model.passage_prompt,
        batch_size=settings.encode_batch_size,
        write_plot=False,
    )


def load_backend(
    model_path: str | os.PathLike,
    backend: str,
    scratch_dir: str | os.PathLike = ".",
    device: str | None = None,
):
    """A SentenceTransformer running ``backend``; raises ImportError when the backend is not installed.

    ``onnx-int8`` copies the model folder into ``scratch_dir`` and writes the dynamically quantized ONNX
    model there (sentence-transformers' ``export_dynamic_quantized_onnx_model``, AVX512-VNNI config). The ONNX /
    OpenVINO paths need optimum, which cannot be installed beside transformers 5 (see the doc): untested here.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    if backend in ("onnx", "onnx-int8", "openvino"):
        model = SentenceTransformer(str(model_path), backend=backend.split("-")[0], device="cpu")
        if backend == "onnx-int8":
            import shutil

            from sentence_transformers.backend import export_dynamic_quantized_onnx_model

            # Quantize in a copy of the model folder: writing into the model folder would change its fingerprint.
            scratch = Path(scratch_dir) / "onnx-int8"
            shutil.copytree(model_path, scratch, dirs_exist_ok=True)
            export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(scratch))
            model = SentenceTransformer(
                str(scratch),
                backend="onnx",
                device="cpu",
                model_kwargs={"file_name": str(next(scratch.rglob("*qint8*.onnx")).relative_to(scratch))},
            )
        return model
    model = SentenceTransformer(str(model_path), device=device)
    if backend == "torch-bf16":
        model = model.to(torch.bfloat16)
    elif backend == "torch-int8":
        # Dynamic int8 quantization of every Linear layer (weights int8, activations quantized on the fly).
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


def embedding_inputs(settings: Settings, base, model_path, max_articles, backend: str) -> dict[str, Any]:
    return {
        "model": path_fingerprint(model_path),
        "eval_data": path_fingerprint(settings.eval_data),
        "languages": settings.eval_languages,
        "max_articles": max_articles,
        "prompts": [base.model.query_prompt, base.model.passage_prompt],
        "backend": backend,
    }


def cached_embeddings(
    settings: Settings, base, evaluator, label: str, model_path, backend: str = "torch-fp32"
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(query, candidate embeddings, key)`` of the evaluator's pool, encoded once per model, data and backend."""
    inputs = embedding_inputs(settings, base, model_path, evaluator.pool.get("max_articles"), backend)
    key = content_hash(inputs)[:16]
    folder = Path(settings.output_dir) / "embeddings" / label
    files = {part: folder / f"{backend}-{key}-{part}.npy" for part in ("queries", "candidates")}
    if all(path.exists() for path in files.values()):
        logger.info("Reusing %s embeddings of %s (%s)", backend, label, key)
        return np.load(files["queries"]), np.load(files["candidates"]), key
    logger.info("Encoding the pool with %s (%s)", label, backend)
    model = load_backend(model_path, backend, device=settings.device)
    start = time.perf_counter()
    queries, candidates, _ = evaluator.embed(model)
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    for part, array in (("queries", queries), ("candidates", candidates)):
        partial = files[part].with_suffix(".partial.npy")
        np.save(partial, array)
        os.replace(partial, files[part])
    write_json(folder / f"{backend}-{key}.json", {**inputs, "encode_seconds": round(seconds, 1)})
    del model
    gc.collect()
    return queries, candidates, key


def relevant_lists(evaluator) -> list[list[int]]:
    return [row[row >= 0].tolist() for row in evaluator.layout.relevant]


def exact_metrics(evaluator, queries: np.ndarray, candidates: np.ndarray) -> dict[str, float]:
    """The evaluator's full-depth metrics (exact ranks over the whole pool) of these embeddings."""
    summary = metrics.summarize(
        evaluator.rank(queries, candidates),
        evaluator.layout,
        evaluator.query_languages,
        languages=evaluator.languages,
        settings=evaluator.settings,
        ndcg_at=(10,),
        recall_at=(1, 10, 100),
        mrr_at=(10,),
    )
    return {name: summary["metrics"][name] for name in EXACT_METRICS}


def describe_pool(evaluator) -> str:
    subset = evaluator.pool.get("max_articles")
    return (
        f"{len(evaluator.query_ids):,} queries x {len(evaluator.candidate_ids):,} candidates, "
        f"{len(evaluator.languages)} languages, "
        + (f"subset: first {subset} articles per language" if subset else "full pool")
    )


# ---------------------------------------------------------------------------------------------
# Serving setups
# ---------------------------------------------------------------------------------------------
def parse_setup(spec: str) -> tuple[str, str, str | None]:
    """``"shared:hnsw"`` / ``"shared:int8"`` / ``"per-language:flat:round_robin"`` -> (layout, kind, merge)."""
    parts = spec.split(":")
    kinds = (*serving.INDEX_KINDS, *serving.QuantizedIndex.PRECISIONS)
    if parts[0] == "shared" and len(parts) == 2 and parts[1] in kinds:
        return "shared", parts[1], None
    if (
        parts[0] == "per-language"
        and len(parts) == 3
        and parts[1] in serving.INDEX_KINDS
        and parts[2] in serving.MERGE_STRATEGIES
    ):
        return "per-language", parts[1], parts[2]
    raise ValueError(
        f"Bad setup {spec!r}: use 'shared:<kind>' with kind in {list(kinds)}, or "
        f"'per-language:<kind>:<merge>' with kind in {list(serving.INDEX_KINDS)} and merge in "
        f"{list(serving.MERGE_STRATEGIES)}."
    )


def build_setup(
    spec: str, corpus: np.ndarray, languages, settings: Settings
) -> tuple[Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], int]:
    """``(search function, bytes)`` of one serving setup over ``corpus``."""
    layout, kind, merge = parse_setup(spec)
    if kind in serving.QuantizedIndex.PRECISIONS:
        index = serving.QuantizedIndex(corpus, kind, rescore_multiplier=settings.rescore_multiplier)
        return index.search, index.nbytes()
    if layout == "per-language":
        index = serving.PerLanguageIndex(corpus, languages, kind, merge, **settings.index_options)
        return index.search, index.nbytes()
    index = serving.build_index(corpus, kind, **settings.index_options)
    return functools.partial(serving.search, index), serving.index_nbytes(index)


def latency_sample(num_queries: int, size: int) -> np.ndarray:
    """A fixed random sample of query rows (the pool is sorted by language; a prefix would be one language)."""
    return np.random.default_rng(0).permutation(num_queries)[: min(size, num_queries)]


def timed(search_fn, queries: np.ndarray, settings: Settings) -> dict[str, Any]:
    """Latency p50 / p95 (ms, one query at a time) and QPS (batched), median and range over the repeats."""
    reports = [
        serving.measure_latency(
            search_fn, queries, settings.depth, single_queries=settings.latency_single_queries
        )
        for _ in range(settings.latency_repeats)
    ]
    result = {}
    for name in ("p50_ms", "p95_ms", "qps"):
        values = [getattr(report, name) for report in reports]
        result[name] = statistics.median(values)
        result[f"{name}_range"] = [min(values), max(values)]
    return result


def evaluate_setups(specs, queries, candidates, languages, relevant, settings: Settings) -> list[dict]:
    """Quality (top-k lists of every query) and cost of each setup, one setup in memory at a time."""
    rows = []
    sample = queries[latency_sample(len(queries), settings.latency_batch_queries)]
    for spec in specs:
        start = time.perf_counter()
        search_fn, nbytes = build_setup(spec, candidates, languages, settings)
        build_seconds = time.perf_counter() - start
        _, ids = search_fn(queries, settings.depth)
        row = {"setup": spec, **serving.topk_quality(ids, relevant, settings.depth)}
        row.update(bytes=nbytes, build_s=build_seconds, **timed(search_fn, sample, settings))
        logger.info("%s: %s", spec, {k: v for k, v in row.items() if not k.endswith("range")})
        rows.append(row)
        del search_fn
        gc.collect()
    return rows


def ivf_language_purity(candidates: np.ndarray, languages, settings: Settings) -> float:
    """The language purity of the IVF cells: the summed size of each cell's majority language, over all candidates.

    1 when every cell holds one language; about 1/L when L balanced languages spread evenly over the cells.
    High purity means the coarse quantizer partitions the pool by language, so a query that probes a few
    cells misses the answers in other languages.
    """
    index = serving.build_index(candidates, "ivf_flat", **settings.index_options)
    cells = index.quantizer.search(np.ascontiguousarray(candidates, dtype=np.float32), 1)[1][:, 0]
    languages = np.asarray(languages)
    majority = 0
    for cell in np.unique(cells):
        majority += np.unique(languages[cells == cell], return_counts=True)[1].max()
    return float(majority / len(candidates))


def synthetic_pool(candidates: np.ndarray, copies: int, noise: float, seed: int = 0) -> np.ndarray:
    """The real candidates plus ``copies`` noisy copies (Gaussian noise per dimension, renormalized)."""
    rng = np.random.default_rng(seed)
    parts = [candidates]
    for _ in range(copies):
        noisy = candidates + noise * rng.standard_normal(candidates.shape, dtype=np.float32)
        parts.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)


def scale_experiment(queries, candidates, languages, settings: Settings) -> dict:
    """Cost on a larger synthetic pool, and how many of the exact top 10 each setup finds (overlap@10)."""
    pool = synthetic_pool(candidates, settings.scale_copies, settings.scale_noise)
    pool_languages = np.tile(np.asarray(languages), settings.scale_copies + 1)
    sample = queries[latency_sample(len(queries), settings.latency_batch_queries)]
    exact_ids = serving.search(serving.build_index(pool, "flat"), sample, 10)[1]
    rows = []
    for spec in settings.scale_setups:
        start = time.perf_counter()
        search_fn, nbytes = build_setup(spec, pool, pool_languages, settings)
        build_seconds = time.perf_counter() - start
        ids = search_fn(sample, 10)[1]
        overlap = float(
            np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids.tolist(), ids.tolist())])
        )
        rows.append(
            {"setup": spec, "overlap@10": overlap, "bytes": nbytes, "build_s": build_seconds}
            | timed(search_fn, sample, settings)
        )
        logger.info("scale %s: %s", spec, rows[-1])
        del search_fn
        gc.collect()
    return {"num_vectors": len(pool), "dim": int(pool.shape[1]), "rows": rows}


# ---------------------------------------------------------------------------------------------
# Encode throughput
# ---------------------------------------------------------------------------------------------
def throughput_experiment(settings: Settings, base, model_path, texts: list[str], quality_evaluator) -> list:
    """Texts/s per backend and the metrics it keeps on the quality subset, against torch fp32."""
    rows, reference = [], None
    for backend in settings.backends:
        try:
            model = load_backend(model_path, backend, Path(settings.output_dir) / "backends", settings.device)
        except Exception as err:  # a backend that is not installed here is reported, not fatal
            logger.warning("Backend %s skipped: %s", backend, err)
            rows.append({"backend": backend, "skipped": f"{type(err).__name__}: {str(err).splitlines()[0]}"})
            continue
        prompt = base.model.passage_prompt
        encode = functools.partial(
            model.encode_document,
            prompt=prompt,
            batch_size=settings.throughput_batch_size,
            convert_to_numpy=True,
        )
        encode(texts[: settings.throughput_batch_size])  # warm-up
        speeds = []
        for _ in range(settings.throughput_repeats):
            start = time.perf_counter()
            encode(texts)
            speeds.append(len(texts) / (time.perf_counter() - start))
        queries, candidates, _ = quality_evaluator.embed(model)
        quality = exact_metrics(quality_evaluator, queries, candidates)
        row = {
            "backend": backend,
            "texts_per_s": statistics.median(speeds),
            "texts_per_s_range": [min(speeds), max(speeds)],
            **quality,
        }
        if reference is None:
            reference = {"row": row, "candidates": candidates}
        else:
            deltas = [
                abs(row[name] - reference["row"][name]) for name in EXACT_METRICS if name != "rank_distance"
            ]
            row["max_metric_delta"] = max(deltas)
            row["min_cosine_to_reference"] = float(
                np.min(np.sum(candidates * reference["candidates"], axis=1))
            )
        rows.append(row)
        logger.info("throughput %s: %s", backend, row)
        del model
        gc.collect()
    return rows


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def machine() -> str:
    """The host in words: what latency and throughput figures depend on."""
    import faiss
    import torch

    return (
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads, faiss {faiss.__version__} with {faiss.omp_get_max_threads()} threads"
    )


def model_labels(settings: Settings) -> list[str]:
    return ["zero-shot", *settings.strategies]


def _search_inputs(settings) -> dict:
    """The settings every cached search result depends on (index options, rescoring, latency sampling)."""
    return {
        "index": settings.index_options,
        "rescore_multiplier": settings.rescore_multiplier,
        "latency": [
            settings.latency_single_queries,
            settings.latency_batch_queries,
            settings.latency_repeats,
        ],
    }


def run(settings: Settings, model: str | None = None) -> dict:
    """Every experiment for every model; results cached; the doc and plots rewritten as results land."""
    root = Path(settings.output_dir)
    base = train_arguments(settings, model)
    evaluator = build_evaluator(settings, base, settings.eval_max_articles)
    relevant = relevant_lists(evaluator)
    languages = np.asarray(evaluator.candidate_languages)
    results: dict[str, Any] = {
        "settings": asdict(settings),
        "pool": describe_pool(evaluator),
        "num_queries": len(evaluator.query_ids),
        "num_candidates": len(evaluator.candidate_ids),
        "languages": list(evaluator.languages),
        "train": {k: v for k, v in base.options().items() if k in ("max_seq_length", "freeze_embeddings")}
        | {
            "max_steps": base.training.max_steps,
            "batch_size": base.training.per_device_train_batch_size,
            "learning_rate": base.training.learning_rate,
            "train_data": base.data.train_data,
            "alpha": base.batches.alpha,
        },
        "machine": machine(),
        "models": {},
    }
    model_paths, embeddings, keys = {}, {}, {}
    for label in model_labels(settings):
        path = Path(base.model.model) if label == "zero-shot" else trained_model(settings, model, label)
        model_paths[label] = path
        queries, candidates, key = cached_embeddings(settings, base, evaluator, label, path)
        embeddings[label], keys[label] = (queries, candidates), key
        entry = results["models"].setdefault(label, {"path": str(path)})
        entry["exact"] = cached_json(
            root / "exact" / f"{label}.json",
            {"embeddings": key, "metrics": EXACT_METRICS},
            lambda q=queries, c=candidates: exact_metrics(evaluator, q, c),
            f"exact metrics of {label}",
        )
        entry["ivf_purity"] = cached_json(
            root / "ivf_purity" / f"{label}.json",
            {"embeddings": key, "index": settings.index_options},
            lambda c=candidates: ivf_language_purity(c, languages, settings),
            f"IVF cell language purity of {label}",
        )
        for experiment in ("layouts", "compression"):
            if experiment not in settings.experiments:
                continue
            specs = getattr(settings, experiment)
            inputs = {
                "embeddings": key,
                "specs": specs,
                "depth": settings.depth,
                **_search_inputs(settings),
            }
            entry[experiment] = cached_json(
                root / experiment / f"{label}.json",
                inputs,
                lambda s=specs, q=queries, c=candidates: evaluate_setups(
                    s, q, c, languages, relevant, settings
                ),
                f"{experiment} of {label}",
            )
        report(results, settings)

    if "scale" in settings.experiments and settings.scale_model in embeddings:
        queries, candidates = embeddings[settings.scale_model]
        inputs = {
            "embeddings": keys[settings.scale_model],
            "specs": settings.scale_setups,
            "copies": settings.scale_copies,
            "noise": settings.scale_noise,
            **_search_inputs(settings),
        }
        results["scale"] = cached_json(
            root / "scale.json",
            inputs,
            lambda: scale_experiment(queries, candidates, languages, settings),
            "scale experiment",
        )
        report(results, settings)

    if "throughput" in settings.experiments and settings.throughput_model in model_paths:
        path = model_paths[settings.throughput_model]
        quality_evaluator = build_evaluator(settings, base, settings.backend_quality_max_articles)
        texts = [
            evaluator.candidate_texts[i]
            for i in latency_sample(len(evaluator.candidate_texts), settings.throughput_texts)
        ]
        inputs = {
            "model": path_fingerprint(path),
            "backends": settings.backends,
            "texts": content_hash(texts),
            "batch_size": settings.throughput_batch_size,
            "repeats": settings.throughput_repeats,
            "quality_pool": embedding_inputs(
                settings, base, path, settings.backend_quality_max_articles, "*"
            ),
        }
        results["throughput"] = {
            "num_texts": len(texts),
            "quality_pool": describe_pool(quality_evaluator),
            "rows": cached_json(
                root / "throughput.json",
                inputs,
                lambda: throughput_experiment(settings, base, path, texts, quality_evaluator),
                "encode throughput",
            ),
        }
        report(results, settings)
    write_json(root / "efficiency.json", results)
    return results


# ---------------------------------------------------------------------------------------------
# Report: markdown tables and plots
# ---------------------------------------------------------------------------------------------
def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.2f}"


def _spread(row: dict, name: str, digits: int) -> str:
    low, high = row[f"{name}_range"]
    return f"{row[name]:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def exact_table(results: dict) -> str:
    lines = [
        "| model | mono mAP | cross mAP | multi mAP | rank distance | multi nDCG@10 | multi recall@100 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, entry in results["models"].items():
        values = entry["exact"]
        cells = [
            f"{values[name]:.1f}" if name == "rank_distance" else f"{values[name]:.4f}"
            for name in EXACT_METRICS
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def setups_table(results: dict, experiment: str, depth: int) -> str:
    """One row per model and setup; retention (%) against each model's exact shared Flat index."""
    lines = [
        f"| model | setup | mAP@{depth} | nDCG@10 | recall@{depth} | rank distance@{depth} | mAP vs Flat | nDCG vs Flat "
        "| MiB | build s | p50 ms (range) | p95 ms | QPS (range) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, entry in results["models"].items():
        rows = entry.get(experiment)
        if not rows:
            continue
        reference = next((r for r in rows if r["setup"] == "shared:flat"), rows[0])
        for row in rows:
            kept_map = 100 * row[f"map@{depth}"] / reference[f"map@{depth}"]
            kept_ndcg = 100 * row["ndcg@10"] / reference["ndcg@10"]
            lines.append(
                f"| {label} | {row['setup']} | {row[f'map@{depth}']:.4f} | {row['ndcg@10']:.4f} | "
                f"{row[f'recall@{depth}']:.4f} | {row[f'rank_distance@{depth}']:.1f} | {kept_map:.1f}% | "
                f"{kept_ndcg:.1f}% | {_mib(row['bytes'])} | {row['build_s']:.1f} | {_spread(row, 'p50_ms', 3)} | "
                f"{row['p95_ms']:.3f} | {_spread(row, 'qps', 0)} |"
            )
    return "\n".join(lines)


def retention_table(results: dict, depth: int) -> str:
    """Compression robustness at a glance per setup (rows) and model (columns): mAP and recall kept, rank distance change."""
    labels = [label for label, entry in results["models"].items() if entry.get("compression")]
    if not labels:
        return ""
    specs = [row["setup"] for row in results["models"][labels[0]]["compression"]]
    lines = ["| setup | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for spec in specs:
        cells = []
        for label in labels:
            rows = {row["setup"]: row for row in results["models"][label]["compression"]}
            reference = rows.get("shared:flat")
            if spec in rows and reference:
                row = rows[spec]
                cells.append(
                    f"{100 * row[f'map@{depth}'] / reference[f'map@{depth}']:.1f}% / "
                    f"{100 * row[f'recall@{depth}'] / reference[f'recall@{depth}']:.1f}% / "
                    f"{row[f'rank_distance@{depth}'] - reference[f'rank_distance@{depth}']:+.1f}"
                )
            else:
                cells.append("")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scale_table(scale: dict) -> str:
    lines = [
        "| setup | overlap@10 with exact | MiB | build s | p50 ms (range) | p95 ms | QPS (range) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in scale["rows"]:
        lines.append(
            f"| {row['setup']} | {row['overlap@10']:.3f} | {_mib(row['bytes'])} | {row['build_s']:.1f} | "
            f"{_spread(row, 'p50_ms', 3)} | {row['p95_ms']:.3f} | {_spread(row, 'qps', 0)} |"
        )
    return "\n".join(lines)


def throughput_table(throughput: dict) -> str:
    lines = [
        "| backend | texts/s (range) | mono mAP | cross mAP | multi mAP | rank distance | max metric delta vs fp32 "
        "| within 1e-4 | min cosine to fp32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in throughput["rows"]:
        if "skipped" in row:
            lines.append(f"| {row['backend']} | skipped: {row['skipped']} |" + " |" * 7)
            continue
        delta = row.get("max_metric_delta")
        lines.append(
            f"| {row['backend']} | {_spread(row, 'texts_per_s', 1)} | {row['mono_map']:.4f} | "
            f"{row['cross_map']:.4f} | {row['multi_map']:.4f} | {row['rank_distance']:.1f} | "
            + (
                f"{delta:.2e} | {'yes' if delta <= 1e-4 else 'no'} | {row['min_cosine_to_reference']:.6f} |"
                if delta is not None
                else "reference | | |"
            )
        )
    return "\n".join(lines)


def render(results: dict, settings: Settings) -> str:
    depth, train_setup = settings.depth, results["train"]
    parts = [
        f"Command: `{settings.command}` (outputs and caches in `{settings.output_dir}`). Machine: {results['machine']}. "
        f"Evaluation pool: {settings.eval_name}, {results['pool']}. Trained models: "
        f"{', '.join(settings.strategies)}, seed {settings.seed}, {train_setup['max_steps']} steps x "
        f"{train_setup['batch_size']} pairs of {', '.join(Path(p).name for p in train_setup['train_data'])} "
        f"(lr {train_setup['learning_rate']:g}, alpha {train_setup['alpha']:g} for hybrid), from "
        f"`{settings.train_config}`.",
        "### Exact search (full depth, the evaluator's metrics)\n\n" + exact_table(results),
    ]
    latency = (
        f"Latency: one query at a time over {settings.latency_single_queries} sampled queries (p50 / p95), "
        f"QPS over {settings.latency_batch_queries} sampled queries in one batch; median over "
        f"{settings.latency_repeats} repeats, range in brackets. Top-{depth} lists; "
        f"mAP / nDCG vs Flat = the setup's value / the same model's exact shared Flat value."
    )
    if any(entry.get("layouts") for entry in results["models"].values()):
        parts.append(
            "### Shared index vs per-language indexes\n\n"
            + latency
            + "\n\n"
            + setups_table(results, "layouts", depth)
        )
    if any(entry.get("compression") for entry in results["models"].values()):
        parts.append(
            "### Compressed indexes\n\n" + latency + "\n\n" + setups_table(results, "compression", depth)
        )
        parts.append(
            f"Retention at a glance: mAP@{depth} kept / recall@{depth} kept / change in rank distance@{depth}, "
            "against each model's exact Flat index:\n\n" + retention_table(results, depth)
        )
        purity = {
            label: entry["ivf_purity"] for label, entry in results["models"].items() if "ivf_purity" in entry
        }
        parts.append(
            "IVF cell language purity (the share of candidates that belong to their cell's majority language; "
            f"{1 / len(set(results['languages'])):.2f} if the {len(set(results['languages']))} languages were "
            "spread evenly over the cells, 1 if every cell held one language): "
            + ", ".join(f"{label} {value:.3f}" for label, value in purity.items())
            + "."
        )
    if results.get("scale"):
        scale = results["scale"]
        parts.append(
            f"### Latency on a larger synthetic pool ({scale['num_vectors']:,} vectors x {scale['dim']})\n\n"
            f"The {settings.scale_model} model's {results['num_candidates']:,} candidate embeddings plus "
            f"{settings.scale_copies} noisy copies (Gaussian noise sigma {settings.scale_noise:g} per dimension, "
            f"renormalized); per-language setups give each copy its source's language. Quality here is only "
            f"the overlap with the exact top 10 (the copies have no relevance labels; a round-robin merge "
            f"changes the list by design, so its overlap is not a recall). Top-{depth} lists for latency.\n\n"
            + scale_table(scale)
        )
    if results.get("throughput"):
        throughput = results["throughput"]
        parts.append(
            f"### Encode throughput ({settings.throughput_model} model)\n\n"
            f"Texts/s encoding {throughput['num_texts']} sampled candidate passages (batch "
            f"{settings.throughput_batch_size}, median of {settings.throughput_repeats} repeats, range in "
            f"brackets). Quality columns: the evaluator's metrics on {settings.eval_name} "
            f"{throughput['quality_pool']}, encoded with that backend.\n\n" + throughput_table(throughput)
        )
    images = [
        name
        for name in ("layouts", "compression", "throughput")
        if (Path(settings.img_dir) / f"efficiency_{name}.png").exists()
    ]
    doc_dir = Path(settings.doc).resolve().parent
    for name in images:
        relative = os.path.relpath(Path(settings.img_dir).resolve() / f"efficiency_{name}.png", doc_dir)
        parts.append(f"![{name}]({relative})")
    return "\n\n".join(parts)


def write_doc(path: Path, section: str) -> None:
    """Replace the generated section of ``path`` (between the markers); keep everything around it."""
    block = f"{BEGIN}\n\n{section}\n\n{END}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Inference efficiency\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text(path, text)


def plot(results: dict, settings: Settings) -> None:
    """Per experiment: mAP@depth of each setup per model (bars), and mAP@depth against p50 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    depth, img = settings.depth, Path(settings.img_dir)
    img.mkdir(parents=True, exist_ok=True)
    models = {label: entry for label, entry in results["models"].items()}
    markers = "osD^vP*X"
    for experiment in ("layouts", "compression"):
        landed = {label: entry[experiment] for label, entry in models.items() if entry.get(experiment)}
        if not landed:
            continue
        specs = [row["setup"] for row in next(iter(landed.values()))]
        colors = {label: f"C{index}" for index, label in enumerate(models)}
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
        width = 0.8 / len(landed)
        for offset, (label, rows) in enumerate(landed.items()):
            by_setup = {row["setup"]: row for row in rows}
            values = [by_setup[spec][f"map@{depth}"] if spec in by_setup else np.nan for spec in specs]
            positions = np.arange(len(specs)) + (offset - (len(landed) - 1) / 2) * width
            axes[0].bar(positions, values, width, color=colors[label], label=label)
            for marker, spec in zip(markers, specs):
                if spec in by_setup:
                    row = by_setup[spec]
                    axes[1].scatter(
                        row["p50_ms"], row[f"map@{depth}"], color=colors[label], marker=marker, s=45
                    )
        axes[0].set_xticks(range(len(specs)), specs, rotation=25, ha="right", fontsize=8)
        axes[0].set_ylabel(f"multi mAP@{depth}")
        axes[0].set_title(f"{experiment}: quality per setup and model")
        axes[0].legend(fontsize=8)
        axes[1].set_xlabel("p50 latency per query (ms, one query at a time)")
        axes[1].set_ylabel(f"multi mAP@{depth}")
        axes[1].set_title("quality vs latency (colour = model, marker = setup)")
        handles = [
            Line2D([], [], color="gray", marker=m, linestyle="", label=spec)
            for m, spec in zip(markers, specs)
        ]
        axes[1].legend(handles=handles, fontsize=7)
        fig.tight_layout()
        fig.savefig(img / f"efficiency_{experiment}.png", dpi=110)
        plt.close(fig)
    rows = [row for row in (results.get("throughput") or {}).get("rows", []) if "skipped" not in row]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        speeds = [row["texts_per_s"] for row in rows]
        errors = np.array(
            [
                [s - row["texts_per_s_range"][0], row["texts_per_s_range"][1] - s]
                for s, row in zip(speeds, rows)
            ]
        ).T
        ax.bar([row["backend"] for row in rows], speeds, yerr=errors, capsize=4, color="tab:blue")
        ax.set_ylabel("texts / s")
        ax.set_title("encode throughput (range over repeats)")
        fig.tight_layout()
        fig.savefig(img / "efficiency_throughput.png", dpi=110)
        plt.close(fig)


def report(results: dict, settings: Settings) -> None:
    """Plots, then the generated section of the doc, from whatever results have landed so far."""
    plot(results, settings)
    write_doc(Path(settings.doc), render(results, settings))
    write_json(Path(settings.output_dir) / "efficiency.json", results)
    logger.info("Wrote %s", settings.doc)


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    experiments = args.experiments.split(",") if args.experiments else None
    settings = load_settings(args.config, output_dir=args.output_dir, doc=args.doc, experiments=experiments)
    start = time.perf_counter()
    results = run(settings, args.model)
    logger.info("Done in %.1f min", (time.perf_counter() - start) / 60)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
