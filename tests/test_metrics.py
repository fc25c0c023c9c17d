"""The metric math (st_hybrid.metrics): hand-computed cases, ties, MLQA-style relevance, pytrec_eval parity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from st_hybrid.metrics import (
    average_precision,
    chi2_survival,
    count_at_least,
    evaluate_scores,
    kruskal_wallis,
    macro_average,
    mrr_at_k,
    ndcg_at_k,
    rank_distance,
    recall_at_k,
    relevant_ranks,
    relevant_ranks_from_scores,
    summarize_language_bias,
    summarize_ranks,
    top_k_language_counts,
)

INF = math.inf


# ------------------------------------------------------------------------------------------------
# Ranks and ties
# ------------------------------------------------------------------------------------------------
def test_ranks_several_relevant_hand_computed():
    ranks = relevant_ranks_from_scores(np.array([[0.9, 0.8, 0.7, 0.6, 0.5]]), [[3, 1]])
    assert ranks.tolist() == [[2.0, 4.0]]
    assert average_precision(ranks)[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert rank_distance(ranks)[0] == 2.0
    assert recall_at_k(ranks, 1)[0] == 0.0
    assert recall_at_k(ranks, 2)[0] == 0.5
    assert recall_at_k(ranks, 10)[0] == 1.0
    assert mrr_at_k(ranks, 10)[0] == 0.5
    assert mrr_at_k(ranks, 1)[0] == 0.0
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(ranks, 10)[0] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert ndcg_at_k(ranks, 3)[0] == pytest.approx((1 / math.log2(3)) / ideal)


def test_ties_count_against_the_relevant_item():
    # Relevant item 1 ties with two non-relevant items: pessimistically it comes third.
    ranks = relevant_ranks_from_scores(np.array([[0.5, 0.5, 0.5, 0.1]]), [[1]])
    assert ranks.tolist() == [[3.0]]
    assert average_precision(ranks)[0] == pytest.approx(1 / 3)
    assert mrr_at_k(ranks, 10)[0] == pytest.approx(1 / 3)


def test_relevant_items_tied_with_each_other_take_consecutive_ranks():
    ranks = relevant_ranks_from_scores(np.array([[0.5, 0.5, 0.2]]), [[0, 1]])
    assert ranks.tolist() == [[1.0, 2.0]]
    assert average_precision(ranks)[0] == 1.0
    # Two relevant and one non-relevant item all tied below one better non-relevant item.
    ranks = relevant_ranks_from_scores(np.array([[0.7, 0.5, 0.5, 0.5]]), [[1, 2]])
    assert ranks.tolist() == [[3.0, 4.0]]
    assert average_precision(ranks)[0] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_relevant_ranks_rejects_inconsistent_counts():
    with pytest.raises(ValueError, match="smaller than"):
        relevant_ranks(np.array([[0.5, 0.5]]), np.array([[1, 1]]))


def test_mlqa_style_two_to_four_relevant_hand_computed():
    ranks = np.array([[1, 3, INF, INF], [2, 5, 6, 10], [4, 7, 9, INF]], dtype=float)
    ap = average_precision(ranks)
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert ap[1] == pytest.approx((1 / 2 + 2 / 5 + 3 / 6 + 4 / 10) / 4)
    assert ap[2] == pytest.approx((1 / 4 + 2 / 7 + 3 / 9) / 3)
    assert rank_distance(ranks).tolist() == [2.0, 8.0, 5.0]
    assert recall_at_k(ranks, 5).tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert mrr_at_k(ranks, 3).tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_queries_without_relevant_items_are_nan_not_zero():
    ranks = np.array([[INF, INF], [1, INF]])
    assert np.isnan(average_precision(ranks)[0])
    assert np.isnan(ndcg_at_k(ranks, 10)[0])
    assert np.isnan(recall_at_k(ranks, 10)[0])
    assert np.isnan(mrr_at_k(ranks, 10)[0])
    # One relevant item: no rank distance.
    assert np.isnan(rank_distance(ranks)).all()
    assert average_precision(ranks)[1] == 1.0


def test_count_at_least_matches_brute_force_and_ignores_nan_thresholds():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(7, 30)).astype(np.float32)  # many ties
    thresholds = scores[:, :3].copy()
    thresholds[2, 1] = np.nan
    counts = count_at_least(scores, thresholds)
    expected = (scores[:, None, :] >= thresholds[:, :, None]).sum(-1)
    assert counts.tolist() == expected.tolist()
    assert counts[2, 1] == 0


def test_macro_average_weights_groups_equally():
    values = np.array([1.0, 1.0, 1.0, 0.0, np.nan])
    macro, per_group = macro_average(values, ["a", "a", "a", "b", "c"], ["a", "b", "c"])
    assert macro == pytest.approx(0.5)  # not the micro 0.75
    assert per_group["a"] == 1.0 and per_group["b"] == 0.0 and math.isnan(per_group["c"])


# ------------------------------------------------------------------------------------------------
# pytrec_eval parity on random data
# ------------------------------------------------------------------------------------------------
def test_ap_and_ndcg_equal_pytrec_eval_on_random_data():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(42)
    num_queries, num_candidates = 40, 300
    scores = rng.standard_normal((num_queries, num_candidates))
    relevant = [
        rng.choice(num_candidates, size=rng.integers(1, 12), replace=False) for _ in range(num_queries)
    ]
    qrels = {f"q{i}": {f"d{j}": 1 for j in rel} for i, rel in enumerate(relevant)}
    run = {f"q{i}": {f"d{j}": float(scores[i, j]) for j in range(num_candidates)} for i in range(num_queries)}
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"map", "ndcg_cut_10"}).evaluate(run)

    ranks = relevant_ranks_from_scores(scores, relevant)
    ap, ndcg = average_precision(ranks), ndcg_at_k(ranks, 10)
    for i in range(num_queries):
        assert ap[i] == pytest.approx(expected[f"q{i}"]["map"], abs=1e-6)
        assert ndcg[i] == pytest.approx(expected[f"q{i}"]["ndcg_cut_10"], abs=1e-6)


# ------------------------------------------------------------------------------------------------
# Settings: mono / cross / multi
# ------------------------------------------------------------------------------------------------
# Two languages, two candidates each; one query per language, relevant: its answer in both languages.
SCORES = np.array([[0.9, 0.1, 0.8, 0.2], [0.3, 0.7, 0.6, 0.1]])
RELEVANT = [[0, 2], [1, 3]]
QUERY_LANGUAGES = ["en", "de"]
CANDIDATE_LANGUAGES = ["en", "en", "de", "de"]


def test_settings_hand_computed():
    report = evaluate_scores(SCORES, RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES)
    # en query: en pool -> rank 1; de pool -> rank 1; multi -> ranks 1, 2.
    # de query: de pool [0.6, 0.1] -> candidate 3 rank 2 (AP .5); en pool [0.3, 0.7] -> candidate 1 rank 1;
    #           multi ranking 1, 2, 0, 3 -> relevant at ranks 1 and 4.
    assert report["pair_map"] == {"en": {"en": 1.0, "de": 1.0}, "de": {"en": 1.0, "de": 0.5}}
    metrics = report["metrics"]
    assert metrics["mono_map"] == pytest.approx(0.75)
    assert metrics["cross_map"] == pytest.approx(1.0)
    assert metrics["multi_map"] == pytest.approx((1.0 + (1 / 1 + 2 / 4) / 2) / 2)
    assert metrics["rank_distance"] == pytest.approx((1 + 3) / 2)
    assert metrics["multi_recall@1"] == pytest.approx(0.5)
    assert report["per_language"]["de"]["rank_distance"] == 3.0
    assert report["num_queries"] == {"mono": 2, "cross": 2, "multi": 2}


def test_column_order_does_not_matter():
    order = np.array([3, 0, 2, 1])  # interleave languages
    position = {old: new for new, old in enumerate(order)}
    permuted = evaluate_scores(
        SCORES[:, order],
        [[position[j] for j in row] for row in RELEVANT],
        QUERY_LANGUAGES,
        [CANDIDATE_LANGUAGES[j] for j in order],
        languages=["en", "de"],
    )
    assert (
        permuted["metrics"]
        == evaluate_scores(SCORES, RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES)["metrics"]
    )


def test_chunking_does_not_change_numbers():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((30, 40))
    languages = ["a", "b", "c"]
    candidate_languages = [languages[j % 3] for j in range(40)]
    query_languages = [languages[i % 3] for i in range(30)]
    relevant = [rng.choice(40, size=rng.integers(1, 5), replace=False).tolist() for _ in range(30)]
    small = evaluate_scores(scores, relevant, query_languages, candidate_languages, chunk_size=4)
    large = evaluate_scores(scores, relevant, query_languages, candidate_languages, chunk_size=1000)
    assert small["metrics"] == pytest.approx(large["metrics"])
    assert small["pair_map"] == large["pair_map"]


def test_mlqa_style_missing_languages_make_empty_pairs_not_zeros():
    # en query relevant in en and de only; es query relevant in all three languages.
    report = evaluate_scores(
        np.array([[0.9, 0.1, 0.8, 0.2, 0.3], [0.5, 0.8, 0.4, 0.6, 0.9]]),
        [[0, 2], [1, 3, 4]],
        ["en", "es"],
        ["en", "en", "de", "de", "es"],
    )
    assert report["empty_pairs"] == [["en", "es"]]
    assert math.isnan(report["pair_map"]["en"]["es"])
    # cross: en->de 1.0; es->en 1.0; es->de 1.0 (0.6 > 0.4); en->es left out (not counted as 0).
    assert report["metrics"]["cross_map"] == pytest.approx(1.0)
    assert report["num_queries"]["cross"] == 3


def test_restricting_languages_drops_candidates_and_relevance():
    report = evaluate_scores(
        SCORES, RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES, languages=["de"], settings=["mono", "multi"]
    )
    assert report["languages"] == ["de"]
    assert report["pair_map"] == {"de": {"de": 0.5}}
    assert report["metrics"]["multi_map"] == 0.5  # the en answer is no longer in the pool
    # One language only: there is no cross-lingual pair to evaluate.
    with pytest.raises(ValueError, match="'cross' setting has no query"):
        evaluate_scores(SCORES, RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES, languages=["de"])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown languages"):
        evaluate_scores(SCORES, RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES, languages=["en", "fr"])
    with pytest.raises(ValueError, match="shape"):
        evaluate_scores(SCORES[:, :3], RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES)
    with pytest.raises(ValueError, match="out of range"):
        evaluate_scores(SCORES, [[0, 7], [1]], QUERY_LANGUAGES, CANDIDATE_LANGUAGES)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_scores(
            np.where(SCORES > 0.85, np.nan, SCORES), RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES
        )
    with pytest.raises(ValueError, match="relevance lists"):
        evaluate_scores(SCORES, RELEVANT[:1], QUERY_LANGUAGES, CANDIDATE_LANGUAGES)
    with pytest.raises(ValueError, match="Unknown settings"):
        evaluate_scores(
            SCORES, RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES, settings=["mono", "bilingual"]
        )
    # Only cross-lingual relevance: the mono setting has no eligible query.
    with pytest.raises(ValueError, match="'mono' setting has no query"):
        evaluate_scores(SCORES, [[2], [1]], QUERY_LANGUAGES, CANDIDATE_LANGUAGES)
    with pytest.raises(ValueError, match="No query"):
        evaluate_scores(SCORES, [[], []], QUERY_LANGUAGES, CANDIDATE_LANGUAGES)


def test_queries_without_relevant_candidates_are_skipped_and_counted():
    report = evaluate_scores(SCORES, [[0, 2], []], QUERY_LANGUAGES, CANDIDATE_LANGUAGES)
    assert report["num_skipped_queries"] == 1
    assert list(report["per_language"]) == ["en"]
    assert report["metrics"]["multi_map"] == 1.0


def test_summarize_ranks_selects_settings():
    multi = np.array([[1.0, 2.0]])
    by_language = {"en": np.array([[1.0]]), "de": np.array([[1.0]])}
    report = summarize_ranks(multi, by_language, ["en"], settings=["multi"], recall_at=(1,))
    assert set(report["metrics"]) == {
        "multi_map",
        "rank_distance",
        "multi_ndcg@10",
        "multi_recall@1",
        "multi_mrr@10",
    }


# ------------------------------------------------------------------------------------------------
# Language bias beyond the rank distance
# ------------------------------------------------------------------------------------------------
def test_count_at_least_matches_a_plain_count_across_block_boundaries():
    # count_at_least counts 8 bytes at a time in blocks of 255 words: widths around 2,040 columns.
    rng = np.random.default_rng(3)
    for width in (1, 7, 8, 2039, 2040, 2041, 5000):
        scores = rng.standard_normal((3, width)).astype(np.float32)
        thresholds = scores[:, [0, -1]].copy()
        thresholds[1, 1] = np.nan
        expected = (scores[:, None, :] >= thresholds[:, :, None]).sum(axis=-1)
        expected[1, 1] = 0
        assert count_at_least(scores, thresholds).tolist() == expected.tolist()


def test_top_k_language_counts_hand_computed_with_ties():
    segments = [(0, 3), (3, 6)]  # columns 0-2: language 0, columns 3-5: language 1
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 5.0, 5.0, 5.0]])
    counts = top_k_language_counts(scores, segments, [2, 4, 100])
    assert counts[2].tolist() == [[2, 0], [0, 2]]  # row 2: three tied at 5 in language 1
    assert counts[4].tolist() == [[3, 1], [1, 3]]
    assert counts[100].tolist() == [[3, 3], [3, 3]]  # deeper than the pool: the whole pool
    # A tie across languages at the k-th place shares the place left: 3 (lang 0), then 2 in lang 0 and 1.
    tied = top_k_language_counts(np.array([[3.0, 2.0, 0.0, 2.0, 0.0, 0.0]]), segments, [2])
    assert tied[2].tolist() == [[1.5, 0.5]]


def test_chi2_survival_closed_form():
    assert chi2_survival(2.0, 2) == pytest.approx(math.exp(-1.0), rel=1e-12)
    assert chi2_survival(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_survival(0.0, 5) == 1.0
    scipy_stats = pytest.importorskip("scipy.stats")  # a peer check where scipy is there (it is here)
    for df in (1, 2, 3, 10, 11, 112):
        for x in (0.5, 3.0, 10.0, 120.0):
            assert chi2_survival(x, df) == pytest.approx(scipy_stats.chi2.sf(x, df), rel=1e-9, abs=1e-300)


def test_kruskal_wallis_hand_computed():
    # Ranks 1-3 vs 4-6: H = 12 / (6 * 7) * (6**2 / 3 + 15**2 / 3) - 3 * 7 = 27 / 7.
    h, p = kruskal_wallis([[1, 2, 3], [4, 5, 6]])
    assert h == pytest.approx(27 / 7)
    assert p == pytest.approx(chi2_survival(27 / 7, 1))
    # Ties: values 1, 2, 2, 3 -> midranks 1, 2.5, 2.5, 4; rank sums 3.5 and 6.5;
    # H = (12 / 20 * (3.5**2 / 2 + 6.5**2 / 2) - 15) / (1 - 6 / 60) = 1.35 / 0.9 = 1.5.
    h, _ = kruskal_wallis([[1, 2], [2, 3]])
    assert h == pytest.approx(1.5)
    # Empty groups are left out; one group, or all values equal, is no test.
    assert kruskal_wallis([[1, 2, 3], [], [4, 5, 6]])[0] == pytest.approx(27 / 7)
    assert all(math.isnan(v) for v in kruskal_wallis([[1, 2, 3], []]))
    assert all(math.isnan(v) for v in kruskal_wallis([[2, 2], [2]]))
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    samples = [rng.integers(0, 15, size=n) for n in (4, 9, 1, 6)]
    expected = scipy_stats.kruskal(*samples)
    assert kruskal_wallis(samples) == pytest.approx((expected.statistic, expected.pvalue))


def test_language_bias_hand_computed():
    # The SCORES example. Multilingual ranking: en query 0 (en), 2 (de), 3 (de), 1 (en);
    # de query 1 (en), 2 (de), 0 (en), 3 (de). Each query has one relevant candidate per language.
    report = evaluate_scores(SCORES, RELEVANT, QUERY_LANGUAGES, CANDIDATE_LANGUAGES, language_share_at=(1, 2))
    shares = report["top_k_language_share"]
    assert shares["1"] == {"en": {"en": 1.0, "de": 0.0}, "de": {"en": 1.0, "de": 0.0}}
    assert shares["2"] == {"en": {"en": 0.5, "de": 0.5}, "de": {"en": 0.5, "de": 0.5}}
    # Preference@1: en query 1 - 1/2, de query 0 - 1/2 (its language is under-represented).
    assert report["per_language"]["en"]["language_preference@1"] == pytest.approx(0.5)
    assert report["per_language"]["de"]["language_preference@1"] == pytest.approx(-0.5)
    assert report["metrics"]["language_preference@1"] == pytest.approx(0.0)
    assert report["metrics"]["language_preference@2"] == pytest.approx(0.0)
    # Rank fairness per query language: one rank per candidate language, N = 2 -> H = 1, epsilon^2 = 1.
    assert report["rank_fairness"]["de"] == {
        "h": pytest.approx(1.0),
        "p": pytest.approx(math.erfc(math.sqrt(0.5))),
        "epsilon2": pytest.approx(1.0),
        "num_ranks": 2,
        "num_languages": 2,
    }
    assert report["metrics"]["rank_fairness_p"] == pytest.approx(math.erfc(math.sqrt(0.5)))


def test_rank_fairness_pools_the_queries_of_a_language():
    # Three en queries; relevant: one en and one de candidate each, at multilingual ranks
    # en 1, 2, 3 and de 4, 5, 6 -> the Kruskal-Wallis case above, H = 27 / 7, epsilon^2 = H / 5.
    multi = np.array([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]])
    language_index = np.array([[0, 1], [0, 1], [0, 1]])
    counts = {3: np.array([[3, 0], [2, 1], [1, 2]])}
    bias = summarize_language_bias(multi, language_index, counts, ["en"] * 3, ["en", "de"])
    assert bias["rank_fairness"]["en"]["h"] == pytest.approx(27 / 7)
    assert bias["metrics"]["rank_fairness_epsilon2"] == pytest.approx(27 / 7 / 5)
    # Top-3 own-language share 1, 2/3, 1/3 (mean 2/3) against a relevant share of 1/2.
    assert bias["metrics"]["language_preference@3"] == pytest.approx(2 / 3 - 1 / 2)
    assert bias["top_k_language_share"]["3"]["en"] == pytest.approx({"en": 2 / 3, "de": 1 / 3})
    # A query language absent from the pool has no preference (NaN), and one pool language is no test.
    alone = summarize_language_bias(np.array([[1.0]]), np.array([[0]]), {1: np.array([[1]])}, ["fr"], ["en"])
    assert math.isnan(alone["metrics"]["language_preference@1"])
    assert math.isnan(alone["rank_fairness"]["fr"]["p"]) and math.isnan(alone["metrics"]["rank_fairness_p"])
