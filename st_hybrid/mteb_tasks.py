"""XQuAD-R and MLQA-R as mteb retrieval tasks with one mixed-language pool (an optional extra).

mteb's own XQuAD and MLQA retrieval tasks score one language pair per pool; LAReQA's multilingual setting
puts the candidates of every language in **one** pool, with all parallel answers relevant (mteb issue
#1625 asks for such merged pools). These tasks build that pool from the local LAReQA files
(:func:`st_hybrid.data.load_lareqa_retrieval`, the data of
:class:`~st_hybrid.evaluation.LanguageAwareRetrievalEvaluator`), so ``mteb.evaluate`` runs offline, and
``k_values`` reach the full pool depth: ``map_at_<pool size>`` is full-depth AP, the LAReQA mAP.

Two differences with our evaluator's numbers: mteb averages over queries (ours: over query languages
first, the same when every language has the same number of queries, as in XQuAD-R), and mteb breaks
score ties by document id (ours: against the relevant candidate).

Needs ``pip install st-hybrid[mteb]``; the core install does not pull mteb in.

Usage:
    >>> import mteb
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_hybrid.mteb_tasks import XQuADRMixedPool
    >>> task = XQuADRMixedPool("../shared/data/xquad-r")  # doctest: +SKIP
    >>> results = mteb.evaluate(SentenceTransformer("path/to/model"), task, cache=None)  # doctest: +SKIP
    >>> scores = results.task_results[0].scores["test"][0]  # doctest: +SKIP
    >>> scores["ndcg_at_10"], scores[f"map_at_{task.pool_size}"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from st_hybrid.data import RetrievalCorpus, load_lareqa_retrieval

__all__ = ["LANGUAGE_SCRIPTS", "LAReQAMixedPool", "MLQARMixedPool", "XQuADRMixedPool"]

# mteb names languages by ISO 639-3 code and ISO 15924 script.
LANGUAGE_SCRIPTS = {
    "ar": "ara-Arab",
    "de": "deu-Latn",
    "el": "ell-Grek",
    "en": "eng-Latn",
    "es": "spa-Latn",
    "hi": "hin-Deva",
    "ru": "rus-Cyrl",
    "th": "tha-Thai",
    "tr": "tur-Latn",
    "vi": "vie-Latn",
    "zh": "zho-Hans",
}
DEFAULT_K_VALUES = (1, 3, 5, 10, 20, 100, 1000)

_LAREQA_CITATION = r"""@inproceedings{roy-etal-2020-lareqa,
    title = "{LAR}e{QA}: Language-Agnostic Answer Retrieval from a Multilingual Pool",
    author = "Roy, Uma and Constant, Noah and Al-Rfou, Rami and Barua, Aditya and Phillips, Aaron and Yang, Yinfei",
    booktitle = "Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing (EMNLP)",
    year = "2020",
    pages = "5919--5930",
}"""


def _metadata(name: str, description: str, languages: Sequence[str], date: tuple[str, str]) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description=description,
        reference="https://github.com/google-research-datasets/lareqa",
        dataset={"path": f"local LAReQA files ({name})", "revision": "local"},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=[LANGUAGE_SCRIPTS[lang] for lang in languages],
        main_score="ndcg_at_10",
        date=date,
        domains=["Encyclopaedic", "Written"],
        task_subtypes=["Question answering"],
        license="cc-by-sa-4.0",
        annotations_creators="human-annotated",
        dialect=[],
        sample_creation="human-translated",
        bibtex_citation=_LAREQA_CITATION,
    )


class LAReQAMixedPool(AbsTaskRetrieval):
    """A LAReQA benchmark as one mteb retrieval pool: all languages' candidates, all parallel answers relevant.

    Args:
        path: The LAReQA folder (``<language>.json`` files, e.g. ``../shared/data/xquad-r``) or one file.
        languages: Languages to load (queries and candidates); all by default.
        max_articles: Keep the first N articles of each file (a quick subset).
        k_values: Cut-offs; the pool size is always added (and larger ones dropped), so that
            ``map_at_<pool size>`` is full-depth average precision.
        **kwargs: Passed to ``AbsTaskRetrieval`` (``seed``).

    Raises:
        ValueError: On a language mteb has no code for here (see ``LANGUAGE_SCRIPTS``).
    """

    metadata: ClassVar[TaskMetadata]

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        languages: Sequence[str] | None = None,
        max_articles: int | None = None,
        k_values: Sequence[int] = DEFAULT_K_VALUES,
        **kwargs: Any,
    ):
        self.lareqa: RetrievalCorpus = load_lareqa_retrieval(
            path, languages=languages, max_articles=max_articles
        )
        present = list(dict.fromkeys(self.lareqa.query_languages + self.lareqa.candidate_languages))
        unknown = [lang for lang in present if lang not in LANGUAGE_SCRIPTS]
        if unknown:
            raise ValueError(
                f"No mteb language code for {unknown}: add them to st_hybrid.mteb_tasks.LANGUAGE_SCRIPTS "
                f"(ISO 639-3 + script, e.g. 'deu-Latn')."
            )
        self.pool_size = len(self.lareqa.candidate_ids)
        self.k_values = tuple(
            sorted({int(k) for k in k_values if 0 < int(k) < self.pool_size} | {self.pool_size})
        )
        # One instance may hold a language subset: its metadata names exactly the loaded languages.
        self.metadata = type(self).metadata.model_copy(
            update={"eval_langs": [LANGUAGE_SCRIPTS[lang] for lang in present]}
        )
        super().__init__(**kwargs)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Turn the loaded corpus into mteb's retrieval split (queries, corpus, qrels with relevance 1)."""
        if self.data_loaded:
            return
        corpus = self.lareqa
        split = RetrievalSplitData(
            queries=Dataset.from_dict({"id": corpus.query_ids, "text": corpus.query_texts}),
            corpus=Dataset.from_dict(
                {
                    "id": corpus.candidate_ids,
                    "text": corpus.candidate_texts,
                    "title": [""] * len(corpus.candidate_ids),
                }
            ),
            relevant_docs={qid: dict.fromkeys(sorted(corpus.relevant[qid]), 1) for qid in corpus.query_ids},
            top_ranked=None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True


class XQuADRMixedPool(LAReQAMixedPool):
    """XQuAD-R (11 languages, 13,090 questions, 13,014 candidate sentences) as one mixed-language pool."""

    metadata = _metadata(
        "XQuADRMixedPool",
        "XQuAD-R (LAReQA): questions in 11 languages retrieve answer sentences from one pool of all 11 "
        "languages; the answer in every language is relevant (11 per question).",
        ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"],
        ("2019-10-01", "2020-04-12"),
    )


class MLQARMixedPool(LAReQAMixedPool):
    """MLQA-R (7 languages, 4,199 questions, 20,534 candidate sentences) as one mixed pool."""

    metadata = _metadata(
        "MLQARMixedPool",
        "MLQA-R (LAReQA): questions in 7 languages retrieve answer sentences from one pool of all 7 "
        "languages; the answers in the languages that have one are relevant (2 to 4 per question).",
        ["ar", "de", "en", "es", "hi", "vi", "zh"],
        ("2019-10-01", "2020-04-12"),
    )
