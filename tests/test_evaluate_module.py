"""The `evaluate` metric module: loads offline from its folder (also as a standalone copy), matches the evaluator."""

from __future__ import annotations

import re
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import st_hybrid.metrics
from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator

evaluate = pytest.importorskip("evaluate")

MODULE_DIR = Path(st_hybrid.metrics.__file__).parent / "evaluate_metric" / "language_aware_retrieval"
README_EXAMPLE = {
    "predictions": [[0.9, 0.1, 0.8, 0.2], [0.3, 0.7, 0.6, 0.1]],
    "references": [[0, 2], [1, 3]],
    "query_languages": ["en", "de"],
    "candidate_languages": ["en", "en", "de", "de"],
}


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(MODULE_DIR))


def test_folder_layout_and_single_source_of_truth():
    for name in ("language_aware_retrieval.py", "README.md", "app.py", "requirements.txt", "metrics.py"):
        assert (MODULE_DIR / name).is_file(), name
    # The math is the package's own file, not a copy.
    assert (MODULE_DIR / "metrics.py").resolve() == Path(st_hybrid.metrics.__file__).resolve()
    # evaluate parses imports line by line: the local import must be a single `from .metrics import` line.
    script = (MODULE_DIR / "language_aware_retrieval.py").read_text()
    assert re.search(r"^from \.metrics import [\w, ]+$", script, flags=re.MULTILINE)


def test_readme_example_numbers(metric):
    results = metric.compute(**README_EXAMPLE)
    assert results["mono_map"] == pytest.approx(0.75)
    assert results["cross_map"] == pytest.approx(1.0)
    assert results["multi_map"] == pytest.approx(0.875)
    assert results["rank_distance"] == pytest.approx(2.0)
    assert results["pair_map"] == {"en": {"en": 1.0, "de": 1.0}, "de": {"en": 1.0, "de": 0.5}}
    assert "(0.75, 1.0, 0.875, 2.0)" in (MODULE_DIR / "README.md").read_text()


def test_readme_language_bias_example(metric):
    results = metric.compute(**README_EXAMPLE, language_share_at_k=[1])
    preferences = (
        results["per_language"]["en"]["language_preference@1"],
        results["per_language"]["de"]["language_preference@1"],
    )
    assert preferences == (0.5, -0.5)
    assert results["top_k_language_share"]["1"] == {
        "en": {"en": 1.0, "de": 0.0},
        "de": {"en": 1.0, "de": 0.0},
    }
    assert results["rank_fairness_p"] == pytest.approx(0.31731050786291404)
    text = (MODULE_DIR / "README.md").read_text()
    assert "(0.5, -0.5)" in text and "{'en': {'en': 1.0, 'de': 0.0}, 'de': {'en': 1.0, 'de': 0.0}}" in text
    assert "'rank_fairness_p': 0.3173" in text


def test_rankings_config_matches_scores_and_requires_full_rankings():
    rankings = evaluate.load(str(MODULE_DIR), "rankings")
    full = rankings.compute(
        predictions=[list(np.argsort(-np.array(row))) for row in README_EXAMPLE["predictions"]],
        **{k: v for k, v in README_EXAMPLE.items() if k != "predictions"},
    )
    assert full["multi_map"] == pytest.approx(0.875) and full["rank_distance"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="full-depth"):
        rankings.compute(
            predictions=[[0, 2], [1, 2]], **{k: v for k, v in README_EXAMPLE.items() if k != "predictions"}
        )


def test_bad_inputs(metric):
    with pytest.raises(ValueError, match="required"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[0]])
    with pytest.raises(ValueError, match="score all"):
        metric.compute(**dict(README_EXAMPLE, predictions=[[0.9, 0.1, 0.8], [0.3, 0.7, 0.6, 0.1]]))
    with pytest.raises(ValueError, match="Unknown languages"):
        metric.compute(**README_EXAMPLE, languages=["en", "xx"])


def test_standalone_copy_loads_like_a_space(tmp_path):
    """The folder uploaded alone (links resolved to files) is a complete metric."""
    copy = tmp_path / "language_aware_retrieval"
    shutil.copytree(MODULE_DIR, copy, symlinks=False)
    assert not (copy / "metrics.py").is_symlink()
    standalone = evaluate.load(str(copy))
    assert standalone.compute(**README_EXAMPLE)["multi_map"] == pytest.approx(0.875)


def test_app_builds_the_widget(monkeypatch):
    launched = []
    utils = sys.modules["evaluate.utils"]
    monkeypatch.setattr(utils, "launch_gradio_widget", launched.append)
    runpy.run_path(str(MODULE_DIR / "app.py"))
    assert len(launched) == 1 and launched[0].name == "language_aware_retrieval"


def test_readme_is_a_metric_card():
    text = (MODULE_DIR / "README.md").read_text()
    header = text.split("---")[1]
    for key in ("title:", "sdk: gradio", "app_file: app.py", "- evaluate", "- metric", "description:"):
        assert key in header
    for section in (
        "## Metric Description",
        "## How to Use",
        "### Inputs",
        "### Output Values",
        "### Examples",
    ):
        assert section in text
    for section in ("## Limitations and Bias", "## Citation"):
        assert section in text


def test_evaluator_and_module_give_the_same_numbers(metric, tiny_model_path, shared_data):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_model_path, device="cpu")
    evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(
        shared_data / "xquad-r", languages=["de", "en", "zh"], max_articles=1
    )
    results = evaluator(model)
    queries, candidates, _ = evaluator.embed(model)
    scores = queries @ candidates.T
    references = [[int(c) for c in row if c >= 0] for row in evaluator.layout.relevant]
    module_results = metric.compute(
        predictions=scores.tolist(),
        references=references,
        query_languages=evaluator.query_languages,
        candidate_languages=evaluator.candidate_languages,
    )
    assert results, "the evaluator returned nothing"
    for key in evaluator.metric_names:
        assert module_results[key] == pytest.approx(results[f"{evaluator.name}_{key}"], abs=1e-12), key
    for language, row in evaluator.last_report["pair_map"].items():
        assert module_results["pair_map"][language] == pytest.approx(row, abs=1e-12)
