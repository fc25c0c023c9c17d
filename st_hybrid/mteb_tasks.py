"""XQuAD-R, MLQA-R and held-out Tatoeba as mteb retrieval tasks with one mixed-language pool (an optional extra).

mteb's own XQuAD and MLQA retrieval tasks score one language pair per pool; LAReQA's multilingual setting
puts the candidates of every language in **one** pool, with all parallel answers relevant (mteb issue
#1625 asks for such merged pools). These tasks build that pool from the local LAReQA files
(:func:`st_hybrid.data.load_lareqa_retrieval`, the data of
:class:`~st_hybrid.evaluation.LanguageAwareRetrievalEvaluator`), so ``mteb.evaluate`` runs offline, and
``k_values`` reach the full pool depth: ``map_at_<pool size>`` is full-depth AP, the LAReQA mAP.

:class:`TatoebaMixedPool` does the same for the held-out side of the Tatoeba split
(:func:`st_hybrid.data.split_tatoeba`, :func:`st_hybrid.data.tatoeba_retrieval`): English sentences retrieve
from one pool of all other languages' sentences, every translation relevant (or the reverse direction).

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
from mteb.tasks.bitext_mining.multilingual import TatoebaBitextMining

from st_hybrid.data import RetrievalCorpus, load_lareqa_retrieval, split_tatoeba, tatoeba_retrieval

__all__ = [
    "LANGUAGE_SCRIPTS",
    "TATOEBA_SCRIPTS",
    "LAReQAMixedPool",
    "MLQARMixedPool",
    "MixedPoolRetrieval",
    "TatoebaMixedPool",
    "XQuADRMixedPool",
]

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
#: Tatoeba's ISO 639-3 codes (as in ``tatoeba.xxx-eng.*``) -> mteb language, read from mteb's own Tatoeba task.
TATOEBA_SCRIPTS = {
    code.split("-")[0]: code
    for pair in TatoebaBitextMining.metadata.eval_langs.values()
    for code in reversed(pair)  # the first script listed for a language wins
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


class MixedPoolRetrieval(AbsTaskRetrieval):
    """A :class:`~st_hybrid.data.RetrievalCorpus` as one mteb retrieval pool (queries, candidates, qrels).

    Subclasses build the corpus and call :meth:`_use_corpus` before ``AbsTaskRetrieval.__init__``.
    """

    metadata: ClassVar[TaskMetadata]
    #: Our language code -> mteb language (ISO 639-3 + ISO 15924 script), and that table's name in this module.
    language_scripts: ClassVar[dict[str, str]]
    scripts_name: ClassVar[str]

    def _use_corpus(self, corpus: RetrievalCorpus, k_values: Sequence[int]) -> None:
        """Keep the corpus, cap ``k_values`` at the pool size, name exactly the loaded languages."""
        present = list(dict.fromkeys(corpus.query_languages + corpus.candidate_languages))
        unknown = [lang for lang in present if lang not in self.language_scripts]
        if unknown:
            raise ValueError(
                f"No mteb language code for {unknown}: add them to st_hybrid.mteb_tasks.{self.scripts_name} "
                f"(ISO 639-3 + script, e.g. 'deu-Latn')."
            )
        self.retrieval_corpus = corpus
        self.pool_size = len(corpus.candidate_ids)
        self.k_values = tuple(
            sorted({int(k) for k in k_values if 0 < int(k) < self.pool_size} | {self.pool_size})
        )
        # One instance may hold a language subset: its metadata names exactly the loaded languages.
        self.metadata = type(self).metadata.model_copy(
            update={"eval_langs": [self.language_scripts[lang] for lang in present]}
        )

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Turn the loaded corpus into mteb's retrieval split (queries, corpus, qrels with relevance 1)."""
        if self.data_loaded:
            return
        corpus = self.retrieval_corpus
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


class LAReQAMixedPool(MixedPoolRetrieval):
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

    language_scripts, scripts_name = LANGUAGE_SCRIPTS, "LANGUAGE_SCRIPTS"

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
        self._use_corpus(self.lareqa, k_values)
        super().__init__(**kwargs)


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


class TatoebaMixedPool(MixedPoolRetrieval):
    """Held-out Tatoeba as one mteb retrieval pool: every language's sentences at once, every translation relevant.

    The held-out side of :func:`st_hybrid.data.split_tatoeba` (no text shared with its training side) as
    built by :func:`st_hybrid.data.tatoeba_retrieval`: with ``direction="eng-x"`` English sentences are the
    queries and the pool holds the sentences of every other language (up to 112); with ``"x-eng"`` the
    other languages' sentences query the pool of English sentences. Queries and candidates never share an
    id or a sentence that is not a translation, so no query retrieves itself.

    Args:
        source: The Tatoeba folder (``tatoeba.xxx-eng.*``, e.g. ``../shared/data/tatoeba``), split here, or
            a held-out bitext table (a ``datasets.Dataset``) used as it is.
        direction: ``"eng-x"`` or ``"x-eng"`` (see :func:`st_hybrid.data.tatoeba_retrieval`).
        languages: Languages paired with English to keep (with a folder); all 112 by default.
        test_fraction: The split's held-out share (with a folder; see :func:`st_hybrid.data.split_parallel`).
        seed: The split's seed (with a folder).
        k_values: Cut-offs; the pool size is always added (and larger ones dropped), so that
            ``map_at_<pool size>`` is full-depth average precision.
        mteb_seed: ``AbsTaskRetrieval``'s seed (``seed`` is the split's here).
        **kwargs: Passed to ``AbsTaskRetrieval``.

    Raises:
        ValueError: On a language mteb's Tatoeba task has no code for (see ``TATOEBA_SCRIPTS``).
    """

    language_scripts, scripts_name = TATOEBA_SCRIPTS, "TATOEBA_SCRIPTS"
    metadata = TaskMetadata(
        name="TatoebaMixedPool",
        description=(
            "Held-out Tatoeba (LASER test set, split so that no sentence is shared with the training side): "
            "English sentences retrieve their translations from one pool of up to 112 languages' sentences "
            "(or those languages' sentences retrieve English ones); every translation is relevant."
        ),
        reference=TatoebaBitextMining.metadata.reference,
        dataset={
            "path": "local LASER Tatoeba files, held-out side of st_hybrid.data.split_tatoeba",
            "revision": "local",
        },
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=sorted(set(TATOEBA_SCRIPTS.values())),
        main_score="ndcg_at_10",
        date=TatoebaBitextMining.metadata.date,
        domains=["Written"],
        task_subtypes=[],
        license=TatoebaBitextMining.metadata.license,
        annotations_creators="human-annotated",
        dialect=[],
        sample_creation="found",
        bibtex_citation=TatoebaBitextMining.metadata.bibtex_citation,
    )

    def __init__(
        self,
        source: str | os.PathLike | Dataset,
        *,
        direction: str = "eng-x",
        languages: Sequence[str] | None = None,
        test_fraction: float = 0.2,
        seed: int = 0,
        k_values: Sequence[int] = DEFAULT_K_VALUES,
        mteb_seed: int = 42,
        **kwargs: Any,
    ):
        if isinstance(source, Dataset):
            held_out = source
        else:
            _, held_out = split_tatoeba(source, languages=languages, test_fraction=test_fraction, seed=seed)
        self._use_corpus(tatoeba_retrieval(held_out, direction=direction), k_values)
        super().__init__(seed=mteb_seed, **kwargs)
