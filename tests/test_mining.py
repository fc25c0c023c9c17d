"""Language-aware hard-negative mining: never from the positive group, language pools, ranks, margins."""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest
from datasets import Dataset

from st_hybrid.data import build_training_pairs, load_lareqa
from st_hybrid.mining import _positive_groups, lareqa_corpus, mine_hard_negatives, negative_columns

LANGUAGES = ("en", "de", "es", "ar")


class TopicModel:
    """A stand-in encoder: texts of one topic embed close together, so a row's own group (translations,
    shared answers) holds its nearest candidates: a miner without group exclusion would pick them."""

    def __init__(self, topic_of_text: dict[str, int], dimension: int = 16, noise: float = 0.3):
        self.topic_of_text, self.dimension, self.noise = topic_of_text, dimension, noise
        self.calls: list[tuple[str, list[str], str | None]] = []

    def _embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            topic = np.random.default_rng(self.topic_of_text.get(text, 10_000)).normal(size=self.dimension)
            jitter = np.random.default_rng(zlib.crc32(text.encode())).normal(size=self.dimension)
            vector = topic + self.noise * jitter
            rows.append(vector / np.linalg.norm(vector))
        return np.asarray(rows, dtype=np.float32)

    def encode_query(self, texts, prompt_name=None, prompt=None, **kwargs):
        self.calls.append(("query", list(texts), prompt if prompt is not None else prompt_name))
        return self._embed(list(texts))

    def encode_document(self, texts, prompt_name=None, prompt=None, **kwargs):
        self.calls.append(("passage", list(texts), prompt if prompt is not None else prompt_name))
        return self._embed(list(texts))


def random_parallel(seed: int, num_ids: int = 30, shared_answers: int = 4, shared_questions: int = 3):
    """A parallel table with translations, answers shared across ids and questions repeated across ids."""
    rng = np.random.default_rng(seed)
    rows = {"parallel_id": [], "language": [], "question": [], "answer": []}
    topic_of_text: dict[str, int] = {}
    for pid in range(num_ids):
        for language in rng.choice(LANGUAGES, size=rng.integers(1, len(LANGUAGES) + 1), replace=False):
            question = (
                f"shared question {rng.integers(shared_questions)}"
                if rng.random() < 0.1
                else f"q{pid}-{language}"
            )
            answer = (
                f"shared answer {rng.integers(shared_answers)}"
                if rng.random() < 0.2
                else f"a{pid}-{language}"
            )
            rows["parallel_id"].append(f"id{pid}")
            rows["language"].append(str(language))
            rows["question"].append(question)
            rows["answer"].append(answer)
            for text in (question, answer):
                topic_of_text.setdefault(text, pid)
    return Dataset.from_dict(rows), topic_of_text


def random_corpus(parallel: Dataset, topic_of_text: dict[str, int], seed: int) -> Dataset:
    """Filler sentences on each id's topic (hard, relevant to nobody) plus copies of some rows' texts."""
    rng = np.random.default_rng(seed)
    texts, languages = [], []
    for pid, language in zip(parallel["parallel_id"], parallel["language"]):
        for j in range(2):
            text = f"filler {pid}-{language}-{j}"
            topic_of_text[text] = int(pid[2:])
            texts.append(text)
            languages.append(language)
    copied = rng.choice(len(parallel), size=len(parallel) // 3, replace=False)
    texts += [parallel["answer"][i] if i % 2 else parallel["question"][i] for i in copied]
    languages += [parallel["language"][i] for i in copied]
    return Dataset.from_dict({"text": texts, "language": languages})


def reference_group_texts(pairs: Dataset) -> list[set[str]]:
    """Per row, every text of its positive group: plain union-find over ids and texts (independent of the
    vectorised implementation)."""
    parent: dict[tuple, tuple] = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for row in pairs:
        keys = [("id", row["parallel_id"]), ("text", row["query"]), ("text", row["passage"])]
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
    texts_of_root: dict[tuple, set[str]] = {}
    for row in pairs:
        texts_of_root.setdefault(find(("id", row["parallel_id"])), set()).update(
            (row["query"], row["passage"])
        )
    return [texts_of_root[find(("id", row["parallel_id"]))] for row in pairs]


def passage_languages_of_text(pairs: Dataset) -> dict[str, set[str]]:
    languages: dict[str, set[str]] = {}
    for passage, language in zip(pairs["passage"], pairs["passage_language"]):
        languages.setdefault(passage, set()).add(language)
    return languages


def mine(pairs, topic_of_text, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # rows without enough candidates are dropped, tested below
        return mine_hard_negatives(pairs, TopicModel(topic_of_text), **kwargs)


@pytest.mark.parametrize("candidates", ["passages", "passages+corpus", "corpus only"])
@pytest.mark.parametrize("language", ["passage", "query", "any"])
@pytest.mark.parametrize("seed", range(8))
def test_never_mines_from_the_positive_group(seed, language, candidates):
    parallel, topic_of_text = random_parallel(seed)
    pairs = build_training_pairs(parallel, cross_partners=2, seed=seed)
    corpus = random_corpus(parallel, topic_of_text, seed) if candidates != "passages" else None
    num_negatives = 1 + seed % 3
    mined = mine(
        pairs,
        topic_of_text,
        language=language,
        num_negatives=num_negatives,
        range_min=seed % 2,
        range_max=(seed % 2) + num_negatives + 2,
        ivf_threshold=20 if seed % 4 == 0 else 100_000,  # the approximate index too
        corpus=corpus,
        avoid_training_positives=candidates == "corpus only",
    )
    assert len(mined) > 0.5 * len(pairs)
    group_texts = reference_group_texts(pairs)
    row_of = {(r["query"], r["passage"], r["parallel_id"]): i for i, r in enumerate(pairs)}
    languages_of = passage_languages_of_text(pairs)
    if corpus is not None:
        for text, text_language in zip(corpus["text"], corpus["language"]):
            languages_of.setdefault(text, set()).add(text_language)
    training_texts = set(pairs["query"]) | set(pairs["passage"])
    for row in mined:
        texts = group_texts[row_of[(row["query"], row["passage"], row["parallel_id"])]]
        negatives = [row[name] for name in negative_columns(num_negatives)]
        assert not texts & set(negatives), (row, texts)
        assert len(set(negatives)) == num_negatives
        if language != "any":
            pool = row[f"{language}_language"]
            assert all(pool in languages_of[negative] for negative in negatives)
        if candidates == "corpus only":
            assert not training_texts & set(negatives)
        elif candidates == "passages":
            assert set(negatives) <= set(pairs["passage"])


def test_corpus_only_negatives_keep_the_sampler_groups():
    """Negatives from the training passages are other rows' positives: the sampler joins those rows' groups
    (here into one). Negatives that are nobody's positive leave the groups as they were."""
    from st_hybrid.sampler import PairMetadata

    parallel, topic_of_text = random_parallel(0, num_ids=40)
    pairs = build_training_pairs(parallel, cross_partners=2)
    corpus = random_corpus(parallel, topic_of_text, 0)
    before = PairMetadata.from_dataset(pairs).num_groups
    from_passages = mine(pairs, topic_of_text, language="any")
    assert PairMetadata.from_dataset(from_passages).num_groups < before / 2
    from_corpus = mine(pairs, topic_of_text, language="any", corpus=corpus, avoid_training_positives=True)
    assert len(from_corpus) == len(pairs)
    assert PairMetadata.from_dataset(from_corpus).num_groups == before
    with pytest.raises(ValueError, match="avoid_training_positives=True leaves no candidates"):
        mine_hard_negatives(pairs, TopicModel(topic_of_text), avoid_training_positives=True)
    with pytest.raises(ValueError, match="corpus lacks columns \\['language'\\]"):
        mine_hard_negatives(pairs, TopicModel(topic_of_text), corpus={"text": ["x"]})


def test_lareqa_corpus_holds_every_sentence(shared_data):
    corpus = lareqa_corpus(shared_data / "xquad-r", languages=["en", "de"], max_articles=1)
    assert corpus.column_names == ["text", "language"]
    assert set(corpus["language"]) == {"en", "de"}
    parallel = load_lareqa(shared_data / "xquad-r", ["en"], max_articles=1)
    assert set(parallel["answer"]) < set(corpus["text"])  # answers and the sentences around them


def test_topic_model_makes_group_members_the_nearest_candidates():
    """Guards the property test: without the group exclusion the top candidate is usually in the group."""
    parallel, topic_of_text = random_parallel(0)
    pairs = build_training_pairs(parallel, cross_partners=2)
    model = TopicModel(topic_of_text)
    passages = sorted(set(pairs["passage"]))
    scores = model.encode_query(pairs["query"]) @ model.encode_document(passages).T
    group_texts = reference_group_texts(pairs)
    nearest_in_group = [passages[best] in texts for best, texts in zip(scores.argmax(axis=1), group_texts)]
    assert np.mean(nearest_in_group) > 0.9


def test_groups_link_ids_and_texts_transitively():
    parallel_ids = np.array(["1", "1", "2", "3", "4"], dtype=object)
    queries = np.array(["q1", "q1-de", "q2", "q3", "q2"], dtype=object)  # row 4 repeats row 2's question
    passages = np.array(["a1", "a1-de", "a1-de", "a3", "a4"], dtype=object)  # row 2 shares row 1's answer
    groups = _positive_groups([parallel_ids], [queries, passages])
    assert groups[0] == groups[1] == groups[2] == groups[4] != groups[3]
    # An answer id (the same answer sentence) links rows whose texts and ids all differ.
    answer_ids = np.array(["s1", "s2", "s3", "s1", "s4"], dtype=object)
    groups = _positive_groups([parallel_ids, answer_ids], [queries, passages])
    assert len(set(groups)) == 1


def test_answer_id_is_a_grouping_key():
    pairs = Dataset.from_dict(
        {
            "query": ["q1", "q2", "q3"],
            "passage": ["a1", "a1 (other rendering)", "a3"],
            "passage_language": ["en"] * 3,
            "parallel_id": ["1", "2", "3"],
            "answer_id": ["x/0", "x/0", "x/1"],
        }
    )
    topics = {"q1": 1, "a1": 1, "a1 (other rendering)": 1, "q2": 1, "q3": 3, "a3": 3}
    mined = mine(pairs, topics, language="any")
    assert mined["negative"][:2] == ["a3", "a3"]  # without answer_id, q1 would get its neighbour's a1 twin
    assert mined.column_names == [
        "query",
        "passage",
        "negative",
        "passage_language",
        "parallel_id",
        "answer_id",
    ]


def test_language_pools():
    parallel, topic_of_text = random_parallel(3, num_ids=40)
    pairs = build_training_pairs(parallel, cross_partners=2)
    languages_of = passage_languages_of_text(pairs)

    same = mine(pairs, topic_of_text, language="passage")
    assert all(row["passage_language"] in languages_of[row["negative"]] for row in same)

    own = mine(pairs, topic_of_text, language="query")
    assert all(row["query_language"] in languages_of[row["negative"]] for row in own)
    cross = [row for row in own if row["query_language"] != row["passage_language"]]
    assert cross and any(row["passage_language"] not in languages_of[row["negative"]] for row in cross)

    anywhere = mine(pairs, topic_of_text, language="any", num_negatives=3, range_max=6)
    other_language = [
        row["passage_language"] not in languages_of[row[name]]
        for row in anywhere
        for name in negative_columns(3)
    ]
    assert any(other_language)  # negatives come from other languages too
    with pytest.raises(ValueError, match="language must be one of"):
        mine_hard_negatives(pairs, TopicModel(topic_of_text), language="target")
    with pytest.raises(ValueError, match="lack a 'query_language' column"):
        mine_hard_negatives(
            pairs.remove_columns("query_language"), TopicModel(topic_of_text), language="query"
        )


def test_output_columns_keep_metadata_and_are_deterministic():
    parallel, topic_of_text = random_parallel(5)
    pairs = build_training_pairs(parallel, cross_partners=1)
    one = mine(pairs, topic_of_text)
    assert one.column_names == ["query", "passage", "negative", *pairs.column_names[2:]]
    three = mine(pairs, topic_of_text, num_negatives=3, range_max=5)
    assert three.column_names[:5] == ["query", "passage", "negative_1", "negative_2", "negative_3"]
    assert three.column_names[5:] == pairs.column_names[2:]
    assert mine(pairs, topic_of_text, num_negatives=3, range_max=5).to_dict() == three.to_dict()
    assert one.to_list() == mine(pairs, topic_of_text).to_list()


def test_range_min_skips_the_closest_candidates():
    parallel, topic_of_text = random_parallel(7)
    pairs = build_training_pairs(parallel, cross_partners=2)
    top_two = mine(pairs, topic_of_text, num_negatives=2, language="any")
    skip_one = mine(pairs, topic_of_text, range_min=1, language="any")
    assert len(top_two) == len(skip_one) == len(pairs)
    assert skip_one["negative"] == top_two["negative_2"]
    assert skip_one["negative"] != top_two["negative_1"]


def test_margins_bound_the_negative_scores():
    parallel, topic_of_text = random_parallel(8, num_ids=40)
    pairs = build_training_pairs(parallel, cross_partners=2)
    model = TopicModel(topic_of_text)
    mined = mine(pairs, topic_of_text, language="any", absolute_margin=0.1, range_max=40)
    assert len(mined) > 0

    def score(queries, passages):
        return np.einsum("ij,ij->i", model.encode_query(queries), model.encode_document(passages))

    positive = score(mined["query"], mined["passage"])
    lowest_positive = {}
    for query, value in zip(pairs["query"], score(pairs["query"], pairs["passage"])):
        lowest_positive[query] = min(value, lowest_positive.get(query, np.inf))
    negative = score(mined["query"], mined["negative"])
    bound = np.array([lowest_positive[q] for q in mined["query"]]) - 0.1
    assert (negative <= bound + 1e-6).all()
    assert (positive > negative).all()
    unbounded = mine(pairs, topic_of_text, language="any")
    assert (score(unbounded["query"], unbounded["negative"]) > 0).any()


def test_each_distinct_text_is_encoded_once_with_the_given_prompts():
    parallel, topic_of_text = random_parallel(2)
    pairs = build_training_pairs(parallel, cross_partners=2)
    model = TopicModel(topic_of_text)
    mine_hard_negatives(pairs, model, query_prompt="query: ", passage_prompt_name="document")
    (role_q, queries, prompt_q), (role_p, passages, prompt_p) = model.calls
    assert (role_q, prompt_q, role_p, prompt_p) == ("query", "query: ", "passage", "document")
    assert sorted(queries) == sorted(set(pairs["query"]))
    assert sorted(passages) == sorted(set(pairs["passage"]))


def test_rows_without_enough_candidates_are_dropped_with_a_warning():
    parallel = Dataset.from_dict(
        {
            "parallel_id": ["1", "1", "2", "3"],
            "language": ["en", "de", "en", "en"],
            "question": ["q1", "q1 de", "q2", "q3"],
            "answer": ["a1", "a1 de", "a2", "a3"],
        }
    )
    pairs = build_training_pairs(parallel, cross_partners=1)
    with pytest.warns(UserWarning, match="fewer than 1 negatives and were dropped"):
        mined = mine_hard_negatives(pairs, TopicModel({}), language="passage")
    # German passages: only id 1's, all in its own group. English ones: a2 and a3 exist for every row.
    assert set(mined["passage_language"]) == {"en"}
    assert len(mined) == len(pairs) - pairs["passage_language"].count("de")


def test_bad_input_is_refused_with_the_fix():
    parallel, topic_of_text = random_parallel(1)
    pairs = build_training_pairs(parallel)
    model = TopicModel(topic_of_text)
    with pytest.raises(ValueError, match="lacks columns \\['parallel_id'\\]"):
        mine_hard_negatives(pairs.remove_columns("parallel_id"), model)
    with pytest.raises(ValueError, match="already have negative columns \\['negative'\\]"):
        mine_hard_negatives(pairs.add_column("negative", pairs["passage"]), model)
    with pytest.raises(ValueError, match="fewer than num_negatives=3"):
        mine_hard_negatives(pairs, model, num_negatives=3, range_min=2, range_max=4)
    with pytest.raises(ValueError, match="num_negatives must be an integer >= 1"):
        mine_hard_negatives(pairs, model, num_negatives=0)


def test_works_with_a_real_tiny_model(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    parallel, _ = random_parallel(4, num_ids=12)
    pairs = build_training_pairs(parallel, cross_partners=2)
    model = SentenceTransformer(tiny_model_path, device="cpu")
    mined = mine_hard_negatives(pairs, model, language="any", num_negatives=2, range_max=4)
    assert len(mined) == len(pairs)
    group_texts = reference_group_texts(pairs)
    for row, texts in zip(mined, group_texts):
        assert not texts & {row["negative_1"], row["negative_2"]}
