"""The serving harness: faiss index setups, per-language merging, quantized search, top-k metrics."""

from __future__ import annotations

import numpy as np
import pytest

from st_hybrid import metrics
from st_hybrid.serving import (
    PerLanguageIndex,
    QuantizedIndex,
    build_index,
    index_nbytes,
    measure_latency,
    quantized_search,
    search,
    topk_quality,
    topk_ranks,
)


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tiny_embeddings(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_model_path)
    texts = [f"sentence number {i} in the pool" for i in range(60)] + ["Paris ist die Hauptstadt"] * 2
    corpus = model.encode(texts, normalize_embeddings=True)
    queries = model.encode([f"question {i}" for i in range(10)], normalize_embeddings=True)
    return corpus, queries


def test_flat_index_equals_exact_search_on_a_tiny_model(tiny_embeddings):
    corpus, queries = tiny_embeddings
    scores, ids = search(build_index(corpus, "flat"), queries, k=len(corpus))
    exact = queries @ corpus.T
    np.testing.assert_allclose(scores, -np.sort(-exact, axis=1), atol=1e-5)
    # Ids agree wherever the exact scores are not tied (the duplicated text ties with itself).
    np.testing.assert_allclose(np.take_along_axis(exact, ids, axis=1), scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["sq8", "hnsw", "ivf_flat", "ivf_pq"])
def test_approximate_indexes_find_most_exact_neighbours(kind):
    corpus, queries = _unit(2000, 32, 0), _unit(50, 32, 1)
    _, exact_ids = search(build_index(corpus, "flat"), queries, k=10)
    _, ids = search(build_index(corpus, kind, nprobe=32), queries, k=10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids.tolist(), ids.tolist())])
    assert overlap > (0.9 if kind in ("sq8", "hnsw", "ivf_flat") else 0.3)
    assert index_nbytes(build_index(corpus, kind)) > 0


def test_compressed_index_is_smaller_than_flat():
    corpus = _unit(2000, 32, 0)
    assert index_nbytes(build_index(corpus, "ivf_pq", pq_m=8)) < index_nbytes(build_index(corpus, "flat")) / 2


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="Unknown index kind 'annoy'"):
        build_index(_unit(10, 4, 0), "annoy")


def test_per_language_score_merge_equals_the_shared_index():
    corpus, queries = _unit(300, 16, 0), _unit(20, 16, 1)
    languages = np.array(["en", "de", "fr"])[np.arange(300) % 3]
    shared_scores, shared_ids = search(build_index(corpus, "flat"), queries, k=25)
    scores, ids = PerLanguageIndex(corpus, languages, merge="score").search(queries, k=25)
    np.testing.assert_array_equal(ids, shared_ids)
    np.testing.assert_allclose(scores, shared_scores, atol=1e-6)


def test_per_language_index_with_one_language_is_the_shared_index():
    corpus, queries = _unit(100, 16, 0), _unit(5, 16, 1)
    for merge in ("score", "round_robin"):
        _, ids = PerLanguageIndex(corpus, ["en"] * 100, merge=merge).search(queries, k=30)
        np.testing.assert_array_equal(ids, search(build_index(corpus, "flat"), queries, k=30)[1])


def test_round_robin_merge_balances_languages():
    corpus, queries = _unit(300, 16, 0), _unit(20, 16, 1)
    languages = np.array(["en", "de", "fr"])[np.arange(300) % 3]
    _, ids = PerLanguageIndex(corpus, languages, merge="round_robin").search(queries, k=12)
    for row in ids:
        assert sorted(np.unique(languages[row], return_counts=True)[1].tolist()) == [4, 4, 4]
    # The first round holds every language's best candidate, the best of those first.
    for lang in ("en", "de", "fr"):
        rows = np.flatnonzero(languages == lang)
        best = rows[search(build_index(corpus[rows], "flat"), queries, 1)[1][:, 0]]
        assert all(b in row[:3] for b, row in zip(best, ids))
    _, shared_ids = search(build_index(corpus, "flat"), queries, k=1)
    np.testing.assert_array_equal(ids[:, 0], shared_ids[:, 0])


@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_quantized_search_rescoring_over_the_whole_pool_is_nearly_exact(precision):
    corpus, queries = _unit(200, 64, 0), _unit(30, 64, 1)
    _, exact_ids = search(build_index(corpus, "flat"), queries, k=10)
    # k * multiplier = the whole pool: every candidate is rescored, so only de-quantization error remains.
    scores, ids, nbytes = quantized_search(corpus, queries, precision, k=10, rescore_multiplier=20)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids.tolist(), ids.tolist())])
    if precision == "int8":
        assert overlap > 0.9
    else:  # binary rescoring scores the float query against the corpus *bits*: asymmetric, not exact
        bits = (corpus > 0).astype(np.float64)
        np.testing.assert_allclose(scores, np.take_along_axis(queries @ bits.T, ids, axis=1), atol=1e-5)
        assert overlap > 0.3
    assert nbytes == corpus.nbytes // (4 if precision == "int8" else 32)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # rescored lists are sorted


def test_quantized_search_rejects_unknown_precision():
    with pytest.raises(ValueError, match="Unknown precision 'int4'"):
        quantized_search(_unit(10, 8, 0), _unit(2, 8, 1), "int4", k=3)


def test_topk_ranks_match_full_ranks_when_the_list_is_complete():
    rng = np.random.default_rng(0)
    scores = rng.random((6, 40))
    relevant = [rng.choice(40, size=3, replace=False).tolist() for _ in range(6)]
    ids = np.argsort(-scores, axis=1)
    np.testing.assert_array_equal(
        topk_ranks(ids, relevant), metrics.relevant_ranks_from_scores(scores, relevant)
    )


def test_topk_quality_hand_computed():
    ids = np.array([[3, 1, 7], [5, 6, -1]])
    relevant = [[1, 9], [8]]
    quality = topk_quality(ids, relevant, k=3)
    # query 1: relevant at rank 2, the other missing -> AP@3 = (1/2) / 2; query 2: nothing found
    assert quality["map@3"] == pytest.approx((0.25 + 0.0) / 2)
    assert quality["recall@3"] == pytest.approx((0.5 + 0.0) / 2)
    ndcg_first = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert quality["ndcg@10"] == pytest.approx(ndcg_first / 2)


def test_measure_latency_reports_positive_figures():
    corpus, queries = _unit(500, 16, 0), _unit(50, 16, 1)
    index = build_index(corpus, "flat")
    report = measure_latency(lambda q, k: search(index, q, k), queries, k=10, single_queries=20)
    assert 0 < report.p50_ms <= report.p95_ms
    assert report.qps > 0


def test_per_language_index_with_a_pool_smaller_than_k():
    corpus, queries = _unit(60, 16, 0), _unit(5, 16, 1)
    languages = np.array(["en"] * 50 + ["de"] * 10)
    for merge in ("score", "round_robin"):
        scores, ids = PerLanguageIndex(corpus, languages, merge=merge).search(queries, k=30)
        assert ids.shape == (5, 30) and (ids >= 0).all()
        assert (np.sort(np.unique(languages[ids[0]])) == ["de", "en"]).all()
    _, shared_ids = search(build_index(corpus, "flat"), queries, k=30)
    np.testing.assert_array_equal(PerLanguageIndex(corpus, languages).search(queries, k=30)[1], shared_ids)


@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_quantized_index_built_once_searches_like_the_one_off_search(precision):
    corpus, queries = _unit(300, 32, 0), _unit(12, 32, 1)
    index = QuantizedIndex(corpus, precision)
    scores, ids = index.search(queries, k=5)
    one_off_scores, one_off_ids, nbytes = quantized_search(corpus, queries, precision, k=5)
    np.testing.assert_array_equal(ids, one_off_ids)
    np.testing.assert_allclose(scores, one_off_scores)
    assert nbytes == index.nbytes() and index.ntotal == 300
    # One query at a time (as the latency harness searches) or in chunks gives the rows of the batched search.
    for row in range(3):
        np.testing.assert_array_equal(index.search(queries[row : row + 1], k=5)[1][0], ids[row])
    np.testing.assert_array_equal(index.search(queries, k=5, chunk_size=5)[1], ids)


def test_topk_rank_distance_counts_a_missing_candidate_at_depth_plus_one():
    ids = np.array([[3, 1, 7], [5, 9, 6]])
    relevant = [[1, 9], [9, 6]]
    # query 1: rank 2 and missing (counted at 4) -> 2; query 2: ranks 2 and 3 -> 1
    assert topk_quality(ids, relevant, k=3)["rank_distance@3"] == pytest.approx(1.5)


def test_topk_rank_distance_equals_the_full_rank_distance_when_every_relevant_is_listed():
    rng = np.random.default_rng(0)
    scores = rng.random((8, 30))
    relevant = [rng.choice(30, size=3, replace=False).tolist() for _ in range(8)]
    full = metrics.rank_distance(metrics.relevant_ranks_from_scores(scores, relevant))
    quality = topk_quality(np.argsort(-scores, axis=1), relevant, k=30)
    assert quality["rank_distance@30"] == pytest.approx(float(np.mean(full)))


def test_ivf_pq_on_a_pool_smaller_than_its_codebook_lowers_the_code_bits():
    corpus = _unit(100, 16, 0)  # 100 points cannot train 2**8 centroids per sub-quantizer
    index = build_index(corpus, "ivf_pq", pq_m=4)
    assert index.pq.nbits == 6 and index.ntotal == 100
