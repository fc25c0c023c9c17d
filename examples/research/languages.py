"""Research answers on languages (issue 11): training languages 2 -> 113, pools of growing size, language weighting.

One command answers three questions and writes ``docs/research/languages.md`` with its tables and plots:

* **Q1, training languages.** For each count ``L`` of training languages and each strategy (mono, cross,
  hybrid; same budget, base model and seeds) a model is trained and evaluated, beside the zero-shot base model.
  ``L`` up to the number of MLQA-R languages takes the first ``L`` MLQA-R languages (question/answer pairs:
  mono and cross-lingual). Beyond, MLQA-R's languages are kept and the train side of the Tatoeba split
  (:func:`st_hybrid.data.split_tatoeba`: bitext paired with English, cross-lingual pairs only) adds languages
  until ``L`` distinct languages train (Tatoeba codes of MLQA-R languages count once: ``deu`` is ``de``).
  Bitext has no same-language pairs, so ``mono`` beyond the MLQA-R languages trains on exactly the MLQA-R
  data: it is the same model and is trained once. Hybrid treats all data as one source
  (``--single_source``), so alpha of its steps stay monolingual whatever ``L`` is. Evaluations: XQuAD-R
  (mono / cross / multi mAP, rank distance, seen and unseen languages apart) and the held-out side of the
  Tatoeba split as one mixed pool in both directions around English (mAP, rank distance, nDCG@10 and
  XTREME-R's accuracy@1 averaged over English->X and X->English).
* **Q2, pool size.** The same evaluations compute nested language pools (XQuAD-R 1, 2, 4, 8, 11 languages;
  Tatoeba English plus 1, 2, 4, ..., 112 languages) from one encoding per model; the multilingual nDCG@10
  and mAP against the number of pool languages, one line per model (zero-shot, mono, cross, hybrid, and
  hybrid merged with its base at ``merge_ratio``), with the least-squares slope per doubling of the pool.
* **Language weighting.** The sampler's epoch plan on the 112-language Tatoeba train side (no training):
  the share of batches per language under uniform / size / temperature weighting.

Every result is cached (``st_hybrid.io.cached_json``: a trained cell, each evaluation, the sampler plan) and
reused only while its inputs are unchanged, so the command resumes after an interruption; the markdown and
plots are rewritten after every cell, so a cut-off run leaves its partial tables. The block between
``<!-- answers -->`` and ``<!-- /answers -->`` of an existing ``languages.md`` (the written answers) is kept.

Usage:
    python examples/research/languages.py --config examples/configs/research_languages_cpu.yaml --model PATH
    python examples/research/languages.py --config ... --counts 2,7 --strategies hybrid --seeds 1,2,3

Writes ``<docs-dir>/languages.md``, ``<docs-dir>/img/languages_{q1,q2,sampler}.png`` and, under the config's
``output_dir``, every cell (model, caches) and ``languages.json`` (all numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402  (examples/train.py, the single-run entry point)

from st_hybrid.io import cached_json, content_hash, path_fingerprint, write_json, write_text  # noqa: E402

logger = logging.getLogger("st_hybrid.research.languages")

#: Tatoeba (ISO 639-3) codes of the languages that MLQA-R and XQuAD-R write in ISO 639-1.
TATOEBA_TO_ISO = {
    "ara": "ar",
    "cmn": "zh",
    "deu": "de",
    "ell": "el",
    "eng": "en",
    "hin": "hi",
    "rus": "ru",
    "spa": "es",
    "tha": "th",
    "tur": "tr",
    "vie": "vi",
}
STRATEGIES = ("mono", "cross", "hybrid")
ANSWERS_START, ANSWERS_END = "<!-- answers -->", "<!-- /answers -->"


def iso(code: str) -> str:
    """One code per language across MLQA-R, XQuAD-R and Tatoeba."""
    return TATOEBA_TO_ISO.get(code, code)


@dataclasses.dataclass
class ResearchConfig:
    """The ``research:`` section of the config (the ``train:`` section holds examples/train.py options)."""

    mlqa: str = "../shared/data/mlqa-r"
    mlqa_languages: list[str] = dataclasses.field(
        default_factory=lambda: ["en", "de", "es", "ar", "hi", "vi", "zh"]
    )
    tatoeba: str = "../shared/data/tatoeba"
    counts: list[int] = dataclasses.field(default_factory=lambda: [2, 4, 7, 30, 60, 113])
    strategies: list[str] = dataclasses.field(default_factory=lambda: list(STRATEGIES))
    seeds: list[int] = dataclasses.field(default_factory=lambda: [1])
    merge_ratio: float | None = 0.5
    q2_count: int | None = None  # the training-language count of the Q2 lines; the largest count by default
    xquad: str = "../shared/data/xquad-r"
    xquad_languages: list[str] = dataclasses.field(
        default_factory=lambda: ["en", "de", "es", "ar", "hi", "vi", "zh", "el", "ru", "th", "tr"]
    )
    xquad_max_articles: int | None = None
    xquad_pools: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8, 11])
    tatoeba_max_per_language: int | None = None
    tatoeba_pools: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 112])
    weightings: list[dict] = dataclasses.field(
        default_factory=lambda: [
            {"language_weighting": "uniform"},
            {"language_weighting": "size"},
            {"language_weighting": "temperature", "temperature": 2.0},
            {"language_weighting": "temperature", "temperature": 5.0},
        ]
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.strategies) - set(STRATEGIES))
        if unknown:
            raise ValueError(f"research.strategies {unknown} are unknown: choose from {list(STRATEGIES)}.")
        if any(count < 2 for count in self.counts):
            raise ValueError(f"research.counts {self.counts}: every count needs at least 2 languages.")
        if self.merge_ratio is not None and not 0 < self.merge_ratio < 1:
            raise ValueError(
                f"research.merge_ratio must lie strictly between 0 and 1, got {self.merge_ratio}."
            )


def load_config(path: str | Path) -> tuple[dict[str, Any], ResearchConfig]:
    """The ``train:`` options and the :class:`ResearchConfig` of a research YAML file."""
    values = yaml.safe_load(Path(path).read_text()) or {}
    unknown = sorted(set(values) - {"train", "research"})
    if unknown:
        raise SystemExit(
            f"{path}: unknown sections {unknown}; a research config has 'train:' and 'research:'."
        )
    research = values.get("research") or {}
    known = {f.name for f in dataclasses.fields(ResearchConfig)}
    bad = sorted(set(research) - known)
    if bad:
        raise SystemExit(f"{path}: unknown research keys {bad}; valid keys: {sorted(known)}.")
    return dict(values.get("train") or {}), ResearchConfig(**research)


def _csv(kind):
    return lambda text: [kind(item) for item in text.split(",") if item]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", required=True, help="research YAML (examples/configs/research_languages_*.yaml)"
    )
    parser.add_argument("--model", help="base model (Hub id or local folder); overrides the config")
    parser.add_argument("--counts", type=_csv(int), help="training-language counts (overrides the config)")
    parser.add_argument("--strategies", type=_csv(str), help="strategies (overrides the config)")
    parser.add_argument("--seeds", type=_csv(int), help="seeds (overrides the config)")
    parser.add_argument("--output-dir", help="cells and caches (overrides the config's output_dir)")
    parser.add_argument("--docs-dir", default="docs/research", help="where languages.md and img/ go")
    parser.add_argument(
        "--skip-sampler", action="store_true", help="leave out the language-weighting statistics"
    )
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Training data per language count
# ---------------------------------------------------------------------------------------------
def tatoeba_order(path: str | Path) -> list[str]:
    """Tatoeba's languages, most sentence pairs first (ties by code): low-resource languages join last."""
    from st_hybrid.data import available_languages

    languages = [code for code in available_languages(path) if code != "eng"]
    sizes = {code: _line_count(Path(path) / f"tatoeba.{code}-eng.{code}") for code in languages}
    return sorted(languages, key=lambda code: (-sizes[code], code))


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def training_languages(count: int, config: ResearchConfig, order: Sequence[str]) -> dict[str, Any]:
    """The data of ``count`` training languages: MLQA-R's first ones, then Tatoeba bitext (see the module docs).

    Returns:
        ``{"mlqa": [...], "tatoeba": [...], "languages": [...]}``, ``languages`` the distinct ISO codes.
    """
    mlqa = list(config.mlqa_languages)
    if count <= len(mlqa):
        return {"mlqa": mlqa[:count], "tatoeba": [], "languages": sorted(mlqa[:count])}
    distinct = {iso(code) for code in mlqa} | {"en"}  # English is the other side of every Tatoeba pair
    chosen = [code for code in order if iso(code) in distinct]  # MLQA-R languages' bitext first
    for code in order:
        if len(distinct) >= count:
            break
        if code not in chosen:
            chosen.append(code)
            distinct.add(iso(code))
    if len(distinct) < count:
        raise SystemExit(f"research.counts: {count} languages asked for, the data has {len(distinct)}.")
    return {"mlqa": mlqa, "tatoeba": chosen, "languages": sorted(distinct)}


@dataclasses.dataclass
class Cell:
    """One trained model of the grid."""

    count: int
    strategy: str
    seed: int
    data: dict[str, Any]
    folder: Path
    same_as: int | None = None  # mono beyond MLQA-R: the count whose data it trains on

    @property
    def label(self) -> str:
        return f"L={self.count} {self.strategy}"


def plan_cells(config: ResearchConfig, order: Sequence[str], root: Path) -> list[Cell]:
    """Every (count, strategy, seed), mono beyond MLQA-R mapped onto the MLQA-R-only cell it equals."""
    cells = []
    mlqa_count = len(config.mlqa_languages)
    counts = sorted(set(config.counts))
    for count in [counts[0], *counts[1:][-1:], *counts[1:-1]]:  # the extremes first: a cut-off run keeps them
        for strategy in config.strategies:
            effective = mlqa_count if strategy == "mono" and count > mlqa_count else count
            for seed in config.seeds:
                cells.append(
                    Cell(
                        count=count,
                        strategy=strategy,
                        seed=seed,
                        data=training_languages(effective, config, order),
                        folder=root / f"{strategy}_L{effective}" / f"seed{seed}",
                        same_as=effective if effective != count else None,
                    )
                )
    return cells


def cell_overrides(cell: Cell, config: ResearchConfig) -> dict[str, Any]:
    """examples/train.py options of one cell (on top of the config's ``train:`` section)."""
    data = cell.data
    overrides = {
        "strategy": cell.strategy,
        "seed": cell.seed,
        "train_data": [config.mlqa],
        "train_languages": list(data["mlqa"]),
        "eval_data": None,  # evaluated here, with the pools
        "evaluate_before": False,
        "output_dir": str(cell.folder),
    }
    if data["tatoeba"]:
        overrides.update(
            train_data=[config.mlqa, config.tatoeba],
            train_languages=[*data["mlqa"], *data["tatoeba"]],
            tatoeba_split="train",
            single_source=True,
        )
    return overrides


def describe_data(data: dict[str, Any]) -> str:
    text = f"MLQA-R {','.join(data['mlqa'])}"
    if data["tatoeba"]:
        text += f" + Tatoeba train side, {len(data['tatoeba'])} languages"
    return text


# ---------------------------------------------------------------------------------------------
# Evaluations: one encoding per model and evaluator, every pool from it
# ---------------------------------------------------------------------------------------------
def build_evaluators(base, config: ResearchConfig, order: Sequence[str]) -> dict[str, tuple[Any, dict]]:
    """name -> (evaluator, the inputs that define it): XQuAD-R and the Tatoeba held-out pool both ways."""
    from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator

    common = {
        "query_prompt": base.model.query_prompt,
        "corpus_prompt": base.model.passage_prompt,
        "batch_size": base.evaluation.eval_batch_size,
    }
    xquad_languages = list(config.xquad_languages)
    xquad_pools = [xquad_languages[:n] for n in config.xquad_pools if n <= len(xquad_languages)]
    tatoeba_pools = [["eng", *order[:n]] for n in config.tatoeba_pools if n <= len(order)]
    pairs = [["eng", code] for code in order]  # English->X accuracy@1: X's sentences as the pool
    split = {
        "max_per_language": config.tatoeba_max_per_language,
        "test_fraction": base.data.tatoeba_test_fraction,
        "split_seed": base.data.tatoeba_split_seed,
    }
    evaluators = {
        "xquad-r": LanguageAwareRetrievalEvaluator.from_lareqa(
            config.xquad,
            languages=xquad_languages,
            max_articles=config.xquad_max_articles,
            name="xquad-r",
            pools=xquad_pools,
            **common,
        ),
        "tatoeba-eng-x": LanguageAwareRetrievalEvaluator.from_tatoeba(
            config.tatoeba,
            direction="eng-x",
            languages=order,
            pools=tatoeba_pools + pairs,
            mrr_at_k=(1, 10),
            **split,
            **common,
        ),
        "tatoeba-x-eng": LanguageAwareRetrievalEvaluator.from_tatoeba(
            config.tatoeba, direction="x-eng", languages=order, mrr_at_k=(1, 10), **split, **common
        ),
    }
    specs = {
        "xquad-r": {"data": path_fingerprint(config.xquad), "languages": xquad_languages,
                    "max_articles": config.xquad_max_articles, "pools": xquad_pools},
        "tatoeba-eng-x": {"data": path_fingerprint(config.tatoeba), "pools": tatoeba_pools + pairs, **split},
        "tatoeba-x-eng": {"data": path_fingerprint(config.tatoeba), "languages": list(order), **split},
    }  # fmt: skip
    return {
        name: (evaluator, {**specs[name], **common, "max_seq_length": base.evaluation.eval_max_seq_length})
        for name, evaluator in evaluators.items()
    }


def evaluate(
    load_model, identity: dict, evaluators: dict, folder: Path, label: str, counter: dict | None = None
) -> dict[str, dict]:
    """Every evaluator's report of one model, each cached while the model and the evaluator are unchanged.

    The model is loaded only when an evaluation is not cached; ``counter["evaluations"]`` counts the computed ones.
    """
    model = None
    reports = {}
    for name, (evaluator, spec) in evaluators.items():

        def compute(evaluator=evaluator):
            nonlocal model
            if counter is not None:
                counter["evaluations"] += 1
            model = model if model is not None else load_model()
            start = time.perf_counter()
            report = evaluator.compute_report(model)
            return {**report, "seconds": round(time.perf_counter() - start, 1)}

        inputs = {"model": identity, "evaluator": spec}
        reports[name] = cached_json(folder / f"{name}.json", inputs, compute, f"{name} of {label}")
    return reports


def check_leakage(cell_args, evaluators: dict) -> dict:
    """Fail (naming an example) if a training query or passage of ``cell_args`` is a query or candidate of a pool."""
    pairs = train.build_pairs(cell_args)
    for evaluator, _ in evaluators.values():
        train.check_no_leakage(pairs, evaluator)
    return {"train_pairs": len(pairs), "pools": list(evaluators), "shared_texts": 0}


def train_cell(cell_args) -> dict:
    """Train one cell from scratch (whatever its folder held is stale or unfinished)."""
    cell_args.run.overwrite = True
    return train.run(cell_args)


# ---------------------------------------------------------------------------------------------
# Headline numbers of a model
# ---------------------------------------------------------------------------------------------
XQUAD_METRICS = ("mono_map", "cross_map", "multi_map", "rank_distance")


def xquad_numbers(report: dict, seen: set[str] | None) -> dict[str, float]:
    """XQuAD-R headline metrics; with ``seen`` (ISO codes) also each metric over seen / unseen query languages."""
    numbers = {metric: report["metrics"][metric] for metric in XQUAD_METRICS}
    if seen is None:
        return numbers
    for group in ("seen", "unseen"):
        members = [x for x in report["per_language"] if (x in seen) == (group == "seen")]
        for metric in XQUAD_METRICS:
            values = [report["per_language"][x].get(metric) for x in members]
            values = [v for v in values if v is not None and not math.isnan(v)]
            numbers[f"{group}_{metric}"] = statistics.fmean(values) if values else math.nan
    return numbers


def tatoeba_numbers(eng_x: dict, x_eng: dict) -> dict[str, float]:
    """The mixed pool (English queries) metrics and accuracy@1 per direction, averaged over languages."""
    to_x = {
        p["languages"][1]: p["metrics"].get("multi_mrr@1")
        for p in eng_x.get("pools", [])
        if len(p["languages"]) == 2
    }
    from_x = {x: row.get("multi_mrr@1") for x, row in x_eng["per_language"].items() if x != "eng"}
    languages = [x for x in to_x if to_x[x] is not None and from_x.get(x) is not None]
    accuracy_to = statistics.fmean(to_x[x] for x in languages) if languages else math.nan
    accuracy_from = statistics.fmean(from_x[x] for x in languages) if languages else math.nan
    metrics = eng_x["metrics"]
    return {
        "map": metrics["multi_map"],
        "rank_distance": metrics["rank_distance"],
        "ndcg@10": metrics["multi_ndcg@10"],
        "accuracy@1_eng_x": accuracy_to,
        "accuracy@1_x_eng": accuracy_from,
        "accuracy@1": (accuracy_to + accuracy_from) / 2,
    }


def pool_curve(report: dict, nested: int, query_only: Sequence[str] = ()) -> list[dict]:
    """The first ``nested`` pools of a report (the nested ones) as points: candidate languages, nDCG@10, mAP.

    ``query_only`` languages have no candidates (English in Tatoeba's English->X pool) and are not counted.
    """
    points = []
    for pool in report.get("pools", [])[:nested]:
        metrics = pool["metrics"]
        if "multi_map" in metrics:
            languages = [language for language in pool["languages"] if language not in query_only]
            points.append({"num_languages": len(languages), "num_queries": pool["num_queries"],
                           "num_candidates": pool["num_candidates"], "ndcg@10": metrics["multi_ndcg@10"],
                           "map": metrics["multi_map"]})  # fmt: skip
    return points


def slope_per_doubling(points: list[dict], metric: str) -> float:
    """Least-squares slope of ``metric`` against log2(number of pool languages)."""
    if len(points) < 2:
        return math.nan
    x = np.log2([p["num_languages"] for p in points])
    y = np.array([p[metric] for p in points])
    return float(np.polyfit(x, y, 1)[0])


# ---------------------------------------------------------------------------------------------
# Language weighting of the sampler on Tatoeba (no training)
# ---------------------------------------------------------------------------------------------
def sampler_statistics(base, config: ResearchConfig, order: Sequence[str]) -> dict:
    """Per weighting, each Tatoeba language's share of the batches of one planned epoch.

    The data is Tatoeba's train side, all languages, cross pairs (bitext); batches hold one language pair each
    (``one_pair_per_batch``), the case ``language_weighting`` applies to; pairs too small for one batch are
    dropped (and listed). ``mixed pairs`` is the default cross batch (rows drawn uniformly: the data's shares).
    """
    from st_hybrid.data import build_training_pairs, split_tatoeba
    from st_hybrid.sampler import HybridBatchSampler, PairMetadata

    train_side, _ = split_tatoeba(
        config.tatoeba, test_fraction=base.data.tatoeba_test_fraction, seed=base.data.tatoeba_split_seed
    )
    pairs = build_training_pairs(train_side, cross_partners=base.data.cross_partners, seed=0)
    metadata = PairMetadata.from_dataset(pairs)
    names = np.array(metadata.languages)
    foreign = np.where(
        names[metadata.query_language] == "eng",
        names[metadata.passage_language],
        names[metadata.query_language],
    )
    languages, row_counts = np.unique(foreign, return_counts=True)
    rows = dict(zip(languages.tolist(), row_counts.tolist(), strict=True))
    batch_size = base.training.per_device_train_batch_size
    results = {"batch_size": batch_size, "rows": rows, "weightings": {}}
    variants = [(f"{w['language_weighting']}" + (f" T={w['temperature']:g}" if "temperature" in w else ""), w, True)
                for w in config.weightings] + [("mixed pairs (default)", {}, False)]  # fmt: skip
    for label, weighting, one_pair in variants:
        sampler = HybridBatchSampler(
            pairs, batch_size=batch_size, seed=0, strategy="cross", one_pair_per_batch=one_pair,
            num_processes=1, metadata=metadata, drop_small_pools=True, **weighting,
        )  # fmt: skip
        batches, _ = sampler.plan_epoch(0)
        row_languages = foreign[batches]
        counted = dict.fromkeys(rows, 0.0)
        for language, count in zip(*np.unique(row_languages, return_counts=True), strict=True):
            counted[str(language)] = count / row_languages.size
        results["weightings"][label] = {"batches": int(len(batches)), "share": counted}
    results["dropped"] = sorted(code for code, n in rows.items() if n < batch_size)
    return results


def sampler_table(stats: dict) -> str:
    rows = stats["rows"]
    total = sum(rows.values())
    by_size = sorted(rows, key=lambda code: (rows[code], code))
    smallest = by_size[:10]
    lines = [
        "| weighting | batches / epoch | min share (language) | max share (language) | max / min | "
        "10 smallest languages' share | their rows' share | smallest language: rows seen per epoch / rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, entry in stats["weightings"].items():
        share = entry["share"]
        present = {code: value for code, value in share.items() if value > 0}
        low = min(present, key=present.get)
        high = max(present, key=present.get)
        seen = share[by_size[0]] * entry["batches"] * stats["batch_size"]
        lines.append(
            f"| {label} | {entry['batches']} | {present[low]:.4%} ({low}) | {present[high]:.4%} ({high}) | "
            f"{present[high] / present[low]:.1f} | {sum(share[c] for c in smallest):.2%} | "
            f"{sum(rows[c] for c in smallest) / total:.2%} | {seen:.0f} / {rows[by_size[0]]} ({by_size[0]}) |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Tables, plots, the document
# ---------------------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float, float, int]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan, 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def _fmt(values: list[float] | None, metric: str) -> str:
    if not values:
        return "…"
    mean, std, n = _mean_std(values)
    if n == 0:
        return "–"
    digits = 1 if "rank_distance" in metric else 3
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def _row_order(row: dict) -> tuple:
    strategy = row["strategy"]
    return row["count"], STRATEGIES.index(strategy) if strategy in STRATEGIES else len(STRATEGIES), strategy


def _values(runs: list[dict], part: str, metric: str) -> list[float]:
    return [run[part][metric] for run in runs if run.get(part)]


def q1_tables(results: dict) -> str:
    """Q1: one row per (count, strategy), seeds pooled; '…' for a cell not computed yet."""
    rows = results["rows"]
    xquad = ["| L | strategy | training data | mono mAP | cross mAP | multi mAP | rank distance | seeds |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    split = ["| L | strategy | seen languages | mono mAP seen / unseen | cross mAP seen / unseen | "
             "multi mAP seen / unseen | rank distance seen / unseen |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    tatoeba = ["| L | strategy | mAP | rank distance | nDCG@10 | acc@1 eng→X | acc@1 X→eng | acc@1 (mean) |",
               "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    zero_shot = {"count": 0, "strategy": "zero-shot", "data": "none (the base model)", "same_as": None,
                 "seen": None, "runs": [results["zero_shot"]] if results.get("zero_shot") else []}  # fmt: skip
    for row in [zero_shot, *sorted(rows.values(), key=_row_order)]:
        get = functools.partial(_values, row["runs"])
        count, strategy = row["count"] or "–", row["strategy"]
        note = f" (= L={row['same_as']}: bitext adds no same-language pairs)" if row.get("same_as") else ""
        xquad.append(f"| {count} | {strategy}{note} | {row['data']} | "
                     + " | ".join(_fmt(get("xquad", m), m) for m in XQUAD_METRICS) + f" | {len(row['runs'])} |")  # fmt: skip
        if row.get("seen") is not None:
            cells = [f"{_fmt(get('xquad', 'seen_' + m), m)} / {_fmt(get('xquad', 'unseen_' + m), m)}"
                     for m in XQUAD_METRICS]  # fmt: skip
            split.append(f"| {count} | {strategy} | {','.join(row['seen'])} | " + " | ".join(cells) + " |")
        metrics = ("map", "rank_distance", "ndcg@10", "accuracy@1_eng_x", "accuracy@1_x_eng", "accuracy@1")
        tatoeba.append(
            f"| {count} | {strategy}{note} | "
            + " | ".join(_fmt(get("tatoeba", m), m) for m in metrics)
            + " |"
        )
    return (
        "#### XQuAD-R\n\n" + "\n".join(xquad)
        + "\n\nSeen and unseen XQuAD-R languages apart (query language seen in training or not; mean over "
        "languages):\n\n" + "\n".join(split)
        + "\n\n#### Tatoeba held-out mixed pool\n\n" + "\n".join(tatoeba)
    )  # fmt: skip


def q2_tables(results: dict) -> str:
    parts = []
    titles = (("xquad", "XQuAD-R"), ("tatoeba", "Tatoeba held-out, English queries, pools without English"))
    for benchmark, title in titles:
        lines = None
        for label, curves in results["curves"].items():
            points = curves.get(benchmark)
            if not points:
                continue
            if lines is None:
                sizes = [p["num_languages"] for p in points]
                header = " | ".join(f"{n}" for n in sizes)
                lines = [f"| model | metric | {header} | slope per doubling |",
                         "|---|---|" + "---|" * len(sizes) + "---|"]  # fmt: skip
            for metric in ("ndcg@10", "map"):
                values = " | ".join(f"{p[metric]:.3f}" for p in points)
                lines.append(f"| {label} | {metric} | {values} | {slope_per_doubling(points, metric):+.4f} |")
        if lines:
            parts.append(f"#### {title} (columns: languages in the pool)\n\n" + "\n".join(lines))
    return "\n\n".join(parts) or "…"


def plot_q1(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("xquad", "multi_map", "XQuAD-R multi mAP"), ("xquad", "rank_distance", "XQuAD-R rank distance (lower better)"),
              ("tatoeba", "map", "Tatoeba mixed-pool mAP"), ("tatoeba", "accuracy@1", "Tatoeba accuracy@1 (both directions)")]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    zero = results.get("zero_shot")
    for ax, (part, metric, title) in zip(axes, panels, strict=True):
        for index, strategy in enumerate(STRATEGIES):
            rows = [row for row in results["rows"].values() if row["strategy"] == strategy and row["runs"]]
            points = [(row["count"], _mean_std([r[part][metric] for r in row["runs"]])) for row in rows]
            points = [(count, mean, std) for count, (mean, std, n) in points if n]
            if points:
                x, y, e = zip(*sorted(points), strict=True)
                ax.errorbar(x, y, yerr=e, marker="o", color=f"C{index}", label=strategy, capsize=3)
        if zero:
            ax.axhline(zero[part][metric], color="k", ls="--", lw=1, label="zero-shot")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training languages")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_q2(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("xquad", "ndcg@10", "XQuAD-R multi nDCG@10"), ("xquad", "map", "XQuAD-R multi mAP"),
              ("tatoeba", "ndcg@10", "Tatoeba (eng→all) nDCG@10"), ("tatoeba", "map", "Tatoeba (eng→all) mAP")]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (part, metric, title) in zip(axes, panels, strict=True):
        for index, (label, curves) in enumerate(results["curves"].items()):
            points = curves.get(part) or []
            if points:
                style = {"ls": "--", "color": "k"} if label == "zero-shot" else {"color": f"C{index}"}
                ax.plot([p["num_languages"] for p in points], [p[metric] for p in points], marker="o",
                        label=label, **style)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("languages in the pool")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sampler(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = stats["rows"]
    order = sorted(rows, key=lambda code: (-rows[code], code))
    fig, ax = plt.subplots(figsize=(11, 3.8))
    for index, (label, entry) in enumerate(stats["weightings"].items()):
        ax.plot(range(len(order)), [max(entry["share"][c], 1e-6) for c in order], marker=".", lw=1,
                color=f"C{index}", label=label)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(order))[::4], order[::4], rotation=90, fontsize=6)
    ax.set_ylabel("share of batch rows")
    ax.set_xlabel("Tatoeba language (most training pairs first)")
    ax.set_title("Share of each language in one planned epoch (Tatoeba train side, cross batches)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _kept_answers(path: Path) -> str:
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if ANSWERS_START in text and ANSWERS_END in text:
            return text[text.index(ANSWERS_START) : text.index(ANSWERS_END) + len(ANSWERS_END)]
    return f"{ANSWERS_START}\n_The answers are written once the tables below are complete._\n{ANSWERS_END}"


def write_document(results: dict, docs_dir: Path) -> Path:
    """``languages.md`` and its plots from everything computed so far (the answers block is kept)."""
    docs_dir = Path(docs_dir)
    img = docs_dir / "img"
    plot_q1(results, img / "languages_q1.png")
    plot_q2(results, img / "languages_q2.png")
    if results.get("sampler"):
        plot_sampler(results["sampler"], img / "languages_sampler.png")
    document = docs_dir / "languages.md"
    done, total = results["progress"]
    status = "complete" if done == total else f"PARTIAL: {done} of {total} models evaluated so far"
    pools = "\n".join(f"- **{name}**: {text}" for name, text in results["pools"].items())
    runs = "\n".join(
        f"- {run['started']}: {run['wall_minutes']:.1f} min wall, {run['trained']} cells trained, "
        f"{run['evaluations']} model evaluations computed (the rest reused)"
        for run in results["invocations"]
    )
    sampler = (
        f"Tatoeba train side, all {len(results['sampler']['rows'])} languages paired with English (cross pairs, "
        f"both directions), batch size {results['sampler']['batch_size']}, one planned epoch (seed 0). Rows: "
        f"the language's share of all batch rows.\n\n" + sampler_table(results["sampler"])
        + "\n\n![sampler](img/languages_sampler.png)"
        if results.get("sampler") else "…"
    )  # fmt: skip
    text = f"""# Research: languages (issue 11)

Status: **{status}**. Generated by `examples/research/languages.py`; the answers block is written by hand.

```
{results["command"]}
```

Config `{results["config_file"]}`; base model `{results["base_model"]}`; seeds {results["seeds"]}; training budget
{results["budget"]}. Runs of this command (cached cells are reused, so a re-run costs only what changed):

{runs}

## Evaluation pools

{pools}

## Answers

{_kept_answers(document)}

## Q1: training languages

Training data per count L: L ≤ {results["mlqa_count"]}: the first L MLQA-R languages ({", ".join(results["mlqa_languages"])});
beyond: all MLQA-R languages plus the train side of the Tatoeba split for the other languages, most sentence
pairs first (ties by code), English on the other side of every pair; hybrid (alpha {results["alpha"]}) treats
both as one source, so alpha of its steps stay monolingual (MLQA-R languages). Tatoeba codes of MLQA-R /
XQuAD-R languages count as those languages (`deu` = `de`).

{q1_tables(results)}

![Q1](img/languages_q1.png)

## Q2: retrieval as the pool grows

Nested pools from one encoding per model (the evaluator's `pools`), models of L={results["q2_count"]}
(mono: its MLQA-R-only model); slope: least-squares change per doubling of the pool's languages.

{q2_tables(results)}

![Q2](img/languages_q2.png)

## Language weighting on {len(results["tatoeba_order"])} Tatoeba languages (sampler only, no training)

{sampler}
"""
    write_text(document, text)
    return document


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def model_numbers(reports: dict[str, dict], seen: set[str] | None) -> dict[str, dict]:
    return {
        "xquad": xquad_numbers(reports["xquad-r"], seen),
        "tatoeba": tatoeba_numbers(reports["tatoeba-eng-x"], reports["tatoeba-x-eng"]),
    }


def model_curves(reports: dict[str, dict], config: ResearchConfig) -> dict[str, list[dict]]:
    return {
        "xquad": pool_curve(reports["xquad-r"], len(config.xquad_pools)),
        "tatoeba": pool_curve(reports["tatoeba-eng-x"], len(config.tatoeba_pools), query_only=["eng"]),
    }


def _pool_text(evaluator, nested: int) -> str:
    if evaluator.pool.get("description"):
        text = evaluator.pool["description"]
    else:
        subset = evaluator.pool.get("max_articles")
        text = (
            f"XQuAD-R {'subset: first ' + str(subset) + ' articles per language' if subset else 'full pool'}: "
            f"{len(evaluator.query_ids)} queries x {len(evaluator.candidate_ids)} candidates, "
            f"{len(evaluator.languages)} languages"
        )
    multiple = int(((evaluator.layout.relevant >= 0).sum(axis=1) >= 2).sum())
    text += f"; {multiple} queries with 2+ relevant candidates (the rank distance's queries)"
    if nested:
        english = evaluator.settings == (
            "cross",
            "multi",
        )  # Tatoeba English->X: English queries, no candidates
        sizes = ", ".join(str(len(pool) - english) for pool in evaluator.pools[:nested])
        text += f"; nested pools of {'English queries against ' if english else ''}{sizes} languages"
    if len(evaluator.pools) > nested:
        text += f"; and {len(evaluator.pools) - nested} English + one language pools (accuracy@1 English->X)"
    return text


def _command(argv: Sequence[str]) -> str:
    tokens = list(argv)
    for index, token in enumerate(tokens[:-1]):
        if token == "--model":
            tokens[index + 1] = "$BASE"
    prefix = "BASE=$(../shared/tools/offline-model .venv/bin/python) && " if "$BASE" in tokens else ""
    return prefix + " ".join(
        [".venv/bin/python", "examples/research/languages.py", *map(shlex.quote, tokens)]
    ).replace("'$BASE'", "$BASE")


def _counting(counter: dict, key: str, compute):
    def wrapped():
        counter[key] += 1
        return compute()

    return wrapped


def run(argv: Sequence[str]) -> dict:
    """Run (or resume) everything and write the document; return the results dict."""
    args = parse_args(argv)
    started = time.perf_counter()
    train_options, config = load_config(args.config)
    config.counts = args.counts or config.counts
    config.strategies = args.strategies or config.strategies
    config.seeds = args.seeds or config.seeds
    config.__post_init__()
    if args.model:
        train_options["model"] = args.model
    if args.output_dir:
        train_options["output_dir"] = args.output_dir
    train_options.update(eval_data=None, evaluate_before=False)  # evaluated here, with the pools
    base = train.parse_args([], overrides=train_options)
    root = base.output_dir
    order = tatoeba_order(config.tatoeba)
    # Pool sizes beyond the data are left out (the curves take the first len(...) pools as the nested ones).
    config.xquad_pools = [n for n in config.xquad_pools if n <= len(config.xquad_languages)]
    config.tatoeba_pools = [n for n in config.tatoeba_pools if n <= len(order)]
    q2_count = config.q2_count or max(config.counts)
    evaluators = build_evaluators(base, config, order)
    cells = plan_cells(config, order, root)

    history_file = root / "invocations.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    invocation = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "trained": 0,
        "evaluations": 0,
    }
    invocation["wall_minutes"] = 0.0
    merges = len(config.seeds) if config.merge_ratio and "hybrid" in config.strategies else 0
    results = {
        "command": _command(argv),
        "config_file": args.config,
        "base_model": base.model.base_model_name or base.model.model,
        "seeds": config.seeds,
        "budget": (
            f"{base.training.max_steps} steps x {base.training.per_device_train_batch_size} pairs, lr "
            f"{base.training.learning_rate:g}, max_seq_length {base.model.max_seq_length}, "
            f"{'frozen' if base.model.freeze_embeddings else 'trained'} word embeddings"
        ),
        "mlqa_count": len(config.mlqa_languages),
        "mlqa_languages": config.mlqa_languages,
        "alpha": base.batches.alpha,
        "q2_count": q2_count,
        "tatoeba_order": order,
        "pools": {
            name: _pool_text(
                evaluator,
                {"xquad-r": len(config.xquad_pools), "tatoeba-eng-x": len(config.tatoeba_pools)}.get(name, 0),
            )
            for name, (evaluator, _) in evaluators.items()
        },
        "rows": {},
        "curves": {},
        "zero_shot": None,
        "sampler": None,
        "invocations": [*history, invocation],
        "progress": (0, 1 + len({cell.folder for cell in cells}) + merges),
    }

    def refresh(done: int) -> None:
        invocation["wall_minutes"] = (time.perf_counter() - started) / 60
        results["progress"] = (done, results["progress"][1])
        write_json(root / "languages.json", results)
        write_json(history_file, results["invocations"])
        write_document(results, args.docs_dir)

    if not args.skip_sampler:
        sampler_inputs = {
            "data": path_fingerprint(config.tatoeba),
            "weightings": config.weightings,
            "batch_size": base.training.per_device_train_batch_size,
            "cross_partners": base.data.cross_partners,
            "split": [base.data.tatoeba_test_fraction, base.data.tatoeba_split_seed],
        }
        compute = functools.partial(sampler_statistics, base, config, order)
        results["sampler"] = cached_json(
            root / "sampler" / "statistics.json", sampler_inputs, compute, "sampler"
        )

    # The largest training data of the grid (every other cell's is part of it) shares no text with any pool.
    widest = max(cells, key=lambda cell: (len(cell.data["languages"]), cell.strategy != "mono"))
    widest_args = train.parse_args([], overrides={**train_options, **cell_overrides(widest, config)})
    leakage_inputs = {
        "run": train.run_inputs(widest_args),
        "pools": [spec for _, spec in evaluators.values()],
    }
    cached_json(root / "leakage_check.json", leakage_inputs, functools.partial(check_leakage, widest_args, evaluators),
                "the check that no training text is in a pool")  # fmt: skip

    base_model = None

    def load_base():
        nonlocal base_model
        base_model = base_model if base_model is not None else train.load_model(base)
        return base_model

    def evaluated(load, identity, folder, label):
        return evaluate(load, identity, evaluators, folder, label, counter=invocation)

    zero = evaluated(load_base, path_fingerprint(base.model.model), root / "zero_shot", "zero-shot")
    results["zero_shot"] = model_numbers(zero, seen=None)
    results["curves"]["zero-shot"] = model_curves(zero, config)
    done = 1
    refresh(done)

    reports_of: dict[Path, dict] = {}
    for cell in cells:
        seen = sorted({iso(code) for code in cell.data["languages"]} & set(config.xquad_languages))
        row = results["rows"].setdefault(
            cell.label,
            {"count": cell.count, "strategy": cell.strategy, "data": describe_data(cell.data),
             "same_as": cell.same_as, "seen": seen, "runs": []},
        )  # fmt: skip
        cell_args = train.parse_args([], overrides={**train_options, **cell_overrides(cell, config)})
        model_dir = cell.folder / "model"
        if cell.folder not in reports_of:
            if not (model_dir / "modules.json").exists():  # unfinished, or its model deleted
                (cell.folder / "results.json").unlink(missing_ok=True)
            compute = _counting(invocation, "trained", functools.partial(train_cell, cell_args))
            cached_json(
                cell.folder / "results.json", train.run_inputs(cell_args), compute, f"cell {cell.label}"
            )
            load = functools.partial(_load_trained, model_dir, base)
            reports_of[cell.folder] = evaluated(
                load, path_fingerprint(model_dir), cell.folder / "eval", cell.label
            )
            done += 1
        reports = reports_of[cell.folder]
        row["runs"].append(model_numbers(reports, seen=set(seen)))
        if cell.count == q2_count and cell.seed == config.seeds[0]:
            results["curves"][cell.strategy] = model_curves(reports, config)
        if cell.count == q2_count and cell.strategy == "hybrid" and config.merge_ratio:
            ratio = config.merge_ratio
            label = f"hybrid merged r={ratio:g}"
            identity = {"cell": content_hash(train.run_inputs(cell_args)), "model": path_fingerprint(model_dir),
                        "ratio": ratio}  # fmt: skip
            load = functools.partial(_load_merged, load_base, model_dir, ratio)
            merged = evaluated(
                load, identity, cell.folder / "merged" / f"r{ratio:g}", f"{cell.label} {label}"
            )
            done += 1
            merged_row = results["rows"].setdefault(
                f"L={cell.count} {label}", {**row, "strategy": label, "same_as": None, "runs": []}
            )
            merged_row["runs"].append(model_numbers(merged, seen=set(seen)))
            if cell.seed == config.seeds[0]:
                results["curves"][label] = model_curves(merged, config)
        refresh(done)
    logger.info("Wrote %s (%.1f min)", Path(args.docs_dir) / "languages.md", invocation["wall_minutes"])
    return results


def _load_trained(model_dir: Path, base):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir))
    model.max_seq_length = base.evaluation.eval_max_seq_length or model.max_seq_length
    return model


def _load_merged(load_base, model_dir: Path, ratio: float):
    from st_hybrid.merge import interpolate

    return interpolate(load_base(), model_dir, ratio)


def main(argv: Sequence[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
