"""st_hybrid.data: LAReQA loading (documented counts), training pairs, user-provided parallel data."""

from __future__ import annotations

import collections
import json

import pytest
from datasets import Dataset

from st_hybrid.data import (
    METADATA_COLUMNS,
    build_training_pairs,
    load_lareqa,
    load_lareqa_retrieval,
    load_parallel,
    load_tatoeba,
)


def _toy_parallel() -> Dataset:
    """Three ids: one in 3 languages, one in 2, one in 1."""
    rows = [
        ("p1", "en", "q1-en", "a1-en"),
        ("p1", "de", "q1-de", "a1-de"),
        ("p1", "fr", "q1-fr", "a1-fr"),
        ("p2", "en", "q2-en", "a2-en"),
        ("p2", "de", "q2-de", "a2-de"),
        ("p3", "en", "q3-en", "a3-en"),
    ]
    return Dataset.from_dict(
        dict(zip(["parallel_id", "language", "question", "answer"], map(list, zip(*rows))))
    )


def test_xquad_r_documented_counts(shared_data):
    corpus = load_lareqa_retrieval(shared_data / "xquad-r")
    assert corpus.languages == ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
    assert len(corpus.query_ids) == 13_090
    assert collections.Counter(corpus.query_languages) == {lang: 1_190 for lang in corpus.languages}
    assert len(corpus.candidate_ids) == 13_014
    assert len(set(corpus.candidate_ids)) == 13_014
    # 11-way parallel: each question has one relevant sentence per language.
    for qid, relevant in corpus.relevant.items():
        assert len(relevant) == 11
        assert {cid.split("/")[0] for cid in relevant} == set(corpus.languages), qid


def test_mlqa_r_documented_counts(shared_data):
    corpus = load_lareqa_retrieval(shared_data / "mlqa-r")
    assert len(corpus.languages) == 7
    assert len(corpus.query_ids) == 4_199
    assert len(corpus.candidate_ids) == 20_534
    assert {len(r) for r in corpus.relevant.values()} == {2, 3, 4}


def test_relevant_sentence_holds_the_answer(shared_data):
    """The relevant candidate of a question is the sentence whose span contains the answer."""
    corpus = load_lareqa_retrieval(shared_data / "xquad-r", languages=["en"])
    text_of = dict(zip(corpus.candidate_ids, corpus.candidate_texts))
    raw = json.loads((shared_data / "xquad-r" / "en.json").read_text())
    answers = {
        qa["id"]: qa["answers"][0]["text"] for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]
    }
    hits = sum(answers[qid.split("/")[1]] in text_of[next(iter(rel))] for qid, rel in corpus.relevant.items())
    # Answers spanning a sentence break are rare; the sentence must hold the answer text otherwise.
    assert hits / len(corpus.relevant) > 0.97


def test_max_articles_keeps_a_parallel_subset(shared_data):
    corpus = load_lareqa_retrieval(shared_data / "xquad-r", languages=["en", "de"], max_articles=3)
    assert 0 < len(corpus.query_ids) < 2 * 1_190
    candidates = set(corpus.candidate_ids)
    assert all(rel <= candidates and len(rel) == 2 for rel in corpus.relevant.values())


def test_load_lareqa_parallel_table(shared_data):
    table = load_lareqa(shared_data / "mlqa-r", languages=["en", "de"])
    assert set(table.column_names) >= {"parallel_id", "language", "question", "answer", "context", "source"}
    assert set(table["language"]) == {"en", "de"}
    assert set(table["source"]) == {"mlqa-r"}
    assert all(answer in context for answer, context in zip(table["answer"][:200], table["context"][:200]))


def test_unknown_language_names_the_available_ones(shared_data):
    with pytest.raises(ValueError, match=r"\['xx'\].*available"):
        load_lareqa(shared_data / "mlqa-r", languages=["en", "xx"])


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="LAReQA"):
        load_lareqa(tmp_path / "nope")


def test_training_pairs_mono_and_bounded_cross():
    pairs = build_training_pairs(_toy_parallel(), cross_partners=1, seed=0)
    assert pairs.column_names == ["query", "passage", *METADATA_COLUMNS[:4]]  # no answer_id in the table
    mono = [r for r in pairs if r["query_language"] == r["passage_language"]]
    cross = [r for r in pairs if r["query_language"] != r["passage_language"]]
    assert len(mono) == 6  # one per row
    # p1 rows get 1 partner each (3), p2 rows 1 each (2), p3 has no other language (0).
    assert len(cross) == 5
    for row in pairs:
        pid = row["parallel_id"]
        assert row["query"].startswith(f"q{pid[1]}-{row['query_language']}")
        assert row["passage"] == f"a{pid[1]}-{row['passage_language']}"


def test_all_cross_partners_is_every_ordered_pair():
    pairs = build_training_pairs(_toy_parallel(), cross_partners=None, include_mono=False)
    got = sorted((r["parallel_id"], r["query_language"], r["passage_language"]) for r in pairs)
    expected = sorted(
        [("p1", a, b) for a in ("en", "de", "fr") for b in ("en", "de", "fr") if a != b]
        + [("p2", "en", "de"), ("p2", "de", "en")]
    )
    assert got == expected


def test_cross_partner_choice_depends_on_seed_only():
    table = _toy_parallel()
    first = build_training_pairs(table, cross_partners=1, seed=3)
    assert first.to_list() == build_training_pairs(table, cross_partners=1, seed=3).to_list()
    seeds = {tuple(build_training_pairs(table, cross_partners=1, seed=s)["passage"]) for s in range(8)}
    assert len(seeds) > 1


def test_real_mlqa_pairs_have_no_same_language_cross(shared_data):
    pairs = build_training_pairs(load_lareqa(shared_data / "mlqa-r"), cross_partners=2)
    langs = list(zip(pairs["query_language"], pairs["passage_language"]))
    assert sum(q == p for q, p in langs) == 4_199  # exactly the mono pairs
    assert len(pairs) > 4_199 + 4_199  # most ids exist in 3-4 languages


def test_load_parallel_accepts_a_dataset_and_a_file(tmp_path):
    table = _toy_parallel()
    assert load_parallel(table, languages=["en"])["language"] == ["en"] * 3
    path = tmp_path / "parallel.jsonl"
    table.to_json(str(path))
    assert load_parallel(path).to_list() == table.to_list()


def test_load_parallel_names_missing_columns():
    with pytest.raises(ValueError, match=r"lacks columns \['answer'\]"):
        load_parallel(Dataset.from_dict({"parallel_id": ["a"], "language": ["en"], "question": ["q"]}))


def test_tatoeba_rows_pair_a_language_with_english(shared_data):
    table = load_tatoeba(shared_data / "tatoeba", languages=["deu", "fra"], max_per_language=10)
    assert len(table) == 40
    assert collections.Counter(table["language"]) == {"deu": 10, "fra": 10, "eng": 20}
    assert len(set(table["parallel_id"])) == 20


def test_tatoeba_folder_through_load_parallel_gives_cross_pairs_only(shared_data):
    table = load_parallel(shared_data / "tatoeba", languages=["deu", "fra", "eng"])
    assert set(table["language"]) == {"deu", "fra", "eng"}
    pairs = build_training_pairs(table.select(range(200)), cross_partners=1)
    # Bitext has no questions: mono pairs would pair a sentence with itself and are dropped.
    assert len(pairs) == 200
    assert all(q != p for q, p in zip(pairs["query_language"], pairs["passage_language"]))
    assert all(q != p for q, p in zip(pairs["query"], pairs["passage"]))
