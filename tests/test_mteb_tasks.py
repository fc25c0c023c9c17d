"""The mteb mixed-pool tasks: mteb (a peer implementation) and our evaluator agree on the same model and pool."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
from st_hybrid.metrics import average_precision, mrr_at_k, ndcg_at_k

# mteb is an optional extra (pip install st-hybrid[mteb]): the core install, and a CI job without the
# extra, has no mteb to test against. Where it is installed (the development venv) these tests run.
mteb = pytest.importorskip("mteb", reason="mteb is an optional extra: pip install st-hybrid[mteb]")

from st_hybrid.mteb_tasks import (  # noqa: E402
    LANGUAGE_SCRIPTS,
    TATOEBA_SCRIPTS,
    MLQARMixedPool,
    TatoebaMixedPool,
    XQuADRMixedPool,
)

LANGUAGES = ["en", "de", "es"]
TATOEBA_LANGUAGES = ["deu", "fra"]


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny_model_path, device="cpu")


@pytest.fixture(scope="module")
def xquad_model(tmp_path_factory, shared_data):
    """A tiny model whose vocabulary is trained on the XQuAD-R subset: with the default vocabulary most words
    are [UNK], embeddings nearly coincide (cosine ~0.98-0.99) and float32 scores tie by chance."""
    from sentence_transformers import SentenceTransformer

    from st_hybrid.testing import build_tiny_model

    corpus = XQuADRMixedPool(shared_data / "xquad-r", languages=LANGUAGES, max_articles=2).lareqa
    texts = list(corpus.query_texts) + list(corpus.candidate_texts)
    path = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-xquad", texts=texts, vocab_size=2000)
    return SentenceTransformer(path, device="cpu")


@pytest.fixture(scope="module")
def tatoeba_held_out(shared_data):
    """The held-out Tatoeba rows of lines < 400 in German and French (~80 ids per language): a pool small
    enough that two candidates almost never tie in float32 by chance (the tiny model's scores cluster)."""
    from st_hybrid.data import split_tatoeba

    _, held_out = split_tatoeba(shared_data / "tatoeba", languages=TATOEBA_LANGUAGES)
    ids = held_out.select_columns(["parallel_id"]).to_dict()["parallel_id"]
    return held_out.select([i for i, pid in enumerate(ids) if int(pid.rsplit("/", 1)[1]) < 400])


@pytest.fixture(scope="module")
def tatoeba_model(tmp_path_factory, tatoeba_held_out):
    """A tiny model with a vocabulary of those sentences: with the default vocabulary, letters it lacks
    become [UNK] and paraphrases ("Where's everybody/everyone else?") tie exactly."""
    from sentence_transformers import SentenceTransformer

    from st_hybrid.testing import build_tiny_model

    texts = tatoeba_held_out.select_columns(["question"]).to_dict()["question"]
    path = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-tatoeba", texts=texts, vocab_size=2000)
    return SentenceTransformer(path, device="cpu")


def _mteb_scores(model, task) -> dict:
    results = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    return results.task_results[0].scores["test"][0]


def _our_ranks(model, task):
    evaluator = LanguageAwareRetrievalEvaluator.from_corpus(
        task.retrieval_corpus, settings=["multi"], mrr_at_k=(1, 10)
    )
    results = evaluator(model)
    queries, candidates, _ = evaluator.embed(model)
    return evaluator, results, evaluator.rank(queries, candidates)


def test_xquad_r_mixed_pool_matches_our_evaluator(xquad_model, shared_data):
    tiny_model = xquad_model
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
    # mteb breaks score ties by document id, we count them against the relevant candidate: see the helper.
    _assert_at_most_a_few_ties_with_relevant_candidates(evaluator, tiny_model)
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
    assert task.retrieval_corpus is task.lareqa
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


def _assert_at_most_a_few_ties_with_relevant_candidates(evaluator, model) -> None:
    """mteb breaks score ties by document id, we count them against the relevant candidate. Without ties the
    two rules cannot differ; a float32 tie can still happen by chance (tiny random models score everything
    alike), and each moves one relevant candidate by one rank: far below the 1e-4 tolerance for one or two."""
    queries, candidates, _ = evaluator.embed(model=model)
    similarity = queries @ candidates.T
    ties = sum(
        int((similarity[i] == similarity[i, column]).sum()) - 1
        for i, row in enumerate(evaluator.layout.relevant)
        for column in row[row >= 0]
    )
    assert ties <= 2, f"{ties} relevant candidates tie another candidate: the tie rules could differ"


def test_tatoeba_mixed_pool_matches_our_evaluator(tatoeba_model, tatoeba_held_out):
    tiny_model = tatoeba_model
    task = TatoebaMixedPool(tatoeba_held_out, direction="eng-x")
    pool = task.pool_size
    assert task.k_values[-1] == pool and 10 in task.k_values
    assert task.metadata.eval_langs == [TATOEBA_SCRIPTS[lang] for lang in ("eng", "deu", "fra")]
    scores = _mteb_scores(tiny_model, task)

    evaluator, results, ranks = _our_ranks(tiny_model, task)
    # One query language (English): our macro average over query languages is mteb's mean over queries.
    assert set(evaluator.query_languages) == {"eng"} and evaluator.num_skipped_queries == 0
    assert pool == len(evaluator.candidate_ids) and set(evaluator.candidate_languages) == {
        "deu",
        "fra",
    }
    # The pool is mixed: some English sentences have relevant translations in both languages.
    assert max(len(task.retrieval_corpus.relevant[qid]) for qid in evaluator.query_ids) >= 2
    _assert_at_most_a_few_ties_with_relevant_candidates(evaluator, tiny_model)
    assert scores["ndcg_at_10"] == pytest.approx(results["multi_ndcg@10"], abs=1e-4)
    assert scores[f"map_at_{pool}"] == pytest.approx(results["multi_map"], abs=1e-4)
    # Accuracy@1 (XTREME-R's Tatoeba metric) is MRR@1: 1 exactly when the top candidate is a translation.
    assert scores["mrr_at_1"] == pytest.approx(results["multi_mrr@1"], abs=1e-4)
    assert 0.01 < results["multi_map"] < 0.99 and scores["map_at_10"] < scores[f"map_at_{pool}"]


def test_tatoeba_to_english_pool_matches_our_per_query_values(tatoeba_model, tatoeba_held_out):
    tiny_model = tatoeba_model
    task = TatoebaMixedPool(tatoeba_held_out, direction="x-eng")
    pool = task.pool_size
    scores = _mteb_scores(tiny_model, task)
    evaluator, results, ranks = _our_ranks(tiny_model, task)
    assert set(evaluator.candidate_languages) == {"eng"} and set(evaluator.query_languages) == {"deu", "fra"}
    _assert_at_most_a_few_ties_with_relevant_candidates(evaluator, tiny_model)
    assert scores["ndcg_at_10"] == pytest.approx(np.mean(ndcg_at_k(ranks.multi, 10)), abs=1e-4)
    assert scores[f"map_at_{pool}"] == pytest.approx(np.mean(average_precision(ranks.multi)), abs=1e-4)
    assert scores["mrr_at_1"] == pytest.approx(np.mean(mrr_at_k(ranks.multi, 1)), abs=1e-4)
    # Our per-language x->English accuracy@1 is the mean of those per-query values within each language.
    deu = np.asarray(evaluator.query_languages) == "deu"
    assert results["multi_mrr@1"] == pytest.approx(
        (mrr_at_k(ranks.multi, 1)[deu].mean() + mrr_at_k(ranks.multi, 1)[~deu].mean()) / 2
    )


def test_tatoeba_mixed_pool_splits_a_folder_and_names_unknown_languages(shared_data, monkeypatch):
    from st_hybrid.data import split_tatoeba, tatoeba_retrieval

    task = TatoebaMixedPool(shared_data / "tatoeba", languages=["deu"], direction="x-eng")
    # The folder is split as split_tatoeba splits it: the task's pool is the held-out side.
    expected = tatoeba_retrieval(
        split_tatoeba(shared_data / "tatoeba", languages=["deu"])[1], direction="x-eng"
    )
    assert task.retrieval_corpus == expected and task.k_values[-1] == task.pool_size
    assert task.metadata.eval_langs == ["deu-Latn", "eng-Latn"]
    monkeypatch.delitem(TATOEBA_SCRIPTS, "deu")
    with pytest.raises(ValueError, match=r"No mteb language code for \['deu'\].*TATOEBA_SCRIPTS"):
        TatoebaMixedPool(shared_data / "tatoeba", languages=["deu"])
