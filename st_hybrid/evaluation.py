"""Language-aware retrieval evaluation (LAReQA): a sentence-transformers evaluator and its report.

:class:`LanguageAwareRetrievalEvaluator` measures, in one pass over the embeddings,

- **mono**: queries against the candidates of their own language (one pool per language),
- **cross**: queries against the candidates of another language (every ordered pair of languages),
- **multi**: queries against all candidates of all languages at once (all parallel answers relevant),

with full-depth average precision (macro-averaged over languages / language pairs as in LAReQA), the
**rank distance** (language bias: worst minus best rank of a query's relevant candidates in the
multilingual ranking), nDCG@k, Recall@k and MRR@k, per query language, plus the language-pair mAP matrix;
and language bias beyond the rank distance in the multilingual pool: the **top-k language share** matrix,
the **language preference@k** and a PEER-style **rank fairness** test (definitions in
:mod:`st_hybrid.metrics`).

With ``pools``, the same embeddings are also evaluated on smaller multilingual pools (nested language
subsets, e.g. 1, 2, 4, 8, 11 languages): how retrieval degrades as more languages compete in one pool,
without encoding anything twice.

How it computes:
    - Every distinct query text is encoded once (query prompt) and every distinct candidate text once
      (passage prompt); mono, cross and multi share the embeddings.
    - Scores are the model's similarity: ``cosine`` (embeddings L2-normalized, then inner product) or
      ``dot`` (inner product); other similarity functions are refused. Scores are float32.
    - Ranks of relevant candidates are exact over the full pool: for a chunk of queries the score matrix
      against all candidates is computed once (matmul), and the rank of a relevant candidate is the number
      of candidates scoring at least as high, counted over the whole pool (multi) and over each language's
      columns (mono / cross). The relevant scores are read from the same matrix, so the comparison is
      consistent. Ties are pessimistic: a relevant candidate ranks below non-relevant ones with an equal
      score (identical candidate texts tie exactly). See :mod:`st_hybrid.metrics` for the math.
    - With ``write_predictions``, top-k lists of the multilingual pool come from a faiss ``IndexFlatIP``
      (exact inner product; on GPU with ``faiss_gpu=True`` when faiss has GPU support).

What counts:
    - Queries without any relevant candidate (after the language selection) are skipped: a warning gives
      their number and the report has ``num_skipped_queries``.
    - In each setting, a query counts for a pool only if it has at least one relevant candidate in that
      pool (a MLQA-R question without a German answer is not part of en->de). A language pair without such
      a query is NaN in the pair matrix, left out of the macro average and listed in ``empty_pairs``.
      A requested setting without any eligible query is an error.
    - ``rank_distance`` counts queries with at least two relevant candidates.
    - In a sub-pool (``pools``) only the queries and candidates of its languages take part, exactly as in a
      separate evaluation with ``languages=`` that pool; settings without an eligible query there (cross in
      a one-language pool) are left out of that pool.

Usage:
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
    >>> model = SentenceTransformer("intfloat/multilingual-e5-small")  # doctest: +SKIP
    >>> evaluator = LanguageAwareRetrievalEvaluator.from_lareqa(
    ...     "../shared/data/xquad-r", name="xquad-r", query_prompt="query: ", corpus_prompt="passage: "
    ... )  # doctest: +SKIP
    >>> results = evaluator(model, output_path="eval")  # doctest: +SKIP
    >>> results["xquad-r_multi_map"], results["xquad-r_rank_distance"]  # doctest: +SKIP
    >>> evaluator.last_report["pair_map"]["en"]["de"]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sentence_transformers.base.evaluation import BaseEvaluator
from tqdm.auto import tqdm

from st_hybrid.metrics import (
    SETTINGS,
    ChunkRanks,
    RelevanceLayout,
    build_relevance_layout,
    concatenate_ranks,
    rank_chunk,
    select_languages,
    summarize,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from st_hybrid.data import RetrievalCorpus

__all__ = ["LanguageAwareRetrievalEvaluator", "plot_pair_map"]

logger = logging.getLogger(__name__)

SUPPORTED_SIMILARITIES = ("cosine", "dot")


def _unique(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct texts in first-seen order and, for each input, the index of its distinct text."""
    position: dict[str, int] = {}
    index = np.fromiter((position.setdefault(text, len(position)) for text in texts), dtype=np.int64)
    return list(position), index


def _check_languages(kind: str, ids: Iterable[str], languages: Mapping[str, str]) -> None:
    missing = [i for i in ids if i not in languages]
    if missing:
        raise ValueError(f"{len(missing)} {kind} without a language, e.g. {missing[:3]}.")
    empty = [i for i in ids if not str(languages[i]).strip()]
    if empty:
        raise ValueError(f"{len(empty)} {kind} with an empty language code, e.g. {empty[:3]}.")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class LanguageAwareRetrievalEvaluator(BaseEvaluator):
    """Evaluate a model on language-aware retrieval: mono / cross / multi mAP, rank distance and more.

    Args:
        queries: Query id -> text.
        corpus: Candidate id -> text.
        relevant_docs: Query id -> ids of its relevant candidates (in any language).
        query_languages: Query id -> language code.
        corpus_languages: Candidate id -> language code.
        languages: Evaluate only these languages (queries and candidates of others are dropped); all by
            default. An unknown language is an error.
        settings: Settings to compute, a subset of ``("mono", "cross", "multi")``.
        name: Name of the evaluation, the prefix of the returned keys and of the written files.
        batch_size: Encoding batch size.
        show_progress_bar: Progress bars for encoding and ranking; by default when logging at INFO or lower.
        query_prompt: Prompt string prepended to queries (e.g. E5's ``"query: "``).
        query_prompt_name: Name of a model prompt for queries; with neither, the model's ``"query"``
            prompt when it has one.
        corpus_prompt: Prompt string prepended to candidates (e.g. E5's ``"passage: "``).
        corpus_prompt_name: Name of a model prompt for candidates; with neither, the model's
            ``"document"`` prompt when it has one.
        similarity_fn_name: ``"cosine"`` or ``"dot"``; the model's similarity function by default.
        ndcg_at_k: Cut-offs of nDCG in the multilingual pool.
        recall_at_k: Cut-offs of Recall in the multilingual pool.
        mrr_at_k: Cut-offs of MRR in the multilingual pool.
        language_share_at_k: Depths of the top-k language share matrix and of ``language_preference@k``
            (multilingual pool); empty to skip them.
        pools: Extra multilingual pools to evaluate with the same embeddings, each a list of languages or
            a number ``n`` (the first ``n`` of ``languages``, so that ``languages=["en", "de", ...]`` with
            ``pools=[1, 2, 4, 8, 11]`` gives nested pools). Reported in ``report["pools"]`` and
            ``{name}_pools.csv``; the returned metrics stay those of the full pool.
        primary_metric: The metric for model selection (without the name prefix), ``"multi_map"`` by
            default; ``"rank_distance"`` makes lower better.
        query_chunk_size: Queries scored against the whole pool at a time (memory: chunk x candidates x 5 bytes
            per thread).
        num_threads: Threads ranking chunks in parallel; the number of CPUs (at most 8) by default.
        truncate_dim: Truncate embeddings to this dimension (Matryoshka models).
        write_predictions: With ``output_path``, also write the top ``top_k`` candidates of every query in
            the multilingual pool (faiss exact inner-product search) to ``{name}_predictions.jsonl``.
        top_k: Length of the written top-k lists.
        faiss_gpu: Search on GPU when faiss has GPU support and a GPU is visible.
        write_plot: With ``output_path``, draw the pair-matrix heatmap PNG.

    Raises:
        ValueError: On mismatched ids, missing or unknown languages, an unknown setting or primary metric,
            or a setting without any eligible query.
    """

    def __init__(
        self,
        queries: Mapping[str, str],
        corpus: Mapping[str, str],
        relevant_docs: Mapping[str, Iterable[str]],
        query_languages: Mapping[str, str],
        corpus_languages: Mapping[str, str],
        *,
        languages: Sequence[str] | None = None,
        settings: Sequence[str] = SETTINGS,
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        query_prompt: str | None = None,
        query_prompt_name: str | None = None,
        corpus_prompt: str | None = None,
        corpus_prompt_name: str | None = None,
        similarity_fn_name: str | None = None,
        ndcg_at_k: Sequence[int] = (10,),
        recall_at_k: Sequence[int] = (1, 10, 100),
        mrr_at_k: Sequence[int] = (10,),
        language_share_at_k: Sequence[int] = (10,),
        pools: Sequence[Sequence[str] | int] | None = None,
        primary_metric: str = "multi_map",
        query_chunk_size: int = 256,
        num_threads: int | None = None,
        truncate_dim: int | None = None,
        write_predictions: bool = False,
        top_k: int = 100,
        faiss_gpu: bool = False,
        write_plot: bool = True,
    ):
        super().__init__()
        self.name = name
        self.settings = tuple(dict.fromkeys(settings))
        unknown_settings = set(self.settings) - set(SETTINGS)
        if unknown_settings or not self.settings:
            raise ValueError(f"settings must be a non-empty subset of {SETTINGS}, got {list(settings)}.")
        self.batch_size = batch_size
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
        self.show_progress_bar = show_progress_bar
        self.query_prompt = query_prompt
        self.query_prompt_name = query_prompt_name
        self.corpus_prompt = corpus_prompt
        self.corpus_prompt_name = corpus_prompt_name
        if similarity_fn_name is not None and similarity_fn_name not in SUPPORTED_SIMILARITIES:
            raise ValueError(
                f"similarity_fn_name must be one of {SUPPORTED_SIMILARITIES}, got {similarity_fn_name!r}."
            )
        self.similarity_fn_name = similarity_fn_name
        self.ndcg_at_k = tuple(ndcg_at_k)
        self.recall_at_k = tuple(recall_at_k)
        self.mrr_at_k = tuple(mrr_at_k)
        self.language_share_at_k = tuple(language_share_at_k)
        if any(int(k) < 1 for k in self.language_share_at_k):
            raise ValueError(f"language_share_at_k must be positive depths, got {list(language_share_at_k)}.")
        self.query_chunk_size = query_chunk_size
        self.num_threads = num_threads or min(8, os.cpu_count() or 1)
        self.truncate_dim = truncate_dim
        self.write_predictions = write_predictions
        self.top_k = top_k
        self.faiss_gpu = faiss_gpu
        self.write_plot = write_plot
        self.last_report: dict[str, Any] | None = None

        self._prepare(queries, corpus, relevant_docs, query_languages, corpus_languages, languages)
        self._check_settings()
        self.pools = self._resolve_pools(pools)
        #: How the candidate pool was cut from its benchmark (``{"max_articles": 4}``); empty when not cut.
        self.pool: dict[str, Any] = {}
        if primary_metric not in self.metric_names:
            raise ValueError(
                f"primary_metric {primary_metric!r} is not computed; choose from {self.metric_names}."
            )
        self.primary_metric = primary_metric
        self.greater_is_better = primary_metric != "rank_distance"

    # ----------------------------------------------------------------------------------------------
    # Construction
    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_corpus(cls, corpus: RetrievalCorpus, **kwargs) -> LanguageAwareRetrievalEvaluator:
        """Build the evaluator from a :class:`~st_hybrid.data.RetrievalCorpus`.

        Args:
            corpus: Queries, candidates and relevance, e.g. from :func:`~st_hybrid.data.load_lareqa_retrieval`.
            **kwargs: Passed to the constructor (``name``, prompts, ``languages``, ...).
        """
        for kind, ids in (("query", corpus.query_ids), ("candidate", corpus.candidate_ids)):
            if len(set(ids)) != len(ids):
                raise ValueError(f"Duplicate {kind} ids in the corpus.")
        return cls(
            queries=dict(zip(corpus.query_ids, corpus.query_texts, strict=True)),
            corpus=dict(zip(corpus.candidate_ids, corpus.candidate_texts, strict=True)),
            relevant_docs=corpus.relevant,
            query_languages=dict(zip(corpus.query_ids, corpus.query_languages, strict=True)),
            corpus_languages=dict(zip(corpus.candidate_ids, corpus.candidate_languages, strict=True)),
            **kwargs,
        )

    @classmethod
    def from_lareqa(
        cls,
        path_or_corpus: str | os.PathLike | RetrievalCorpus,
        languages: Sequence[str] | None = None,
        max_articles: int | None = None,
        **kwargs,
    ) -> LanguageAwareRetrievalEvaluator:
        """Build the evaluator for XQuAD-R or MLQA-R (LAReQA files).

        Args:
            path_or_corpus: A LAReQA folder (``<language>.json`` files, e.g. ``../shared/data/xquad-r``),
                one file, or an already loaded :class:`~st_hybrid.data.RetrievalCorpus`.
            languages: Languages to load; all by default.
            max_articles: Keep the first N articles of each file (a quick subset).
            **kwargs: Passed to the constructor; ``name`` defaults to the folder name.
        """
        from st_hybrid.data import RetrievalCorpus, load_lareqa_retrieval

        if isinstance(path_or_corpus, RetrievalCorpus):
            if max_articles is not None:
                raise ValueError("max_articles applies when loading from a path, not to a loaded corpus.")
            return cls.from_corpus(path_or_corpus, languages=languages, **kwargs)
        kwargs.setdefault("name", Path(path_or_corpus).stem)
        corpus = load_lareqa_retrieval(path_or_corpus, languages=languages, max_articles=max_articles)
        evaluator = cls.from_corpus(corpus, languages=languages, **kwargs)
        # Reports and model cards name a subset as such (a full-benchmark number is never implied).
        evaluator.pool = {"max_articles": max_articles} if max_articles is not None else {}
        return evaluator

    @classmethod
    def from_tatoeba(
        cls,
        path: str | os.PathLike,
        direction: str = "eng-x",
        languages: Sequence[str] | None = None,
        max_per_language: int | None = None,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        **kwargs,
    ) -> LanguageAwareRetrievalEvaluator:
        """Build the evaluator on Tatoeba's held-out side (:func:`~st_hybrid.data.split_tatoeba`): one mixed pool.

        Only the held-out side is read, so a model trained on the train side of the same split
        (``examples/train.py --tatoeba_split train``) never sees an evaluated text.

        Args:
            path: The Tatoeba folder (``tatoeba.xxx-eng.*`` files, e.g. ``../shared/data/tatoeba``).
            direction: ``"eng-x"`` (English queries, a pool of every other language's sentences) or
                ``"x-eng"`` (every other language's queries, a pool of English sentences); see
                :func:`~st_hybrid.data.tatoeba_retrieval`.
            languages: Languages paired with English to evaluate, in this order (pools given as numbers take
                the first ``n - 1`` of them after English); all by default.
            max_per_language: A subset: at most this many held-out sentence pairs per language.
            test_fraction: The split's held-out share; it must match the training split's.
            split_seed: The split's seed; it must match the training split's.
            **kwargs: Passed to the constructor; ``name`` defaults to ``"tatoeba-<direction>"``. Settings the
                direction cannot have are left out by default (``mono``; ``cross`` for ``"x-eng"``).

        Usage:
            >>> evaluator = LanguageAwareRetrievalEvaluator.from_tatoeba(
            ...     "../shared/data/tatoeba", direction="eng-x", max_per_language=10, mrr_at_k=(1, 10),
            ...     query_prompt="query: ", corpus_prompt="passage: ")  # doctest: +SKIP
            >>> evaluator.pool["description"]  # doctest: +SKIP
        """
        from st_hybrid.data import split_tatoeba, tatoeba_retrieval

        paired = [lang for lang in languages if lang != "eng"] if languages is not None else None
        _, held_out = split_tatoeba(
            path,
            languages=paired,
            test_fraction=test_fraction,
            seed=split_seed,
            max_per_language=max_per_language,
        )
        corpus = tatoeba_retrieval(held_out, direction=direction)
        order = ["eng", *(paired if paired is not None else [x for x in corpus.languages if x != "eng"])]
        kwargs.setdefault("name", f"tatoeba-{direction}")
        kwargs.setdefault("settings", ("cross", "multi") if direction == "eng-x" else ("multi",))
        evaluator = cls.from_corpus(corpus, languages=order, **kwargs)
        subset = (
            f"at most {max_per_language} pairs per language" if max_per_language else "every held-out pair"
        )
        evaluator.pool = {
            "config": f"tatoeba-held-out-{direction}",
            "description": (
                f"Tatoeba held-out split (test_fraction {test_fraction:g}, seed {split_seed}), {subset}, "
                f"{direction}: {len(evaluator.query_ids)} queries x {len(evaluator.candidate_ids)} candidates, "
                f"{len(evaluator.languages)} languages"
            ),
        }
        return evaluator

    def _prepare(self, queries, corpus, relevant_docs, query_languages, corpus_languages, languages) -> None:
        """Validate the inputs, select languages, deduplicate texts and lay out candidates by language."""
        _check_languages("queries", queries, query_languages)
        _check_languages("candidates", corpus, corpus_languages)
        unknown_queries = [qid for qid in relevant_docs if qid not in queries]
        if unknown_queries:
            raise ValueError(
                f"relevant_docs has {len(unknown_queries)} unknown query ids, e.g. {unknown_queries[:3]}."
            )
        unknown_docs = sorted({cid for cids in relevant_docs.values() for cid in cids if cid not in corpus})
        if unknown_docs:
            raise ValueError(
                f"relevant_docs has {len(unknown_docs)} unknown candidate ids, e.g. {unknown_docs[:3]}."
            )

        present = sorted(
            {str(query_languages[q]) for q in queries} | {str(corpus_languages[c]) for c in corpus}
        )
        languages = select_languages(languages, present)
        selected = set(languages)

        # Candidates sorted by language (stable), so that each language is a contiguous block of columns.
        rank = {lang: i for i, lang in enumerate(languages)}
        candidate_ids = sorted(
            (cid for cid in corpus if str(corpus_languages[cid]) in selected),
            key=lambda cid: rank[str(corpus_languages[cid])],
        )
        if not candidate_ids:
            raise ValueError(f"No candidate in languages {languages}.")
        column = {cid: i for i, cid in enumerate(candidate_ids)}
        self.candidate_ids = candidate_ids
        self.candidate_languages = [str(corpus_languages[cid]) for cid in candidate_ids]
        self.pool_languages = [lang for lang in languages if lang in set(self.candidate_languages)]

        self.query_ids, relevant_columns, skipped = [], [], 0
        for qid in queries:
            if str(query_languages[qid]) not in selected:
                continue
            columns = [column[cid] for cid in relevant_docs.get(qid, ()) if cid in column]
            if columns:
                self.query_ids.append(qid)
                relevant_columns.append(columns)
            else:
                skipped += 1
        if not self.query_ids:
            raise ValueError(f"No query in languages {languages} has a relevant candidate.")
        if skipped:
            logger.warning(
                f"{self.name or 'evaluator'}: skipping {skipped} queries without a relevant candidate."
            )
        self.num_skipped_queries = skipped
        self.query_languages = [str(query_languages[qid]) for qid in self.query_ids]
        self.languages = languages
        self.layout: RelevanceLayout = build_relevance_layout(
            relevant_columns, self.candidate_languages, self.pool_languages
        )
        self.query_texts, self._query_text_index = _unique([queries[qid] for qid in self.query_ids])
        self.candidate_texts, self._candidate_text_index = _unique([corpus[cid] for cid in candidate_ids])

    def _check_settings(self) -> None:
        """Fail early when a requested setting has no query with a relevant candidate in its pool."""
        eligible = _eligible_settings(self.layout, self.query_languages, self.settings)
        for setting in self.settings:
            if setting not in eligible:
                raise ValueError(
                    f"The {setting!r} setting has no query with a relevant candidate in its pool; "
                    f"leave it out of `settings`."
                )

    def _resolve_pools(self, pools: Sequence[Sequence[str] | int] | None) -> list[list[str]]:
        """Each pool as its list of languages; numbers take the first ``n`` evaluated languages."""
        resolved = []
        for pool in pools or ():
            if isinstance(pool, (int, np.integer)):
                if not 1 <= pool <= len(self.languages):
                    raise ValueError(
                        f"Pool size {pool} is out of range: choose 1..{len(self.languages)} languages."
                    )
                resolved.append(list(self.languages[: int(pool)]))
            elif isinstance(pool, str):
                raise ValueError(f"A pool is a list of languages or a number, got the string {pool!r}.")
            else:
                languages = select_languages(pool, self.languages)
                if not languages:
                    raise ValueError("A pool needs at least one language.")
                resolved.append(languages)
        return resolved

    @property
    def metric_names(self) -> list[str]:
        """Keys of the returned metrics, without the name prefix."""
        names = [f"{setting}_map" for setting in self.settings if setting != "multi"]
        if "multi" in self.settings:
            names += ["multi_map", "rank_distance"]
            names += [f"multi_ndcg@{k}" for k in self.ndcg_at_k]
            names += [f"multi_recall@{k}" for k in self.recall_at_k]
            names += [f"multi_mrr@{k}" for k in self.mrr_at_k]
            names += [f"language_preference@{k}" for k in self.language_share_at_k]
            names += ["rank_fairness_epsilon2", "rank_fairness_p"]
        return names

    @property
    def file_prefix(self) -> str:
        return self.name or "language_aware_retrieval"

    # ----------------------------------------------------------------------------------------------
    # Evaluation
    # ----------------------------------------------------------------------------------------------
    def __call__(
        self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        if epoch != -1:
            out_txt = f" after epoch {epoch}" if steps == -1 else f" in epoch {epoch} after {steps} steps"
        else:
            out_txt = ""
        logger.info(f"Language-aware retrieval evaluation of the model on the {self.name} dataset{out_txt}:")

        report = self.compute_report(model, output_path=output_path)
        report["epoch"], report["steps"] = epoch, steps
        self.last_report = report
        for key in self.metric_names:
            logger.info(f"{key}: {report['metrics'][key]:.4f}")
        if output_path is not None:
            self.write_report(report, output_path)

        metrics = self.prefix_name_to_metrics(
            {key: report["metrics"][key] for key in self.metric_names}, self.name
        )
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def compute_report(self, model: SentenceTransformer, output_path: str | None = None) -> dict[str, Any]:
        """Encode, rank and aggregate; the structured report (see ``docs/architecture.md``)."""
        query_embeddings, candidate_embeddings, similarity = self.embed(model)
        ranks = self.rank(query_embeddings, candidate_embeddings)
        summary = self._summarize(ranks, self.layout, self.query_languages, self.languages, self.settings)
        if summary["empty_pairs"]:
            pairs = ", ".join(f"{x}->{y}" for x, y in summary["empty_pairs"])
            logger.warning(
                f"{self.name}: {len(summary['empty_pairs'])} language pairs have no query with a relevant "
                f"candidate in the target language and are left out of the averages: {pairs}"
            )
        if self.write_predictions and output_path is not None:
            self._write_predictions(query_embeddings, candidate_embeddings, output_path)
        report = {
            "name": self.name,
            "languages": self.languages,
            "num_queries": len(self.query_ids),
            "num_candidates": len(self.candidate_ids),
            "metrics": summary["metrics"],
            "per_language": summary["per_language"],
            "pair_map": summary["pair_map"],
            "similarity_fn_name": similarity,
            "settings": list(self.settings),
            "num_queries_per_setting": summary["num_queries"],
            "num_skipped_queries": self.num_skipped_queries,
            "empty_pairs": summary["empty_pairs"],
            "top_k_language_share": summary["top_k_language_share"],
            "rank_fairness": summary["rank_fairness"],
        }
        if self.pool:
            report["pool"] = dict(self.pool)
        if self.pools:
            report["pools"] = [
                self._evaluate_pool(languages, query_embeddings, candidate_embeddings)
                for languages in self.pools
            ]
        return report

    def _summarize(
        self, ranks: ChunkRanks, layout: RelevanceLayout, query_languages, languages, settings
    ) -> dict[str, Any]:
        return summarize(
            ranks,
            layout,
            query_languages,
            languages=languages,
            settings=settings,
            ndcg_at=self.ndcg_at_k,
            recall_at=self.recall_at_k,
            mrr_at=self.mrr_at_k,
        )

    def _evaluate_pool(
        self, languages: list[str], query_embeddings: np.ndarray, candidate_embeddings: np.ndarray
    ) -> dict[str, Any]:
        """Metrics of the multilingual pool restricted to ``languages`` (queries and candidates), from the
        embeddings already computed: the numbers of a separate evaluation with ``languages=languages``."""
        selected = set(languages)
        columns = np.flatnonzero([lang in selected for lang in self.candidate_languages])
        new_column = np.full(len(self.candidate_ids), -1)
        new_column[columns] = np.arange(columns.size)
        rows, relevant, skipped = [], [], 0
        for i, lang in enumerate(self.query_languages):
            if lang not in selected:
                continue
            mapped = [int(new_column[c]) for c in self.layout.relevant[i] if c >= 0 and new_column[c] >= 0]
            if mapped:
                rows.append(i)
                relevant.append(mapped)
            else:
                skipped += 1
        pool_languages = [lang for lang in self.pool_languages if lang in selected]
        entry: dict[str, Any] = {
            "languages": languages,
            "num_languages": len(languages),
            "num_queries": len(rows),
            "num_candidates": int(columns.size),
            "num_skipped_queries": skipped,
        }
        if not rows or not pool_languages:
            logger.warning(f"{self.name}: pool {languages} has no query with a relevant candidate; skipped.")
            return {**entry, "settings": [], "metrics": {}, "per_language": {}}
        layout = build_relevance_layout(
            relevant, [self.candidate_languages[c] for c in columns], pool_languages
        )
        query_languages = [self.query_languages[i] for i in rows]
        settings = _eligible_settings(layout, query_languages, self.settings)
        ranks = self.rank(query_embeddings[rows], candidate_embeddings[columns], layout)
        summary = self._summarize(ranks, layout, query_languages, languages, settings)
        return {
            **entry,
            "settings": settings,
            "metrics": summary["metrics"],
            "per_language": summary["per_language"],
            "num_queries_per_setting": summary["num_queries"],
        }

    def embed(self, model: SentenceTransformer) -> tuple[np.ndarray, np.ndarray, str]:
        """Encode every distinct text once; return per-query and per-candidate float32 embeddings.

        Returns:
            ``(query_embeddings, candidate_embeddings, similarity_fn_name)``, rows aligned with
            ``self.query_ids`` and ``self.candidate_ids``, L2-normalized for cosine similarity.
        """
        similarity = self.similarity_fn_name or model.similarity_fn_name or "cosine"
        if similarity not in SUPPORTED_SIMILARITIES:
            raise ValueError(
                f"The model's similarity {similarity!r} is not supported; pass similarity_fn_name='cosine' or 'dot'."
            )
        common = {
            "batch_size": self.batch_size,
            "show_progress_bar": self.show_progress_bar,
            "convert_to_numpy": True,
            "truncate_dim": self.truncate_dim,
        }
        queries = model.encode_query(
            self.query_texts, prompt=self.query_prompt, prompt_name=self.query_prompt_name, **common
        )
        candidates = model.encode_document(
            self.candidate_texts, prompt=self.corpus_prompt, prompt_name=self.corpus_prompt_name, **common
        )
        queries = np.asarray(queries, dtype=np.float32)[self._query_text_index]
        candidates = np.asarray(candidates, dtype=np.float32)[self._candidate_text_index]
        if not (np.isfinite(queries).all() and np.isfinite(candidates).all()):
            raise ValueError("The model produced non-finite embeddings.")
        if similarity == "cosine":
            queries = _l2_normalize(queries)
            candidates = _l2_normalize(candidates)
        return queries, candidates, similarity

    def rank(
        self,
        query_embeddings: np.ndarray,
        candidate_embeddings: np.ndarray,
        layout: RelevanceLayout | None = None,
    ) -> ChunkRanks:
        """Exact ranks of every query's relevant candidates in the multilingual pool and in each language
        pool, and the languages of each query's top-k candidates (``layout``: ``self.layout`` by default)."""
        layout = self.layout if layout is None else layout
        candidates_t = np.ascontiguousarray(candidate_embeddings.T)
        top_k = self.language_share_at_k if "multi" in self.settings else ()

        def rank_rows(start: int) -> ChunkRanks:
            rows = slice(start, start + self.query_chunk_size)
            return rank_chunk(query_embeddings[rows] @ candidates_t, layout, rows, top_k)

        starts = range(0, len(query_embeddings), self.query_chunk_size)
        progress = {"total": len(starts), "desc": "Ranking", "disable": not self.show_progress_bar}
        # numpy releases the GIL in matmul, comparisons and sums: chunks run in parallel threads.
        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            chunks = list(tqdm(pool.map(rank_rows, starts), **progress))
        return concatenate_ranks(chunks)

    def search_top_k(
        self, query_embeddings: np.ndarray, candidate_embeddings: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k search over all candidates with faiss (``IndexFlatIP``).

        Returns:
            ``(scores, columns)`` of shape ``(num_queries, k)``; columns index ``self.candidate_ids``.
        """
        import faiss

        index = faiss.IndexFlatIP(candidate_embeddings.shape[1])
        if self.faiss_gpu:
            if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            else:
                logger.warning(
                    "faiss_gpu=True but faiss has no GPU support or sees no GPU; searching on CPU."
                )
        index.add(np.ascontiguousarray(candidate_embeddings, dtype=np.float32))
        return index.search(np.ascontiguousarray(query_embeddings, dtype=np.float32), min(k, index.ntotal))

    # ----------------------------------------------------------------------------------------------
    # Output files
    # ----------------------------------------------------------------------------------------------
    def write_report(self, report: dict[str, Any], output_path: str | os.PathLike) -> None:
        """Write ``{name}_metrics.json``, ``{name}_metrics.csv`` (one row per call), ``{name}_pair_map.csv``
        and ``{name}_pair_map.png`` into ``output_path``."""
        output = Path(output_path)
        output.mkdir(parents=True, exist_ok=True)
        prefix = self.file_prefix
        with open(output / f"{prefix}_metrics.json", "w", encoding="utf-8") as f:
            json.dump(_nan_to_none(report), f, indent=2, ensure_ascii=False, allow_nan=False)
        self._append_metrics_csv(report, output / f"{prefix}_metrics.csv")
        self._write_pair_csv(report["pair_map"], output / f"{prefix}_pair_map.csv")
        if report.get("pools"):
            self._write_pools_csv(report["pools"], output / f"{prefix}_pools.csv")
        if self.write_plot and report["pair_map"]:
            title = f"{self.name or 'Language-aware retrieval'}: mAP per language pair"
            summary = [
                f"{label} {report['metrics'][key]:.3f}"
                for label, key in (("mono", "mono_map"), ("cross", "cross_map"), ("multi", "multi_map"))
                if key in report["metrics"]
            ]
            if "rank_distance" in report["metrics"]:
                summary.append(f"rank distance {report['metrics']['rank_distance']:.1f}")
            title += "\n" + " | ".join(summary)
            plot_pair_map(report["pair_map"], output / f"{prefix}_pair_map.png", title=title)

    def _append_metrics_csv(self, report: dict[str, Any], path: Path) -> None:
        header = ["epoch", "steps", *self.metric_names]
        new_file = not path.exists()
        with open(path, "a", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(header)
            writer.writerow(
                [report["epoch"], report["steps"], *(report["metrics"][k] for k in self.metric_names)]
            )

    def _write_pools_csv(self, pools: list[dict[str, Any]], path: Path) -> None:
        """One row per pool: its languages, sizes and every metric of the full pool (empty when not computed)."""
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["num_languages", "languages", "num_queries", "num_candidates", *self.metric_names]
            )
            for pool in pools:
                values = [pool["metrics"].get(key, math.nan) for key in self.metric_names]
                writer.writerow(
                    [
                        pool["num_languages"],
                        " ".join(pool["languages"]),
                        pool["num_queries"],
                        pool["num_candidates"],
                        *("" if math.isnan(value) else value for value in values),
                    ]
                )

    @staticmethod
    def _write_pair_csv(pair_map: dict[str, dict[str, float]], path: Path) -> None:
        targets = list(dict.fromkeys(y for row in pair_map.values() for y in row))
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["query_language", *targets])
            for x, row in pair_map.items():
                writer.writerow([x, *("" if math.isnan(row.get(y, math.nan)) else row[y] for y in targets)])

    def _write_predictions(
        self, query_embeddings: np.ndarray, candidate_embeddings: np.ndarray, output_path
    ) -> None:
        scores, columns = self.search_top_k(query_embeddings, candidate_embeddings, self.top_k)
        output = Path(output_path)
        output.mkdir(parents=True, exist_ok=True)
        with open(output / f"{self.file_prefix}_predictions.jsonl", "w", encoding="utf-8") as f:
            for qid, lang, row_scores, row_columns in zip(
                self.query_ids, self.query_languages, scores, columns, strict=True
            ):
                results = [
                    {
                        "corpus_id": self.candidate_ids[c],
                        "language": self.candidate_languages[c],
                        "score": float(s),
                    }
                    for s, c in zip(row_scores, row_columns, strict=True)
                    if c >= 0
                ]
                f.write(json.dumps({"query_id": qid, "query_language": lang, "results": results}) + "\n")

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"languages": self.languages}
        if tuple(self.settings) != SETTINGS:
            config["settings"] = list(self.settings)
        if self.pools:
            config["pools"] = self.pools
        for key in ("query_prompt", "corpus_prompt", "similarity_fn_name", "truncate_dim"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config


def _eligible_settings(
    layout: RelevanceLayout, query_languages: Sequence[str], settings: Sequence[str]
) -> list[str]:
    """The settings (of ``settings``) with at least one query having a relevant candidate in its pool."""
    query_languages = np.asarray(query_languages)
    eligible = []
    for setting in settings:
        if setting == "multi":
            eligible.append(setting)
            continue
        for lang, relevant in zip(layout.languages, layout.relevant_by_language, strict=True):
            same = query_languages == lang
            if ((relevant[:, 0] >= 0) & (same if setting == "mono" else ~same)).any():
                eligible.append(setting)
                break
    return eligible


def _l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, np.finfo(np.float32).tiny)


def plot_pair_map(
    pair_map: Mapping[str, Mapping[str, float]], path: str | os.PathLike, title: str = "mAP per language pair"
) -> Path:
    """Draw the language-pair mAP matrix as an annotated heatmap (rows: query language, columns: candidates).

    The diagonal (monolingual) cells are outlined; empty pairs are grey.

    Args:
        pair_map: ``pair_map[query_language][candidate_language]`` = mAP.
        path: The PNG file to write.
        title: Figure title.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(pair_map)
    cols = list(dict.fromkeys(y for row in pair_map.values() for y in row))
    values = np.array([[pair_map[x].get(y, np.nan) for y in cols] for x in rows], dtype=float)
    size = max(4.0, 0.62 * len(cols) + 2.0)
    fig, ax = plt.subplots(figsize=(size, max(3.5, 0.55 * len(rows) + 1.8)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d0d0d0")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols)
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel("candidate language")
    ax.set_ylabel("query language")
    ax.set_title(title)
    for i, x in enumerate(rows):
        for j, y in enumerate(cols):
            value = values[i, j]
            text = "–" if np.isnan(value) else f"{value:.2f}".lstrip("0") if value < 1 else "1.0"
            color = "black" if np.isnan(value) or value > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
            if x == y:
                ax.add_patch(
                    plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5)
                )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="mAP")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
