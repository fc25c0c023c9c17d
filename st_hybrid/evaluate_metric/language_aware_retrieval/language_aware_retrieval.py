"""Language-aware retrieval: LAReQA mono / cross / multilingual mAP, rank distance, nDCG, Recall, MRR,
top-k language share, language preference and a PEER-style rank fairness test.

An ``evaluate`` metric module. The math lives in ``metrics.py`` beside this script (in the st-hybrid
repository a link to ``st_hybrid/metrics.py``, the code the sentence-transformers evaluator
``st_hybrid.evaluation.LanguageAwareRetrievalEvaluator`` runs), so both give the same numbers.
"""

import datasets
import evaluate
import numpy as np

from .metrics import SETTINGS, evaluate_scores

_CITATION = """\
@inproceedings{roy-etal-2020-lareqa,
    title = "{LAR}e{QA}: Language-Agnostic Answer Retrieval from a Multilingual Pool",
    author = "Roy, Uma and Constant, Noah and Al-Rfou, Rami and Barua, Aditya and Phillips, Aaron and Yang, Yinfei",
    booktitle = "Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing (EMNLP)",
    year = "2020",
    pages = "5919--5930",
}
@article{elmahdy2024synergistic,
    title = {A Synergistic Approach for Simultaneous Optimization of Monolingual, Cross-lingual, and Multilingual Information Retrieval},
    author = {Elmahdy, Adel and Lin, Sheng-Chieh and Ahmad, Amin},
    journal = {arXiv preprint arXiv:2408.10536},
    year = {2024}
}
@inproceedings{yang-etal-2024-peer,
    title = {Language Fairness in Multilingual Information Retrieval},
    author = {Yang, Eugene and J{\"a}nich, Thomas and Mayfield, James and Lawrie, Dawn},
    booktitle = {Proceedings of the 47th International ACM SIGIR Conference on Research and Development in Information Retrieval},
    year = {2024},
    doi = {10.1145/3626772.3657943}
}
"""

_DESCRIPTION = """\
Language-aware retrieval metrics over a multilingual candidate pool, following LAReQA (Roy et al., 2020):
mAP in the monolingual setting (queries against candidates of their language), the cross-lingual setting
(every ordered pair of different languages) and the multilingual setting (one pool of all languages, all
parallel answers relevant), macro-averaged over languages or language pairs; the rank distance (language
bias: worst minus best rank of a query's relevant candidates in the multilingual ranking); nDCG@k, Recall@k
and MRR@k in the multilingual pool; per-language values and the language-pair mAP matrix. Language bias
beyond the rank distance, in the multilingual pool: the top-k language share matrix, the language
preference@k (share of the top k in the query's language minus the share of its relevant candidates in
that language) and a Kruskal-Wallis rank fairness test after PEER (Yang et al., 2024). Average precision
is computed over the full ranking (no cut-off); ties count against the relevant candidate.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: Per query, the scores of all candidates (config "scores", the default; higher is better),
        or the full ranking of candidate indices, best first (config "rankings"; a permutation of
        0..num_candidates-1).
    references: Per query, the indices of its relevant candidates.
    query_languages (list of str): Language of each query.
    candidate_languages (list of str): Language of each candidate.
    languages (list of str, optional): Only these languages (queries and candidates of others are dropped).
    settings (list of str, optional): Subset of ["mono", "cross", "multi"]; all by default.
    ndcg_at_k (list of int, optional): nDCG cut-offs, default [10].
    recall_at_k (list of int, optional): Recall cut-offs, default [1, 10, 100].
    mrr_at_k (list of int, optional): MRR cut-offs, default [10].
    language_share_at_k (list of int, optional): Depths of the top-k language share and of the language
        preference, default [10].
Returns:
    mono_map, cross_map, multi_map, rank_distance, multi_ndcg@k, multi_recall@k, multi_mrr@k,
    language_preference@k, rank_fairness_epsilon2, rank_fairness_p (floats; NaN where undefined),
    per_language (dict language -> metrics), pair_map (dict query language -> candidate language -> mAP),
    num_queries (evaluated queries per setting), num_skipped_queries (queries without a relevant candidate),
    empty_pairs (language pairs without an eligible query); with the multilingual setting also
    top_k_language_share (dict str(k) -> query language -> candidate language -> share) and rank_fairness
    (dict query language -> h, p, epsilon2, num_ranks, num_languages).
Examples:
    >>> metric = evaluate.load("language_aware_retrieval")  # doctest: +SKIP
    >>> results = metric.compute(
    ...     predictions=[[0.9, 0.1, 0.8, 0.2], [0.3, 0.7, 0.6, 0.1]],
    ...     references=[[0, 2], [1, 3]],
    ...     query_languages=["en", "de"],
    ...     candidate_languages=["en", "en", "de", "de"],
    ... )  # doctest: +SKIP
    >>> results["multi_map"], results["rank_distance"]  # doctest: +SKIP
    (0.875, 2.0)
"""

_CONFIGS = {
    "scores": datasets.Features(
        {
            "predictions": datasets.Sequence(datasets.Value("float64")),
            "references": datasets.Sequence(datasets.Value("int64")),
        }
    ),
    "rankings": datasets.Features(
        {
            "predictions": datasets.Sequence(datasets.Value("int64")),
            "references": datasets.Sequence(datasets.Value("int64")),
        }
    ),
}


def _scores_from_rankings(rankings, num_candidates):
    """Turn full rankings (candidate indices, best first) into scores (higher is better)."""
    scores = np.empty((len(rankings), num_candidates), dtype=np.float64)
    expected = np.arange(num_candidates)
    for i, ranking in enumerate(rankings):
        ranking = np.asarray(ranking, dtype=np.int64)
        if ranking.shape != (num_candidates,) or not np.array_equal(np.sort(ranking), expected):
            raise ValueError(
                f"Ranking {i} is not a permutation of the {num_candidates} candidates: rankings must be full-depth."
            )
        scores[i, ranking] = -np.arange(num_candidates, dtype=np.float64)
    return scores


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LanguageAwareRetrieval(evaluate.Metric):
    """LAReQA-style language-aware retrieval metrics from scores or rankings over a multilingual pool."""

    def _info(self):
        config = self.config_name if self.config_name in _CONFIGS else "scores"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_CONFIGS[config],
            reference_urls=["https://arxiv.org/abs/2004.05484", "https://arxiv.org/abs/2408.10536"],
            codebase_urls=["https://github.com/google-research-datasets/lareqa"],
        )

    def _compute(
        self,
        predictions,
        references,
        query_languages=None,
        candidate_languages=None,
        languages=None,
        settings=SETTINGS,
        ndcg_at_k=(10,),
        recall_at_k=(1, 10, 100),
        mrr_at_k=(10,),
        language_share_at_k=(10,),
    ):
        if self.config_name not in ("default", *_CONFIGS):
            raise ValueError(f"Unknown config {self.config_name!r}; use one of {list(_CONFIGS)}.")
        if query_languages is None or candidate_languages is None:
            raise ValueError("query_languages and candidate_languages are required.")
        if self.config_name == "rankings":
            scores = _scores_from_rankings(predictions, len(candidate_languages))
        else:
            widths = {len(row) for row in predictions}
            if widths != {len(candidate_languages)}:
                raise ValueError(
                    f"Every prediction must score all {len(candidate_languages)} candidates; got lengths {sorted(widths)}."
                )
            scores = np.asarray(predictions, dtype=np.float64)
        report = evaluate_scores(
            scores,
            references,
            query_languages,
            candidate_languages,
            languages=languages,
            settings=settings,
            ndcg_at=ndcg_at_k,
            recall_at=recall_at_k,
            mrr_at=mrr_at_k,
            language_share_at=language_share_at_k,
        )
        results = {
            **report["metrics"],
            "per_language": report["per_language"],
            "pair_map": report["pair_map"],
            "num_queries": report["num_queries"],
            "num_skipped_queries": report["num_skipped_queries"],
            "empty_pairs": report["empty_pairs"],
        }
        if "multi" in settings:
            results["top_k_language_share"] = report["top_k_language_share"]
            results["rank_fairness"] = report["rank_fairness"]
        return results
