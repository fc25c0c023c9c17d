"""The mteb mixed-pool tasks: mteb (a peer implementation) and our evaluator agree on the same model and pool."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
from st_hybrid.metrics import average_precision, ndcg_at_k

# mteb is an optional extra (pip install st-hybrid[mteb]): the core install, and a CI job without the
# extra, has no mteb to test against. Where it is installed (the development venv) these tests run.
mteb = pytest.importorskip("mteb", reason="mteb is an optional extra: pip install st-hybrid[mteb]")

from st_hybrid.mteb_tasks import LANGUAGE_SCRIPTS, MLQARMixedPool, XQuADRMixedPool  # noqa: E402

LANGUAGES = ["en", "de", "es"]


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny_model_path, device="cpu")


def _mteb_scores(model, task) -> dict:
    results = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    return results.task_results[0].scores["test"][0]


def _our_ranks(model, task):
    evaluator = LanguageAwareRetrievalEvaluator.from_corpus(task.lareqa, settings=["multi"])
    results = evaluator(model)
    queries, candidates, _ = evaluator.embed(model)
    return evaluator, results, evaluator.rank(queries, candidates)


def test_xquad_r_mixed_pool_matches_our_evaluator(tiny_model, shared_data):
    task = XQuADRMixedPool(shared_data / "xquad-r", languages=LANGUAGES, max_articles=2)
    pool = task.pool_size
    assert task.k_values[-1] == pool and 10 in task.k_values  # k reaches the full pool depth
    assert task.metadata.eval_langs == [LANGUAGE_SCRIPTS[lang] for lang in LANGUAGES]
    scores = _mteb_scores(tiny_model, task)

    evaluator, results, ranks = _our_ranks(tiny_model, task)
    # XQuAD-R is parallel: every language has the same queries, so our macro average over query languages
    # equals mteb's mean over queries.
    assert len(set(Counter(evaluator.query_languages).values())) == 1
    assert len(evaluator.query_ids) == len(task.lareqa.query_ids) and pool == len(evaluator.candidate_ids)
    # No relevant candidate ties another candidate: mteb's tie rule (by document id) cannot differ from ours.
    queries, candidates, _ = evaluator.embed(model=tiny_model)
    similarity = queries @ candidates.T
    for i, row in enumerate(evaluator.layout.relevant):
        for column in row[row >= 0]:
            assert (similarity[i] == similarity[i, column]).sum() == 1
    # mteb rounds its scores to 5 decimals.
    assert scores["ndcg_at_10"] == pytest.approx(results["multi_ndcg@10"], abs=1e-4)
    assert scores[f"map_at_{pool}"] == pytest.approx(results["multi_map"], abs=1e-4)
    assert scores["main_score"] == scores["ndcg_at_10"]
    # Not a vacuous match: the numbers are away from 0 and 1, and a truncated MAP is smaller.
    assert 0.01 < results["multi_map"] < 0.99
    assert scores["map_at_10"] < scores[f"map_at_{pool}"]


def test_mlqa_r_mixed_pool_matches_our_per_query_values(tiny_model, shared_data):
    task = MLQARMixedPool(shared_data / "mlqa-r", languages=LANGUAGES, max_articles=2)
    pool = task.pool_size
    scores = _mteb_scores(tiny_model, task)
    evaluator, _, ranks = _our_ranks(tiny_model, task)
    # MLQA-R languages have different numbers of questions: compare mteb's mean over queries with the mean
    # of our per-query values (our reported numbers average per query language first).
    assert len(set(Counter(evaluator.query_languages).values())) > 1
    assert scores["ndcg_at_10"] == pytest.approx(np.mean(ndcg_at_k(ranks.multi, 10)), abs=1e-4)
    assert scores[f"map_at_{pool}"] == pytest.approx(np.mean(average_precision(ranks.multi)), abs=1e-4)


def test_unknown_language_code_is_a_clear_error(shared_data, monkeypatch):
    monkeypatch.delitem(LANGUAGE_SCRIPTS, "de")
    with pytest.raises(ValueError, match=r"No mteb language code for \['de'\]"):
        XQuADRMixedPool(shared_data / "xquad-r", languages=["en", "de"], max_articles=1)


def test_k_values_are_capped_at_the_pool_size(shared_data):
    task = XQuADRMixedPool(
        shared_data / "xquad-r", languages=["en"], max_articles=1, k_values=(1, 10, 10_000)
    )
    assert task.k_values == (1, 10, task.pool_size) and task.pool_size < 10_000
