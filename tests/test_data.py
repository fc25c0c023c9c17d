"""st_hybrid.data: LAReQA loading (documented counts), training pairs, user-provided parallel data."""

from __future__ import annotations

import collections
import json

import pytest
from datasets import Dataset

from st_hybrid.data import (
    METADATA_COLUMNS,
    available_languages,
    build_training_pairs,
    is_tatoeba_folder,
    load_lareqa,
    load_lareqa_retrieval,
    load_parallel,
    load_tatoeba,
    split_parallel,
    split_tatoeba,
    tatoeba_retrieval,
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


# ---------------------------------------------------------------------------------------------
# Tatoeba train / held-out split and the held-out retrieval corpus
# ---------------------------------------------------------------------------------------------
FEW_TATOEBA = ["afr", "deu", "fra", "ita", "nld", "spa"]


def _column(table: Dataset, name: str) -> list:
    """A column as a list, read column-wise (indexing a Dataset by name iterates rows: slow on Tatoeba)."""
    return table.select_columns([name]).to_dict()[name]


def _texts(table: Dataset) -> set[str]:
    return set(_column(table, "question")) | set(_column(table, "answer"))


def _assert_disjoint(train: Dataset, test: Dataset) -> None:
    assert _texts(train).isdisjoint(_texts(test))
    assert set(_column(train, "parallel_id")).isdisjoint(_column(test, "parallel_id"))


def _rows(table: Dataset) -> set[tuple[str, str]]:
    return set(zip(_column(table, "parallel_id"), _column(table, "language")))


@pytest.fixture(scope="module")
def few_tatoeba(shared_data) -> Dataset:
    return load_tatoeba(shared_data / "tatoeba", languages=FEW_TATOEBA)


def test_tatoeba_split_shares_no_text_and_no_id(few_tatoeba):
    # Not vacuous: English sentences recur across language pairs (one text under several ids).
    english = collections.Counter(
        t
        for t, lang in zip(_column(few_tatoeba, "question"), _column(few_tatoeba, "language"))
        if lang == "eng"
    )
    assert english.most_common(1)[0][1] >= 3
    train, test = split_parallel(few_tatoeba, test_fraction=0.2, seed=0)
    _assert_disjoint(train, test)
    assert len(train) + len(test) == len(few_tatoeba)
    assert _rows(train) | _rows(test) == _rows(few_tatoeba)


def test_tatoeba_split_is_deterministic_and_independent_of_row_order(few_tatoeba):
    train, test = split_parallel(few_tatoeba, seed=3)
    again_train, again_test = split_parallel(few_tatoeba, seed=3)
    assert _column(again_train, "parallel_id") == _column(train, "parallel_id") and _column(
        again_test, "question"
    ) == _column(test, "question")
    shuffled_train, shuffled_test = split_parallel(few_tatoeba.shuffle(seed=7), seed=3)
    assert _rows(shuffled_train) == _rows(train) and _rows(shuffled_test) == _rows(test)
    # The seed matters: another seed holds out other sentences.
    assert _rows(split_parallel(few_tatoeba, seed=4)[1]) != _rows(test)


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_tatoeba_split_honours_the_fraction(few_tatoeba, fraction):
    _, test = split_parallel(few_tatoeba, test_fraction=fraction)
    assert abs(len(test) / len(few_tatoeba) - fraction) < 0.03


@pytest.mark.parametrize("fraction", [0, 1, -0.2, 1.5, "0.2", None, True])
def test_split_rejects_a_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction must be"):
        split_parallel(_toy_parallel(), test_fraction=fraction)


def test_split_keeps_rows_linked_by_text_together():
    # p1 and p2 share no id but an English sentence: whatever the seed, they stay on one side with p3,
    # whose German answer repeats p2's German question.
    rows = [("p1", "en", "I have two cats."), ("p1", "af", "Ek het twee katte."),
            ("p2", "en", "I have two cats."), ("p2", "de", "Ich habe zwei Katzen."),
            ("p3", "en", "Two cats."), ("p3", "de", "Ich habe zwei Katzen."),
            ("p4", "en", "Hello."), ("p4", "de", "Hallo.")]  # fmt: skip
    table = Dataset.from_dict(
        {"parallel_id": [r[0] for r in rows], "language": [r[1] for r in rows],
         "question": [r[2] for r in rows], "answer": [r[2] for r in rows]}
    )  # fmt: skip
    sides = set()
    for seed in range(40):
        try:
            train, test = split_parallel(table, test_fraction=0.5, seed=seed)
        except ValueError as error:  # all four ids fell on one side
            assert "side empty" in str(error)
            continue
        _assert_disjoint(train, test)
        held_out = set(_column(test, "parallel_id"))
        assert held_out in ({"p1", "p2", "p3"}, {"p4"})
        sides.add(frozenset(held_out))
    assert len(sides) == 2  # both assignments happen: the hash, not the data, decides


def test_split_with_one_component_names_the_empty_side():
    table = Dataset.from_dict(
        {"parallel_id": ["p", "p"], "language": ["en", "de"], "question": ["a", "b"], "answer": ["a", "b"]}
    )
    with pytest.raises(ValueError, match=r"left the (train|test) side empty.*1 component"):
        split_parallel(table)


def test_full_tatoeba_split_and_language_subsets_agree(shared_data):
    """All 112 languages: disjoint, ~20% held out, and a language subset takes its rows from the same sides."""
    train, test = split_tatoeba(shared_data / "tatoeba")
    _assert_disjoint(train, test)
    assert len(set(_column(test, "language"))) == len(set(_column(train, "language"))) == 113
    assert 0.18 < len(test) / (len(train) + len(test)) < 0.22
    # The documented case: "I have two cats." translates into 47 languages, all on one side.
    cats = [side for side in (train, test) if "I have two cats." in set(_column(side, "question"))]
    assert len(cats) == 1
    assert sum(text == "I have two cats." for text in _column(cats[0], "question")) == 47
    sub_train, sub_test = split_tatoeba(shared_data / "tatoeba", languages=["eng", "deu", "fra"])
    assert set(_column(sub_train, "language")) == set(_column(sub_test, "language")) == {"eng", "deu", "fra"}
    assert _rows(sub_train) <= _rows(train) and _rows(sub_test) <= _rows(test)


def test_split_tatoeba_rejects_unknown_languages(shared_data):
    with pytest.raises(ValueError, match=r"Tatoeba languages \['xxx'\] are not in"):
        split_tatoeba(shared_data / "tatoeba", languages=["deu", "xxx"])


def _toy_bitext() -> Dataset:
    rows = [("afr-eng/0", "afr", "Ek het twee katte."), ("afr-eng/0", "eng", "I have two cats."),
            ("deu-eng/0", "deu", "Ich habe zwei Katzen."), ("deu-eng/0", "eng", "I have two cats."),
            ("deu-eng/1", "deu", "Hallo."), ("deu-eng/1", "eng", "Hello."),
            ("deu-eng/2", "deu", "Tom."), ("deu-eng/2", "eng", "Tom.")]  # fmt: skip
    return Dataset.from_dict(
        {"parallel_id": [r[0] for r in rows], "language": [r[1] for r in rows],
         "question": [r[2] for r in rows], "answer": [r[2] for r in rows]}
    )  # fmt: skip


def _relevant_texts(corpus) -> dict[str, set[str]]:
    text = dict(zip(corpus.candidate_ids, corpus.candidate_texts))
    return {
        query: {text[c] for c in corpus.relevant[qid]}
        for qid, query in zip(corpus.query_ids, corpus.query_texts)
    }


def test_tatoeba_retrieval_from_english_pools_every_translation():
    corpus = tatoeba_retrieval(_toy_bitext(), direction="eng-x")
    assert set(corpus.query_languages) == {"eng"} and set(corpus.candidate_languages) == {"afr", "deu"}
    # "I have two cats." is one query (not two) with both translations relevant; "Tom." in German is a
    # candidate equal to the query's text, and it is a translation of it.
    assert _relevant_texts(corpus) == {
        "I have two cats.": {"Ek het twee katte.", "Ich habe zwei Katzen."},
        "Hello.": {"Hallo."},
        "Tom.": {"Tom."},
    }
    assert set(corpus.query_ids).isdisjoint(corpus.candidate_ids)
    assert corpus.query_parallel_ids[corpus.query_texts.index("I have two cats.")] == "afr-eng/0"


def test_tatoeba_retrieval_to_english_queries_every_language():
    corpus = tatoeba_retrieval(_toy_bitext(), direction="x-eng")
    assert set(corpus.query_languages) == {"afr", "deu"} and set(corpus.candidate_languages) == {"eng"}
    assert len(corpus.candidate_ids) == 3  # distinct English sentences
    assert _relevant_texts(corpus)["Ek het twee katte."] == {"I have two cats."}
    # Ids do not depend on the row order.
    shuffled = tatoeba_retrieval(_toy_bitext().shuffle(seed=1), direction="x-eng")
    assert shuffled.relevant == corpus.relevant and sorted(shuffled.query_ids) == sorted(corpus.query_ids)


def test_tatoeba_retrieval_rejects_non_bitext_and_unknown_directions():
    with pytest.raises(ValueError, match="needs bitext rows"):
        tatoeba_retrieval(_toy_parallel())
    with pytest.raises(ValueError, match="direction must be one of"):
        tatoeba_retrieval(_toy_bitext(), direction="eng-eng")


def test_tatoeba_held_out_corpus_counts(shared_data):
    _, test = split_tatoeba(shared_data / "tatoeba", languages=FEW_TATOEBA)
    from_english = tatoeba_retrieval(test, direction="eng-x")
    to_english = tatoeba_retrieval(test, direction="x-eng")
    assert set(from_english.candidate_languages) == set(FEW_TATOEBA)
    assert (
        len(from_english.candidate_ids)
        == len(to_english.query_ids)
        == len(
            {
                (lang, text)
                for text, lang in zip(_column(test, "question"), _column(test, "language"))
                if lang != "eng"
            }
        )
    )
    assert len(from_english.query_ids) == len(to_english.candidate_ids) == len({
        text for text, lang in zip(_column(test, "question"), _column(test, "language")) if lang == "eng"
    })  # fmt: skip
    # Every English query has its translations in several languages at once: the mixed pool.
    assert max(len(ids) for ids in from_english.relevant.values()) >= 3


def test_capped_tatoeba_split_keeps_the_first_pairs_of_the_same_sides(shared_data):
    train, test = split_tatoeba(shared_data / "tatoeba", languages=FEW_TATOEBA)
    capped_train, capped_test = split_tatoeba(
        shared_data / "tatoeba", languages=FEW_TATOEBA, max_per_language=7
    )
    for full, capped in ((train, capped_train), (test, capped_test)):
        ids = _column(capped, "parallel_id")
        per_pair = collections.Counter(pid.split("/")[0] for pid in dict.fromkeys(ids))
        assert per_pair == {f"{lang}-eng": 7 for lang in FEW_TATOEBA}
        # The first 7 ids of each pair, in file order, with both their rows; nothing crosses the split.
        first = {}
        for pid in dict.fromkeys(_column(full, "parallel_id")):
            first.setdefault(pid.split("/")[0], []).append(pid)
        assert set(ids) == {pid for pids in first.values() for pid in pids[:7]}
        assert _rows(capped) <= _rows(full) and len(capped) == 2 * len(set(ids))
    _assert_disjoint(capped_train, capped_test)
    with pytest.raises(ValueError, match="max_per_language must be >= 1"):
        split_tatoeba(shared_data / "tatoeba", max_per_language=0)


def test_available_languages_of_each_kind_of_source(shared_data, tmp_path):
    assert available_languages(shared_data / "mlqa-r") == ["ar", "de", "en", "es", "hi", "vi", "zh"]
    assert available_languages(shared_data / "xquad-r" / "de.json") == ["de"]
    tatoeba = available_languages(shared_data / "tatoeba")
    assert len(tatoeba) == 113 and "eng" in tatoeba and "deu" in tatoeba
    assert is_tatoeba_folder(shared_data / "tatoeba") and not is_tatoeba_folder(shared_data / "mlqa-r")
    parquet = tmp_path / "pairs.parquet"
    _toy_parallel().to_parquet(str(parquet))
    assert available_languages(parquet) is None and available_languages(_toy_parallel()) is None
