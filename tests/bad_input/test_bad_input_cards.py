"""Honest model cards (issue 8, section 6): each case fails on the card code before the fix.

- An evaluation on a subset says so in the card and in the model-index (dataset name and config).
- The training-data table fills languages and pair counts for every source, mlqa-r included.
- The license defaults to the base model's (user override wins); the training data's licenses are stated.
- A NaN metric never reaches the model-index.
- Writing a card from bad input fails with a clear error and leaves the model folder as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from st_hybrid.model_card import (
    ModelCardInfo,
    load_report,
    render_model_card,
    write_model_card,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _report(name: str = "xquad-r", num_queries: int = 1485, num_candidates: int = 915, **metrics) -> dict:
    languages = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
    values = {"mono_map": 0.61, "cross_map": 0.42, "multi_map": 0.33, "rank_distance": 120.5,
              "multi_ndcg@10": 0.5, **metrics}  # fmt: skip
    return {"name": name, "languages": languages, "num_queries": num_queries, "num_candidates": num_candidates,
            "metrics": values, "per_language": {lang: dict(values) for lang in languages}}  # fmt: skip


def _metadata(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def _index_datasets(text: str) -> set[tuple[str, str]]:
    return {
        (r["dataset"]["name"], r["dataset"]["config"]) for r in _metadata(text)["model-index"][0]["results"]
    }


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Subsets are named in the card and in the model-index
# ---------------------------------------------------------------------------------------------------------------
def test_subset_of_articles_is_named_in_card_and_model_index(tiny_model_path):
    report = load_report(_report(), pool={"max_articles": 4})
    text = render_model_card(ModelCardInfo(languages=["en"]), [report], model_path=tiny_model_path)
    datasets = _index_datasets(text)
    summary_name = "XQuAD-R (subset: 4 of 48 articles, 1,485 queries x 915 candidates)"
    assert (summary_name, "subset-4-articles") in datasets
    assert (summary_name, "subset-4-articles-de") in datasets  # per-language entries too
    assert all("subset" in name for name, _ in datasets)
    assert "a subset of XQuAD-R: the first 4 of 48 articles (1,485 queries x 915 candidates)" in text
    assert "not** comparable with results on the full benchmark" in text


def test_subset_is_detected_from_the_pool_size_without_being_told(tiny_model_path):
    # The numbers of the default run's report: no pool field, fewer queries and candidates than XQuAD-R has.
    text = render_model_card(ModelCardInfo(languages=["en"]), [_report()], model_path=tiny_model_path)
    names = {name for name, config in _index_datasets(text) if config == "subset"}
    assert names == {"XQuAD-R (subset: 1,485 queries x 915 candidates of 13,090 queries x 13,014 candidates)"}
    full = render_model_card(ModelCardInfo(languages=["en"]), [_report(num_queries=13090, num_candidates=13014)],
                             model_path=tiny_model_path)  # fmt: skip
    assert ("XQuAD-R (full test set, 13,090 queries x 13,014 candidates)", "full") in _index_datasets(full)
    from st_hybrid.model_card import describe_pool

    mlqa = _report("mlqa-r", 4199, 20534)
    mlqa["languages"] = ["ar", "de", "en", "es", "hi", "vi", "zh"]
    assert describe_pool(load_report(mlqa)).config == "full"


def test_a_real_evaluator_on_four_articles_reports_its_pool():
    from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
    from st_hybrid.model_card import _pool_from_evaluator

    evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(
        SHARED_DATA / "xquad-r", max_articles=4, name="xquad-r"
    )
    assert (len(evaluator.query_ids), len(evaluator.candidate_ids)) == (1485, 915)
    pool = _pool_from_evaluator(evaluator)
    assert pool.is_subset and "1,485 queries x 915 candidates" in pool.dataset_name


# ---------------------------------------------------------------------------------------------------------------
# Training data: languages, pair counts, licenses
# ---------------------------------------------------------------------------------------------------------------
def test_mlqa_r_training_data_row_has_languages_counts_and_license(tiny_model_path):
    from st_hybrid.data import build_training_pairs, load_lareqa

    pairs = build_training_pairs(
        load_lareqa(SHARED_DATA / "mlqa-r", languages=["ar", "de", "en"], max_articles=3), cross_partners=1
    )
    info = ModelCardInfo(languages=["ar", "de", "en"], train_datasets=["mlqa-r"])
    text = render_model_card(info, [], model_path=tiny_model_path, train_dataset=pairs)
    row = next(line for line in text.splitlines() if line.startswith("| mlqa-r |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    cross = sum(q != p for q, p in zip(pairs["query_language"], pairs["passage_language"]))
    assert cells[:5] == ["mlqa-r", "ar, de, en", f"{len(pairs):,}", f"{len(pairs) - cross:,} / {cross:,}",
                         "cc-by-nc-4.0"]  # fmt: skip
    assert "non-commercial use only" in text


def test_training_data_licenses_are_stated(tiny_model_path):
    info = ModelCardInfo(train_datasets=["xquad-r", "tatoeba", {"name": "own data", "license": "cc0-1.0"}])
    text = render_model_card(info, [], model_path=tiny_model_path)
    licenses = {
        cells[0]: cells[4]
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in text.splitlines())
        if cells[0] in ("xquad-r", "tatoeba", "own data")
    }
    assert licenses == {"xquad-r": "cc-by-sa-4.0", "tatoeba": "CC BY 2.0 FR", "own data": "cc0-1.0"}


# ---------------------------------------------------------------------------------------------------------------
# License: the base model's, unless the user says otherwise
# ---------------------------------------------------------------------------------------------------------------
def test_license_defaults_to_the_base_models(tiny_model_path, tmp_path):
    e5 = render_model_card(
        ModelCardInfo(base_model="intfloat/multilingual-e5-small"), [], model_path=tiny_model_path
    )
    assert ModelCard(e5).data.license == "mit"  # not apache-2.0

    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# A local base model\n")
    local = render_model_card(ModelCardInfo(base_model="org/unknown-base", base_model_path=str(base)), [],
                              model_path=tiny_model_path)  # fmt: skip
    assert ModelCard(local).data.license == "cc-by-4.0"

    override = ModelCardInfo(base_model="intfloat/multilingual-e5-small", license="apache-2.0")
    assert ModelCard(render_model_card(override, [], model_path=tiny_model_path)).data.license == "apache-2.0"

    unknown = render_model_card(ModelCardInfo(base_model="org/unknown-base"), [], model_path=tiny_model_path)
    assert ModelCard(unknown).data.license is None  # no made-up license
    assert "not specified (the base model's license applies)" in unknown


# ---------------------------------------------------------------------------------------------------------------
# NaN never reaches the model-index
# ---------------------------------------------------------------------------------------------------------------
def test_nan_metric_is_left_out_of_the_model_index(tiny_model_path):
    report = _report(num_queries=13090, num_candidates=13014, cross_map=math.nan, rank_distance=math.inf)
    report["per_language"]["en"]["mono_map"] = math.nan
    text = render_model_card(ModelCardInfo(languages=["en"]), [report], model_path=tiny_model_path)
    results = _metadata(text)["model-index"][0]["results"]
    values = [m["value"] for r in results for m in r["metrics"]]
    assert values and all(isinstance(v, float) and math.isfinite(v) for v in values)
    types = {(r["dataset"]["config"], m["type"]) for r in results for m in r["metrics"]}
    assert ("full", "cross_map") not in types and ("full", "rank_distance") not in types
    assert ("full-en", "mono_map") not in types and ("full-de", "mono_map") in types
    assert ".nan" not in text.split("---\n")[1] and ".inf" not in text.split("---\n")[1]


def test_nan_metric_is_saved_as_strict_json(tiny_model_path, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_path, folder)
    report = _report(cross_map=math.nan)
    write_model_card(folder, ModelCardInfo(languages=["en"]), [report])
    saved = (folder / "eval" / "xquad-r_metrics.json").read_text()
    assert "NaN" not in saved and json.loads(saved)["metrics"]["cross_map"] is None
    assert "NaN" not in (folder / "st_hybrid_card.json").read_text()


def test_nan_from_an_evaluator_during_training_is_left_out(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    class TinyEvaluator:
        name, description, primary_metric = "probe", "Probe", "probe_score"

        def get_config_dict(self):
            return {}

    model = SentenceTransformer(tiny_model_path)
    model.model_card_data.set_evaluation_metrics(TinyEvaluator(), {"probe_score": math.nan, "probe_ok": 0.5})
    text = render_model_card(ModelCardInfo(), [], model=model, model_path=tiny_model_path)
    metrics = [m for r in _metadata(text)["model-index"][0]["results"] for m in r["metrics"]]
    assert [(m["type"], m["value"]) for m in metrics] == [("ok", 0.5)]


# ---------------------------------------------------------------------------------------------------------------
# Bad input: a clear error, nothing on disk changed
# ---------------------------------------------------------------------------------------------------------------
def test_bad_report_fails_clearly_and_leaves_the_folder_alone(tiny_model_path, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_path, folder)
    (folder / "README.md").write_text("# the card from training\n")
    before = _digest(folder)
    (tmp_path / "broken_metrics.json").write_text('{"name": "xquad-r", "metrics": {')
    with pytest.raises(ValueError, match=r"broken_metrics.json is not valid JSON"):
        write_model_card(folder, ModelCardInfo(), [tmp_path / "broken_metrics.json"])
    with pytest.raises(FileNotFoundError, match="missing_metrics.json does not exist"):
        write_model_card(folder, ModelCardInfo(), [tmp_path / "missing_metrics.json"])
    with pytest.raises(ValueError, match=r"missing \['metrics'\]"):
        write_model_card(folder, ModelCardInfo(), [{"name": "xquad-r"}])
    with pytest.raises(ValueError, match="languages must be a list"):
        write_model_card(folder, ModelCardInfo(languages="de"), [])
    assert _digest(folder) == before
    with pytest.raises(FileNotFoundError, match="no modules.json"):
        write_model_card(tmp_path, ModelCardInfo(), [])
