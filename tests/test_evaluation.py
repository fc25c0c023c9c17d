"""LanguageAwareRetrievalEvaluator: hand-checkable stub model, bad input, a tiny model on XQuAD-R, data counts."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter

import numpy as np
import pytest

from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator


# ------------------------------------------------------------------------------------------------
# A stub model: fixed embeddings per text, so every number can be checked by hand
# ------------------------------------------------------------------------------------------------
class _CardData:
    def __init__(self):
        self.calls = []

    def set_evaluation_metrics(self, evaluator, metrics, epoch, step):
        self.calls.append((evaluator, metrics, epoch, step))


class StubModel:
    """Looks up an embedding per text; records every text it is asked to encode."""

    def __init__(self, vectors: dict[str, list[float]], similarity_fn_name: str = "dot"):
        self.vectors = vectors
        self.similarity_fn_name = similarity_fn_name
        self.model_card_data = _CardData()
        self.encoded = {"query": [], "document": []}
        self.prompts_seen = []

    def _encode(self, kind, inputs, prompt=None, prompt_name=None, **kwargs):
        self.encoded[kind] += list(inputs)
        self.prompts_seen.append((kind, prompt, prompt_name))
        return np.array([self.vectors[text] for text in inputs], dtype=np.float32)

    def encode_query(self, inputs, **kwargs):
        return self._encode("query", inputs, **kwargs)

    def encode_document(self, inputs, **kwargs):
        return self._encode("document", inputs, **kwargs)


# Two languages. Query texts are shared by two query ids ("q-en" and "q-en-copy") to test deduplication;
# candidate "d2" duplicates the text of "d1" (an exact tie).
VECTORS = {
    "question en": [1.0, 0.0],
    "question de": [0.0, 1.0],
    "answer en": [0.9, 0.1],
    "other en": [0.5, 0.5],
    "answer de": [0.6, 0.4],
    "other de": [0.7, 0.7],
}
QUERIES = {"q-en": "question en", "q-en-copy": "question en", "q-de": "question de"}
QUERY_LANGUAGES = {"q-en": "en", "q-en-copy": "en", "q-de": "de"}
CORPUS = {
    "a-en": "answer en",
    "o-en": "other en",
    "a-de": "answer de",
    "o-de": "other de",
    "o-de-2": "other de",
}
CORPUS_LANGUAGES = {"a-en": "en", "o-en": "en", "a-de": "de", "o-de": "de", "o-de-2": "de"}
RELEVANT = {q: {"a-en", "a-de"} for q in QUERIES}


def _evaluator(**kwargs) -> LanguageAwareRetrievalEvaluator:
    args = {
        "queries": QUERIES,
        "corpus": CORPUS,
        "relevant_docs": RELEVANT,
        "query_languages": QUERY_LANGUAGES,
        "corpus_languages": CORPUS_LANGUAGES,
        "name": "toy",
    }
    args.update(kwargs)
    return LanguageAwareRetrievalEvaluator(**args)


def test_stub_model_hand_computed_numbers_and_encode_once(tmp_path):
    model = StubModel(VECTORS)
    evaluator = _evaluator(query_prompt="query: ", corpus_prompt="passage: ")
    results = evaluator(model, output_path=str(tmp_path))

    # Each distinct text encoded exactly once, with the configured prompts.
    assert Counter(model.encoded["query"]) == Counter({"question en": 1, "question de": 1})
    assert Counter(model.encoded["document"]) == Counter({t: 1 for t in set(CORPUS.values())})
    assert ("query", "query: ", None) in model.prompts_seen and (
        "document",
        "passage: ",
        None,
    ) in model.prompts_seen

    # Dot products. en query: a-en .9, o-en .5, a-de .6, o-de .7 (x2)
    #   en pool: a-en rank 1; de pool: a-de below two "other de" -> rank 3; multi: ranks 1 and 4.
    # de query: a-en .1, o-en .5, a-de .4, o-de .7 (x2)
    #   en pool: a-en rank 2; de pool: rank 3; multi: a-de rank 4, a-en rank 5.
    report = evaluator.last_report
    assert report["pair_map"] == {
        "de": {"de": pytest.approx(1 / 3), "en": pytest.approx(1 / 2)},
        "en": {"de": pytest.approx(1 / 3), "en": 1.0},
    }
    ap_en = (1 / 1 + 2 / 4) / 2
    ap_de = (1 / 4 + 2 / 5) / 2
    assert results["toy_mono_map"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert results["toy_cross_map"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert results["toy_multi_map"] == pytest.approx((ap_en + ap_de) / 2)  # macro over query languages
    assert results["toy_rank_distance"] == pytest.approx((3 + 1) / 2)
    assert results["toy_multi_recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert report["num_queries"] == 3 and report["num_candidates"] == 5
    assert evaluator.primary_metric == "toy_multi_map"
    assert model.model_card_data.calls[0][1] == results


def test_cosine_similarity_normalizes_embeddings():
    # Scaling a candidate's vector changes dot products but not cosine similarities.
    vectors = dict(VECTORS, **{"other de": [7.0, 7.0]})
    dot = _evaluator()(StubModel(vectors, "dot"))
    cosine = _evaluator()(StubModel(vectors, "cosine"))
    reference = _evaluator(similarity_fn_name="cosine")(StubModel(VECTORS, "dot"))
    assert cosine == pytest.approx(reference)
    assert dot["toy_cross_map"] != pytest.approx(cosine["toy_cross_map"])


def test_duplicate_candidate_text_ties_against_the_relevant_one():
    corpus = dict(CORPUS, **{"dup-en": "answer en"})  # same text as the relevant a-en: an exact tie
    evaluator = _evaluator(corpus=corpus, corpus_languages=dict(CORPUS_LANGUAGES, **{"dup-en": "en"}))
    model = StubModel(VECTORS)
    evaluator(model)
    assert model.encoded["document"].count("answer en") == 1
    # en query, en pool: a-en and dup-en both score .9; pessimistically a-en comes second.
    assert evaluator.last_report["pair_map"]["en"]["en"] == pytest.approx(1 / 2)


def test_unsupported_similarity_is_refused():
    with pytest.raises(ValueError, match="not supported"):
        _evaluator()(StubModel(VECTORS, "manhattan"))
    with pytest.raises(ValueError, match="similarity_fn_name"):
        _evaluator(similarity_fn_name="euclidean")


def test_files_follow_the_report_schema(tmp_path):
    evaluator = _evaluator()
    evaluator(StubModel(VECTORS), output_path=str(tmp_path), epoch=1, steps=10)
    evaluator(StubModel(VECTORS), output_path=str(tmp_path), epoch=2, steps=20)
    report = json.loads((tmp_path / "toy_metrics.json").read_text())
    for key in ("name", "languages", "num_queries", "num_candidates", "metrics", "per_language", "pair_map"):
        assert key in report
    assert report["languages"] == ["de", "en"]
    assert report["pair_map"]["en"]["de"] == pytest.approx(1 / 3)
    assert set(report["per_language"]["en"]) >= {"mono_map", "cross_map", "multi_map", "rank_distance"}
    rows = list(csv.reader((tmp_path / "toy_metrics.csv").open()))
    assert rows[0][:4] == ["epoch", "steps", "mono_map", "cross_map"] and len(rows) == 3
    assert rows[2][:2] == ["2", "20"]
    pair_rows = list(csv.reader((tmp_path / "toy_pair_map.csv").open()))
    assert pair_rows[0] == ["query_language", "de", "en"]
    assert float(pair_rows[2][1]) == pytest.approx(1 / 3)
    png = (tmp_path / "toy_pair_map.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_primary_metric_and_direction():
    evaluator = _evaluator(primary_metric="rank_distance")
    assert evaluator.greater_is_better is False
    evaluator(StubModel(VECTORS))
    assert evaluator.primary_metric == "toy_rank_distance"
    with pytest.raises(ValueError, match="primary_metric"):
        _evaluator(primary_metric="multi_map", settings=["mono"])


def test_stub_model_language_bias_hand_computed(tmp_path):
    evaluator = _evaluator(language_share_at_k=(1, 2))
    results = evaluator(StubModel(VECTORS), output_path=str(tmp_path))
    # Multilingual rankings (dot products above): en queries a-en, o-de, o-de-2, a-de, o-en;
    # de query o-de, o-de-2, o-en, a-de, a-en. Relevant share of the own language: 1/2 for every query.
    # Top-1 own share: en 1, de 1 -> preference 1/2 each. Top-2: en 1/2 (-> 0), de 1 (-> 1/2).
    assert results["toy_language_preference@1"] == pytest.approx(0.5)
    assert results["toy_language_preference@2"] == pytest.approx(0.25)
    report = evaluator.last_report
    assert report["top_k_language_share"]["2"] == {
        "de": {"de": 1.0, "en": 0.0},
        "en": {"de": 0.5, "en": 0.5},
    }
    # Rank fairness, en: two identical queries, ranks en [1, 1], de [4, 4]: midranks 1.5, 1.5 | 3.5, 3.5,
    # H = (12 / 20 * (3**2 / 2 + 7**2 / 2) - 15) / (1 - 12 / 60) = 2.4 / 0.8 = 3, p = erfc(sqrt(1.5)).
    # de: ranks de [4], en [5]: H = N - 1 = 1.
    fairness = report["rank_fairness"]
    assert fairness["en"]["h"] == pytest.approx(3.0) and fairness["en"]["epsilon2"] == pytest.approx(1.0)
    assert fairness["en"]["p"] == pytest.approx(math.erfc(math.sqrt(1.5)))
    assert fairness["de"]["h"] == pytest.approx(1.0)
    assert results["toy_rank_fairness_p"] == pytest.approx(
        (math.erfc(math.sqrt(1.5)) + math.erfc(math.sqrt(0.5))) / 2
    )
    written = json.loads((tmp_path / "toy_metrics.json").read_text())
    assert written["rank_fairness"]["en"]["num_ranks"] == 4
    assert written["metrics"]["language_preference@2"] == pytest.approx(0.25)
    header = next(csv.reader((tmp_path / "toy_metrics.csv").open()))
    assert header[-4:] == [
        "language_preference@1",
        "language_preference@2",
        "rank_fairness_epsilon2",
        "rank_fairness_p",
    ]


def test_undefined_bias_metrics_are_written_as_null(tmp_path):
    # One language: no second group for the rank-fairness test (NaN), written as JSON null.
    evaluator = _evaluator(languages=["de"], settings=["mono", "multi"], pools=[["de"]])
    results = evaluator(StubModel(VECTORS), output_path=str(tmp_path))
    assert math.isnan(results["toy_rank_fairness_p"]) and math.isnan(results["toy_rank_fairness_epsilon2"])
    text = (tmp_path / "toy_metrics.json").read_text()
    assert "NaN" not in text
    written = json.loads(text)
    assert written["metrics"]["rank_fairness_p"] is None
    assert written["rank_fairness"]["de"]["h"] is None
    assert written["per_language"]["de"]["rank_fairness_epsilon2"] is None
    assert written["pools"][0]["metrics"]["rank_fairness_p"] is None


def test_pools_reuse_the_embeddings_and_equal_separate_evaluations(tmp_path):
    model = StubModel(VECTORS)
    evaluator = _evaluator(languages=["en", "de"], pools=[1, ["de"], 2])
    evaluator(model, output_path=str(tmp_path))
    assert len(model.encoded["query"]) == 2  # encoded once, not once per pool
    pools = evaluator.last_report["pools"]
    assert [pool["languages"] for pool in pools] == [["en"], ["de"], ["en", "de"]]
    assert pools[0]["settings"] == ["mono", "multi"]  # no cross pair in a one-language pool
    for pool in pools:
        settings = pool["settings"]
        separate = _evaluator(languages=pool["languages"], settings=settings)
        separate(StubModel(VECTORS))
        assert pool["metrics"] == pytest.approx(separate.last_report["metrics"], nan_ok=True)
        assert pool["num_queries"] == separate.last_report["num_queries"]
        assert pool["num_candidates"] == separate.last_report["num_candidates"]
    # The en pool by hand: en queries rank a-en first among en candidates -> multi mAP 1.
    assert pools[0]["metrics"]["multi_map"] == 1.0
    rows = list(csv.reader((tmp_path / "toy_pools.csv").open()))
    assert rows[0][:5] == ["num_languages", "languages", "num_queries", "num_candidates", "mono_map"]
    assert [row[1] for row in rows[1:]] == ["en", "de", "en de"]
    assert rows[1][5] == ""  # cross_map: not computed in a one-language pool


def test_bad_pools_are_errors():
    with pytest.raises(ValueError, match="Pool size 3"):
        _evaluator(pools=[3])
    with pytest.raises(ValueError, match="Unknown languages"):
        _evaluator(pools=[["en", "fr"]])
    with pytest.raises(ValueError, match="string"):
        _evaluator(pools=["en"])
    with pytest.raises(ValueError, match="language_share_at_k"):
        _evaluator(language_share_at_k=(0,))


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="Unknown languages"):
        _evaluator(languages=["en", "fr"])


def test_mismatched_ids_are_errors():
    with pytest.raises(ValueError, match="unknown candidate ids"):
        _evaluator(relevant_docs={"q-en": {"a-en", "missing"}})
    with pytest.raises(ValueError, match="unknown query ids"):
        _evaluator(relevant_docs={"q-missing": {"a-en"}})
    with pytest.raises(ValueError, match="without a language"):
        _evaluator(query_languages={"q-en": "en", "q-de": "de"})
    with pytest.raises(ValueError, match="empty language"):
        _evaluator(corpus_languages=dict(CORPUS_LANGUAGES, **{"o-en": " "}))


def test_queries_without_relevant_candidates_are_skipped_and_reported(caplog):
    relevant = {"q-en": {"a-en", "a-de"}, "q-de": {"a-de"}}
    evaluator = _evaluator(relevant_docs=relevant)
    assert evaluator.num_skipped_queries == 1 and "q-en-copy" not in evaluator.query_ids
    assert "skipping 1 queries without a relevant candidate" in caplog.text
    evaluator(StubModel(VECTORS))
    assert evaluator.last_report["num_skipped_queries"] == 1


def test_language_pairs_without_eligible_queries_are_left_out(tmp_path, caplog):
    # The en queries have no German answer: en->de cannot be evaluated, de->en can.
    relevant = {"q-en": {"a-en"}, "q-en-copy": {"a-en"}, "q-de": {"a-de", "a-en"}}
    evaluator = _evaluator(relevant_docs=relevant)
    results = evaluator(StubModel(VECTORS), output_path=str(tmp_path))
    report = evaluator.last_report
    assert report["empty_pairs"] == [["en", "de"]]
    assert math.isnan(report["pair_map"]["en"]["de"])
    assert results["toy_cross_map"] == pytest.approx(1 / 2)  # de->en only, not averaged with a 0
    assert "1 language pairs have no query" in caplog.text and "en->de" in caplog.text
    written = json.loads((tmp_path / "toy_metrics.json").read_text())
    assert written["pair_map"]["en"]["de"] is None
    assert list(csv.reader((tmp_path / "toy_pair_map.csv").open()))[2] == ["en", "", "1.0"]


def test_setting_without_eligible_queries_is_an_error():
    only_cross = {"q-en": {"a-de"}, "q-en-copy": {"a-de"}, "q-de": {"a-en"}}
    with pytest.raises(ValueError, match="'mono' setting has no query"):
        _evaluator(relevant_docs=only_cross)
    evaluator = _evaluator(relevant_docs=only_cross, settings=["cross", "multi"])
    results = evaluator(StubModel(VECTORS))
    assert "toy_mono_map" not in results and "toy_cross_map" in results
    with pytest.raises(ValueError, match="settings"):
        _evaluator(settings=["mono", "bilingual"])


def test_language_selection_drops_other_languages():
    evaluator = _evaluator(languages=["de"], settings=["mono", "multi"])
    assert set(evaluator.candidate_languages) == {"de"} and set(evaluator.query_languages) == {"de"}
    evaluator(StubModel(VECTORS))
    assert evaluator.last_report["pair_map"] == {"de": {"de": pytest.approx(1 / 3)}}


# ------------------------------------------------------------------------------------------------
# A tiny real model on XQuAD-R
# ------------------------------------------------------------------------------------------------
XQUAD_LANGUAGES = ["ar", "de", "en"]


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny_model_path, device="cpu")


@pytest.fixture(scope="module")
def xquad_evaluator(shared_data):
    return LanguageAwareRetrievalEvaluator.from_lareqa(
        shared_data / "xquad-r", languages=XQUAD_LANGUAGES, max_articles=1, write_predictions=True, top_k=10
    )


def test_tiny_model_on_xquad_subset(tiny_model, xquad_evaluator, tmp_path, monkeypatch):
    encoded = []
    original = tiny_model.encode

    def recording_encode(inputs, *args, **kwargs):
        encoded.append((kwargs.get("task"), list(inputs)))
        return original(inputs, *args, **kwargs)

    monkeypatch.setattr(tiny_model, "encode", recording_encode)
    results = xquad_evaluator(tiny_model, output_path=str(tmp_path))

    # Each distinct text encoded once: one query call and one document call, no duplicates.
    query_texts = [text for task, texts in encoded if task == "query" for text in texts]
    document_texts = [text for task, texts in encoded if task == "document" for text in texts]
    assert len(encoded) == 2
    assert len(query_texts) == len(set(query_texts)) == len(set(xquad_evaluator.query_texts))
    assert len(document_texts) == len(set(document_texts)) == len(set(xquad_evaluator.candidate_texts))

    name = xquad_evaluator.name
    assert name == "xquad-r"
    for key in ("mono_map", "cross_map", "multi_map", "rank_distance", "multi_ndcg@10", "multi_recall@10"):
        assert f"{name}_{key}" in results
    for key, value in results.items():
        if key.endswith("rank_distance"):
            assert 0 <= value < xquad_evaluator.last_report["num_candidates"]
        else:
            assert 0 <= value <= 1, key
    report = xquad_evaluator.last_report
    assert report["languages"] == XQUAD_LANGUAGES
    assert sorted(report["pair_map"]) == XQUAD_LANGUAGES and all(
        len(row) == 3 for row in report["pair_map"].values()
    )
    assert report["num_queries_per_setting"]["cross"] == 2 * report["num_queries_per_setting"]["mono"]
    for suffix in ("metrics.json", "metrics.csv", "pair_map.csv", "pair_map.png", "predictions.jsonl"):
        assert (tmp_path / f"{name}_{suffix}").stat().st_size > 0
    # The subset is recorded, so reports and cards never pass it off as the full benchmark.
    assert json.loads((tmp_path / f"{name}_metrics.json").read_text())["pool"] == {"max_articles": 1}

    # The faiss top-k lists agree with the exact ranks: Recall@10 recomputed from them is the reported one.
    relevant = dict(_relevant_ids(xquad_evaluator))
    recall_per_language: dict[str, list[float]] = {lang: [] for lang in XQUAD_LANGUAGES}
    with open(tmp_path / f"{name}_predictions.jsonl", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == report["num_queries"]
    for line in lines:
        top = [hit["corpus_id"] for hit in line["results"]]
        assert len(top) == 10
        scores = [hit["score"] for hit in line["results"]]
        assert scores == sorted(scores, reverse=True)
        hits = len(set(top) & relevant[line["query_id"]])
        recall_per_language[line["query_language"]].append(hits / len(relevant[line["query_id"]]))
    recall = np.mean([np.mean(values) for values in recall_per_language.values()])
    assert recall == pytest.approx(results[f"{name}_multi_recall@10"], abs=1e-9)


def _relevant_ids(evaluator):
    layout = evaluator.layout
    for qid, row in zip(evaluator.query_ids, layout.relevant, strict=True):
        yield qid, {evaluator.candidate_ids[c] for c in row if c >= 0}


def test_query_chunking_does_not_change_results(tiny_model, shared_data):
    kwargs = {"languages": ["en", "de"], "max_articles": 1}
    small = LanguageAwareRetrievalEvaluator.from_lareqa(shared_data / "xquad-r", query_chunk_size=7, **kwargs)
    large = LanguageAwareRetrievalEvaluator.from_lareqa(
        shared_data / "xquad-r", query_chunk_size=4096, **kwargs
    )
    assert small(tiny_model) == large(tiny_model)


def test_nested_pools_equal_separate_evaluations_with_a_tiny_model(tiny_model, shared_data):
    languages = ["en", "de", "ar", "zh"]
    kwargs = {"max_articles": 1}
    nested = LanguageAwareRetrievalEvaluator.from_lareqa(
        shared_data / "xquad-r", languages=languages, pools=[1, 2, 4, ["zh", "ar"]], **kwargs
    )
    # The tiny model's embedding of every text, computed once: a text gets the same vector in the nested
    # and in the separate evaluations (batching would otherwise change the padding and the last bits).
    texts = nested.query_texts + nested.candidate_texts
    vectors = dict(zip(texts, tiny_model.encode(texts, batch_size=64).tolist(), strict=True))
    frozen_model = StubModel(vectors, similarity_fn_name=tiny_model.similarity_fn_name)
    nested(frozen_model)
    pools = nested.last_report["pools"]
    assert [pool["languages"] for pool in pools] == [["en"], ["en", "de"], languages, ["zh", "ar"]]
    for pool in pools:
        separate = LanguageAwareRetrievalEvaluator.from_lareqa(
            shared_data / "xquad-r", languages=pool["languages"], settings=pool["settings"], **kwargs
        )
        separate(frozen_model)
        assert pool["num_queries"] == len(separate.query_ids)
        assert pool["metrics"] == pytest.approx(separate.last_report["metrics"], rel=1e-9, nan_ok=True)
        assert list(pool["per_language"]) == list(separate.last_report["per_language"])
        for language, values in pool["per_language"].items():
            expected = separate.last_report["per_language"][language]
            assert values == pytest.approx(expected, rel=1e-9, nan_ok=True)
    # The full 4-language pool is the main report.
    assert pools[2]["metrics"] == pytest.approx(nested.last_report["metrics"], nan_ok=True)
    assert [pool["num_candidates"] for pool in pools[:3]] == sorted(
        pool["num_candidates"] for pool in pools[:3]
    )


# ------------------------------------------------------------------------------------------------
# Data: the documented counts
# ------------------------------------------------------------------------------------------------
def test_xquad_r_loads_with_documented_counts(shared_data):
    evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(shared_data / "xquad-r")
    assert evaluator.languages == ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
    assert len(evaluator.candidate_ids) == 13_014
    assert Counter(evaluator.query_languages) == {lang: 1190 for lang in evaluator.languages}
    assert evaluator.num_skipped_queries == 0
    # Every question has its 11 parallel answers, one per language.
    assert (evaluator.layout.relevant >= 0).sum(axis=1).tolist() == [11] * 13_090
    assert all((r[:, 0] >= 0).all() for r in evaluator.layout.relevant_by_language)


def test_mlqa_r_loads_with_documented_counts(shared_data):
    evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(shared_data / "mlqa-r")
    assert evaluator.languages == ["ar", "de", "en", "es", "hi", "vi", "zh"]
    assert len(evaluator.candidate_ids) == 20_534
    num_relevant = (evaluator.layout.relevant >= 0).sum(axis=1)
    assert num_relevant.min() >= 2 and num_relevant.max() <= 4
    report_pairs = sum(int((r[:, 0] >= 0).sum()) for r in evaluator.layout.relevant_by_language)
    assert report_pairs == num_relevant.sum()  # one relevant answer per language at most
    assert len(evaluator.query_ids) == 4_199 and evaluator.num_skipped_queries == 0


def test_tatoeba_evaluator_reads_the_held_out_side_only(tiny_model, shared_data):
    from st_hybrid.data import split_tatoeba, tatoeba_retrieval

    languages = ["deu", "fra", "rus"]
    evaluator = LanguageAwareRetrievalEvaluator.from_tatoeba(
        shared_data / "tatoeba", direction="eng-x", languages=languages, max_per_language=20, mrr_at_k=(1,)
    )
    train, test = split_tatoeba(shared_data / "tatoeba", languages=languages)
    train_texts = set(train["question"])
    assert train_texts.isdisjoint(evaluator.query_texts) and train_texts.isdisjoint(evaluator.candidate_texts)
    assert set(evaluator.candidate_texts) <= set(test["question"])
    assert evaluator.languages == ["eng", *languages] and evaluator.settings == ("cross", "multi")
    description = evaluator.pool["description"]
    assert "held-out" in description and "at most 20 pairs per language" in description
    assert f"{len(evaluator.query_ids)} queries x {len(evaluator.candidate_ids)} candidates" in description
    # The same numbers as an evaluator built by hand from the capped held-out side.
    _, capped = split_tatoeba(shared_data / "tatoeba", languages=languages, max_per_language=20)
    by_hand = LanguageAwareRetrievalEvaluator.from_corpus(
        tatoeba_retrieval(capped, direction="eng-x"), settings=["cross", "multi"], mrr_at_k=(1,)
    )
    ours, theirs = evaluator.compute_report(tiny_model), by_hand.compute_report(tiny_model)
    assert ours["metrics"] == pytest.approx(theirs["metrics"], nan_ok=True)
    assert ours["pool"]["config"] == "tatoeba-held-out-eng-x" and "pool" not in theirs
    to_english = LanguageAwareRetrievalEvaluator.from_tatoeba(
        shared_data / "tatoeba", direction="x-eng", languages=languages, max_per_language=20
    )
    assert to_english.settings == ("multi",) and set(to_english.candidate_texts) <= set(test["question"])


def test_worst_relevant_experiment_explains_the_reported_rank_distance(
    tiny_model_path, shared_data, tmp_path, example_script
):
    # examples/experiments/worst_relevant.py: its rank distance is the evaluator's, every query's worst relevant
    # answer is in exactly one language, and each language's mean rank is that of its relevant answers.
    from sentence_transformers import SentenceTransformer

    script = example_script("experiments/worst_relevant.py")

    data = str(shared_data / "xquad-r")
    result = script.main(
        [
            "--model",
            tiny_model_path,
            "--data",
            data,
            "--max-articles",
            "1",
            "--output",
            str(tmp_path / "w.json"),
        ]
    )
    evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(data, max_articles=1, name="xquad-r")
    report = evaluator.compute_report(SentenceTransformer(tiny_model_path))
    assert result["rank_distance"] == pytest.approx(report["metrics"]["rank_distance"], rel=1e-9)
    table = result["by_candidate_language"]
    assert sorted(table) == sorted(evaluator.layout.languages)
    assert sum(row["worst_share"] for row in table.values()) == pytest.approx(1.0)
    assert all(1 <= row["mean_rank"] <= len(evaluator.candidate_ids) for row in table.values())
    assert json.loads((tmp_path / "w.json").read_text())["num_queries"] == len(evaluator.query_ids)
