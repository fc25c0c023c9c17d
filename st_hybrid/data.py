"""Parallel QA data: LAReQA loading and training pairs with language metadata.

Two views of the same files:

* the **parallel table** (:func:`load_parallel`, :func:`load_lareqa`): one row per (parallel id,
  language) with the question, its answer sentence and the paragraph. Training pairs are built from it.
* the **retrieval corpus** (:func:`load_lareqa_retrieval`): LAReQA-style queries, every sentence of
  every paragraph as a candidate, and each query's relevant candidates in every language.

Tatoeba serves both: :func:`split_tatoeba` (:func:`split_parallel` for any parallel table) splits it into a
training table and a held-out table that share no text and no parallel id, and :func:`tatoeba_retrieval`
turns the held-out table into a retrieval corpus (one pool of every language's sentences).

Training pairs (:func:`build_training_pairs`) carry text columns ``query`` and ``passage`` plus the
metadata columns in :data:`METADATA_COLUMNS`, which :class:`~st_hybrid.HybridBatchSampler` reads and
the trainer keeps away from the data collator.

Usage:
    >>> from st_hybrid.data import load_lareqa, build_training_pairs
    >>> parallel = load_lareqa("../shared/data/mlqa-r")  # doctest: +SKIP
    >>> pairs = build_training_pairs(parallel, cross_partners=2)  # doctest: +SKIP
    >>> pairs.column_names  # doctest: +SKIP
    ['query', 'passage', 'query_language', 'passage_language', 'parallel_id', 'source', 'answer_id']
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, load_dataset

__all__ = [
    "METADATA_COLUMNS",
    "PARALLEL_COLUMNS",
    "add_parallel_positives",
    "RetrievalCorpus",
    "TATOEBA_DIRECTIONS",
    "available_languages",
    "build_training_pairs",
    "is_tatoeba_folder",
    "load_lareqa",
    "load_lareqa_retrieval",
    "load_parallel",
    "load_tatoeba",
    "parallel_positive_columns",
    "require_consistent_case",
    "require_filled",
    "split_parallel",
    "split_tatoeba",
    "tatoeba_retrieval",
    "translation_components",
]

#: Metadata columns of a training-pairs dataset; ``source`` and ``answer_id`` are optional.
#: ``answer_id`` names the passage's answer sentence: rows sharing it have the same positive (see
#: :func:`load_lareqa`), and the sampler never puts two of them in one step.
METADATA_COLUMNS = ("query_language", "passage_language", "parallel_id", "source", "answer_id")
#: Columns a parallel table must have (``context``, ``source`` and ``answer_id`` are optional).
PARALLEL_COLUMNS = ("parallel_id", "language", "question", "answer")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def require_filled(values: pa.Array | pa.ChunkedArray, column: str, where: str = "") -> None:
    """Raise naming the column and its first rows that are missing (None) or empty / blank strings.

    Args:
        values: The column as an arrow array.
        column: Its name, for the message.
        where: What holds the column (e.g. ``"the parallel table"``), for the message.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    bad = pc.is_null(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        bad = pc.or_kleene(bad, pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0))
    if pc.any(bad).as_py():
        rows = np.flatnonzero(bad.fill_null(True).to_numpy(zero_copy_only=False))
        raise ValueError(
            f"Column {column!r}{' of ' + where if where else ''} has {len(rows)} missing or empty value(s), "
            f"first at rows {rows[:5].tolist()}; fill or drop those rows (e.g. with Dataset.filter) first: "
            "a missing id or language would silently pair unrelated rows, an empty text trains on nothing."
        )


def require_consistent_case(languages: Sequence[str]) -> None:
    """Reject language codes that differ only in case (``en`` / ``EN``).

    They would count as two languages and their pairs as cross-lingual. Codes are kept as written (not
    lower-cased) so that they keep matching the language lists given elsewhere (configs, evaluation).

    Args:
        languages: The distinct language codes.
    """
    by_lower: dict[str, list] = defaultdict(list)
    for language in languages:
        by_lower[str(language).lower()].append(language)
    clashes = [sorted(codes) for codes in by_lower.values() if len(codes) > 1]
    if clashes:
        raise ValueError(
            f"Language codes that differ only in case: {clashes}. 'en' and 'EN' would count as two languages "
            "(and their pairs as cross-lingual); write each language one way, e.g. lower-case the language "
            "column(s) with Dataset.map."
        )


def _check_parallel_table(table: Dataset, where: str = "the parallel table") -> None:
    """Every required value filled, language codes consistent in case (column-wise, no row loop)."""
    names = [name for name in (*PARALLEL_COLUMNS, "source") if name in table.column_names]
    arrow = table.select_columns(names).with_format("arrow")[:]
    for name in names:
        require_filled(arrow.column(name), name, where)
    require_consistent_case(
        pc.unique(arrow.column("language").combine_chunks().cast(pa.string())).to_pylist()
    )


# ---------------------------------------------------------------------------------------------
# LAReQA files
# ---------------------------------------------------------------------------------------------
def _lareqa_files(path: str | Path, languages: Sequence[str] | None) -> dict[str, Path]:
    """Map language code -> JSON file for a LAReQA folder (``xx.json`` per language) or one file."""
    path = Path(path)
    if path.is_file():
        files = {path.stem: path}
    elif path.is_dir():
        files = {p.stem: p for p in sorted(path.glob("*.json"))}
    else:
        raise FileNotFoundError(
            f"No LAReQA data at {path}: pass a folder of <language>.json files or one file."
        )
    if not files:
        raise FileNotFoundError(
            f"{path} holds no <language>.json files (LAReQA format, e.g. ../shared/data/xquad-r)."
        )
    if languages is not None:
        unknown = sorted(set(languages) - set(files))
        if unknown:
            raise ValueError(f"Languages {unknown} are not in {path}; available: {sorted(files)}.")
        files = {lang: files[lang] for lang in languages}
    return files


def _iter_paragraphs(file: Path, max_articles: int | None):
    """Yield (article index, paragraph index, paragraph dict) from a SQuAD-style JSON file."""
    data = json.loads(file.read_text(encoding="utf-8"))["data"]
    for article_index, article in enumerate(data[:max_articles]):
        for paragraph_index, paragraph in enumerate(article["paragraphs"]):
            if "sentences" not in paragraph or "sentence_breaks" not in paragraph:
                raise ValueError(
                    f"{file}: paragraphs need 'sentences' and 'sentence_breaks' (LAReQA format); "
                    "plain SQuAD files have no sentence segmentation."
                )
            yield article_index, paragraph_index, paragraph


def _first_answer_start(qa: dict, file: Path) -> int:
    """The character offset of a question's first answer; a clear error when it has none."""
    answers = qa.get("answers") or []
    if not answers or "answer_start" not in answers[0]:
        raise ValueError(
            f"{file}: question {qa.get('id')!r} has no answers (LAReQA needs one per question to find its "
            "relevant sentence); remove the question from the file or add its answer."
        )
    return answers[0]["answer_start"]


def _answer_sentence_index(paragraph: dict, answer_start: int) -> int:
    """Index of the sentence whose character span holds the answer start (LAReQA's relevance rule)."""
    starts = [start for start, _ in paragraph["sentence_breaks"]]
    # The last sentence starting at or before the answer: robust to answers that begin on a break.
    return max(int(np.searchsorted(starts, answer_start, side="right")) - 1, 0)


def load_lareqa(
    path: str | Path,
    languages: Sequence[str] | None = None,
    max_articles: int | None = None,
    source: str | None = None,
) -> Dataset:
    """Load LAReQA files (XQuAD-R, MLQA-R) as a parallel table.

    Args:
        path: A folder of ``<language>.json`` files or a single file (named after its language).
        languages: Languages to keep; all files in the folder by default.
        max_articles: Keep only the first N articles of each file (a quick subset).
        source: Value of the ``source`` column; the folder name by default.

    Returns:
        A dataset with one row per (question, language): ``parallel_id``, ``language``, ``question``,
        ``answer`` (the answer sentence), ``context`` (the paragraph), ``source`` and ``answer_id``
        (``"<source>/<language>/<article>/<paragraph>/<sentence>"``). Several questions often share an
        answer sentence (SQuAD-style data): their rows share an ``answer_id``, which the sampler uses to
        keep them, and through their parallel ids all their translations, out of each other's batches.
        The key is per language file, which holds for MLQA-R too (its files are not aligned across
        languages): the translations are joined through the parallel ids.

    Raises:
        ValueError: A question without answers (naming the file and the question id).
    """
    files = _lareqa_files(path, languages)
    source = source or Path(path).name
    rows: dict[str, list] = {name: [] for name in (*PARALLEL_COLUMNS, "context", "source", "answer_id")}
    for language, file in files.items():
        for article, paragraph_index, paragraph in _iter_paragraphs(file, max_articles):
            for qa in paragraph["qas"]:
                sentence = _answer_sentence_index(paragraph, _first_answer_start(qa, file))
                rows["answer_id"].append(f"{source}/{language}/{article}/{paragraph_index}/{sentence}")
                rows["parallel_id"].append(str(qa["id"]))
                rows["language"].append(language)
                rows["question"].append(qa["question"])
                rows["answer"].append(paragraph["sentences"][sentence])
                rows["context"].append(paragraph["context"])
                rows["source"].append(source)
    return Dataset.from_dict(rows)


def is_tatoeba_folder(source: str | Path | Dataset) -> bool:
    """Whether ``source`` is a folder of LASER Tatoeba files (``tatoeba.xxx-eng.{xxx,eng}``)."""
    if isinstance(source, Dataset):
        return False
    path = Path(source)
    return path.is_dir() and any(path.glob("tatoeba.*-eng.eng"))


def available_languages(source: str | Path | Dataset) -> list[str] | None:
    """The language codes a training source holds, read from its file names; None when only loading tells.

    A Tatoeba folder holds its languages paired with English plus ``"eng"``; a LAReQA folder one
    ``<language>.json`` per language; a LAReQA ``.json`` file the language of its name. Other sources
    (data files, Hub ids, datasets) return None.

    Usage:
        >>> from st_hybrid.data import available_languages
        >>> available_languages("../shared/data/mlqa-r")  # doctest: +SKIP
        ['ar', 'de', 'en', 'es', 'hi', 'vi', 'zh']
    """
    if is_tatoeba_folder(source):
        return sorted({*_tatoeba_languages(Path(source), None), "eng"})
    if isinstance(source, Dataset):
        return None
    path = Path(source)
    if path.is_dir() and any(path.glob("*.json")):
        return sorted(_lareqa_files(path, None))
    if path.is_file() and path.suffix == ".json":
        return [path.stem]
    return None


def _tatoeba_languages(path: Path, languages: Sequence[str] | None) -> list[str]:
    """The requested languages paired with English (all in the folder by default); unknown ones raise."""
    available = sorted(p.name.split(".")[1].split("-")[0] for p in path.glob("tatoeba.*-eng.eng"))
    if not available:
        raise FileNotFoundError(f"No tatoeba.xxx-eng.* files in {path}.")
    chosen = list(languages) if languages is not None else available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"Tatoeba languages {unknown} are not in {path}; available: {available}.")
    return chosen


def load_tatoeba(
    path: str | Path,
    languages: Sequence[str] | None = None,
    max_per_language: int | None = None,
) -> Dataset:
    """Load the LASER Tatoeba test set (``tatoeba.xxx-eng.{xxx,eng}``) as a parallel table.

    Each line pair becomes two rows sharing a parallel id: the sentence in ``xxx`` and its English
    translation, with ``question == answer`` (bitext has no questions). Mono pairs built from it are
    identity pairs, so train on Tatoeba with the ``cross`` strategy or use it for bitext evaluation.
    The English side differs per language file, so parallel ids are per language pair.

    Args:
        path: The Tatoeba folder (e.g. ``../shared/data/tatoeba``).
        languages: Non-English language codes to keep (``deu``, ``fra``, ...); all by default.
        max_per_language: Keep at most this many sentence pairs per language.

    Raises:
        ValueError: Two files of a pair with different line counts (naming both files and counts).
    """
    path = Path(path)
    chosen = _tatoeba_languages(path, languages)
    rows: dict[str, list] = {name: [] for name in (*PARALLEL_COLUMNS, "source")}
    for language in chosen:
        foreign_file, english_file = (
            path / f"tatoeba.{language}-eng.{language}",
            path / f"tatoeba.{language}-eng.eng",
        )
        foreign = foreign_file.read_text(encoding="utf-8").splitlines()
        english = english_file.read_text(encoding="utf-8").splitlines()
        if len(foreign) != len(english):
            raise ValueError(
                f"Line-aligned files differ in length: {foreign_file} has {len(foreign)} lines, {english_file} "
                f"has {len(english)}; pairing them line by line would misalign the translations. Fix the files "
                "so that line i of one translates line i of the other."
            )
        for line, (text_xx, text_en) in enumerate(list(zip(foreign, english))[:max_per_language]):
            for lang, text in ((language, text_xx), ("eng", text_en)):
                rows["parallel_id"].append(f"{language}-eng/{line}")
                rows["language"].append(lang)
                rows["question"].append(text)
                rows["answer"].append(text)
                rows["source"].append("tatoeba")
    return Dataset.from_dict(rows)


def load_parallel(
    source: str | Path | Dataset,
    languages: Sequence[str] | None = None,
    split: str = "train",
    max_articles: int | None = None,
) -> Dataset:
    """Load a parallel table from a LAReQA folder/file, a ``datasets.Dataset``, a data file or a Hub id.

    Args:
        source: A LAReQA folder or ``.json`` file; the Tatoeba folder (``tatoeba.xxx-eng.*`` files, see
            :func:`load_tatoeba`); a ``Dataset``; a local ``.parquet``/``.jsonl``/``.csv`` file; or a Hub
            dataset id. All but LAReQA and Tatoeba need the columns in :data:`PARALLEL_COLUMNS`.
        languages: Languages to keep (for Tatoeba: the languages paired with English).
        split: Split to load from a Hub id or data file.
        max_articles: For LAReQA sources, keep only the first N articles per language.

    Raises:
        ValueError: Missing columns; a missing (None) or empty ``parallel_id``, ``language``, ``question``,
            ``answer`` or ``source`` (naming the column and the first rows); language codes that differ
            only in case.
    """
    if isinstance(source, Dataset):
        dataset = source
    else:
        path = Path(source)
        if is_tatoeba_folder(path):
            paired = [lang for lang in languages if lang != "eng"] if languages is not None else None
            return load_tatoeba(path, languages=paired)
        if path.is_dir() or path.suffix == ".json":
            return load_lareqa(path, languages=languages, max_articles=max_articles)
        if path.is_file():
            builder = {".parquet": "parquet", ".jsonl": "json", ".csv": "csv"}.get(path.suffix)
            if builder is None:
                raise ValueError(
                    f"Unsupported data file {path}: use .json (LAReQA), .jsonl, .parquet or .csv."
                )
            dataset = load_dataset(builder, data_files=str(path), split=split)
        else:
            dataset = load_dataset(str(source), split=split)  # a Hub id
    missing = [c for c in PARALLEL_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The parallel dataset lacks columns {missing}; it needs {list(PARALLEL_COLUMNS)} "
            "(one row per parallel id and language; rows of one id are translations of each other)."
        )
    _check_parallel_table(dataset, "the parallel dataset" if isinstance(source, Dataset) else str(source))
    if languages is not None:
        keep = set(languages)
        dataset = dataset.filter(lambda batch: [lang in keep for lang in batch["language"]], batched=True)
    return dataset


# ---------------------------------------------------------------------------------------------
# Train / held-out split without shared text
# ---------------------------------------------------------------------------------------------
def _codes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Integer code per row (equal values, equal codes)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = values.cast(pa.large_string()).dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _require_columns(parallel: Dataset, needed: Sequence[str], fix: str) -> None:
    missing = [c for c in needed if c not in parallel.column_names]
    if missing:
        raise ValueError(f"The parallel table lacks columns {missing}; {fix}")


def translation_components(parallel: Dataset) -> np.ndarray:
    """Component code per row: rows linked by a parallel id, an ``answer_id`` or an identical text.

    Two rows are linked when they share a ``parallel_id`` (translations of each other), an ``answer_id``
    (when the table has one) or a text: the ``question`` or ``answer`` of one equal to the ``question`` or
    ``answer`` of the other, in any language. Components are closed under these links (transitively), as
    computed by :func:`st_hybrid.sampler.positive_groups`, the sampler's definition of "the same positive".

    Args:
        parallel: A parallel table (see :func:`load_parallel`).

    Returns:
        An int64 array of component codes ``0..num_components - 1``, one per row.
    """
    from st_hybrid.sampler import positive_groups  # imports torch: only when needed

    _require_columns(parallel, PARALLEL_COLUMNS, "build it with st_hybrid.data.load_parallel.")
    names = [*PARALLEL_COLUMNS, *(["answer_id"] if "answer_id" in parallel.column_names else [])]
    arrow = parallel.select_columns(names).with_format("arrow")[:]
    answer_id = _codes(arrow.column("answer_id")) if "answer_id" in names else None
    texts = {name: arrow.column(name).combine_chunks() for name in ("question", "answer")}
    return positive_groups(_codes(arrow.column("parallel_id")), answer_id, texts)


def _component_keys(parallel_ids: np.ndarray, components: np.ndarray) -> np.ndarray:
    """The smallest parallel id of each component (index = component code): independent of row order."""
    order = np.lexsort((parallel_ids, components))
    first = np.ones(len(order), dtype=bool)
    first[1:] = components[order][1:] != components[order][:-1]
    return parallel_ids[order][first]


def _unit_hash(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, key) on every machine and run (unlike Python's ``hash``)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_parallel(parallel: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split a parallel table into train and held-out test so that no text and no parallel id is on both sides.

    The rule: rows linked by a parallel id, an ``answer_id`` (when the table has one) or an identical text
    (question or answer, in any language), directly or through other rows, form one component
    (:func:`translation_components`), and a component goes to one side as a whole. A component goes to test
    when ``blake2b(seed, its smallest parallel id)`` (smallest in code-point order), read as a number in
    [0, 1), is below ``test_fraction``. So the split

    - shares nothing: Tatoeba's "I have two cats." is the English side of 47 language pairs (47 parallel
      ids); those 47 ids, their 47 translations and everything linked to them land on one side;
    - is deterministic across runs, machines and row orders (the components, their smallest ids and the
      hash do not depend on the order of the rows), and each side keeps the table's row order;
    - is stable per component: a component's side depends on its own ids only, not on the rest of the table.

    ``test_fraction`` is honoured in expectation over components, so the share of rows is close to it on a
    large table (full Tatoeba: 69,239 components, the largest 94 rows). Split the whole table and select
    languages afterwards (as :func:`split_tatoeba` does): a subset of languages has smaller components
    (fewer links), whose smallest ids, and so sides, can differ from those in the whole table.
    Other columns (``context``) are not compared: give disjoint paragraphs for LAReQA-style tables.

    Args:
        parallel: A parallel table (columns :data:`PARALLEL_COLUMNS`, optional ``answer_id``).
        test_fraction: Expected share of components held out, strictly between 0 and 1.
        seed: Another seed gives another (equally deterministic) split.

    Returns:
        ``(train, test)``, both parallel tables with the input's columns.

    Raises:
        ValueError: A ``test_fraction`` outside (0, 1); missing columns or values (see
            :func:`load_parallel`); a split that leaves one side empty (too few components).

    Usage:
        >>> from st_hybrid.data import load_tatoeba, split_parallel
        >>> train, test = split_parallel(load_tatoeba("../shared/data/tatoeba"), test_fraction=0.2)  # doctest: +SKIP
        >>> set(train["question"]).isdisjoint(test["question"])  # doctest: +SKIP
        True
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise ValueError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}.")
    if not 0 < test_fraction < 1:
        raise ValueError(
            f"test_fraction must be strictly between 0 and 1 (e.g. 0.2 holds out a fifth), got {test_fraction}; "
            "0 or 1 would leave one side empty."
        )
    _require_columns(parallel, PARALLEL_COLUMNS, "build it with st_hybrid.data.load_parallel.")
    _check_parallel_table(parallel)
    components = translation_components(parallel)
    parallel_ids = np.asarray(parallel.select_columns(["parallel_id"]).to_dict()["parallel_id"], dtype=str)
    keys = _component_keys(parallel_ids, components)
    held_out = np.fromiter(
        (_unit_hash(key, seed) < test_fraction for key in keys), dtype=bool, count=len(keys)
    )
    is_test = held_out[components]
    if is_test.all() or not is_test.any():
        side = "train" if is_test.all() else "test"
        raise ValueError(
            f"The split left the {side} side empty: the table has only {len(keys)} component(s) of linked rows "
            f"(parallel id or identical text); use more data or another test_fraction / seed."
        )
    return parallel.select(np.flatnonzero(~is_test)), parallel.select(np.flatnonzero(is_test))


def split_tatoeba(
    path: str | Path,
    languages: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_per_language: int | None = None,
) -> tuple[Dataset, Dataset]:
    """Tatoeba's train and held-out tables: the whole folder split by :func:`split_parallel`, then languages kept.

    Splitting the whole folder first makes every language subset a subset of one split: the training rows of
    30 languages never share a text with the held-out rows of all 112 (English sentences are shared across
    language pairs, so a subset split on its own could put a shared English sentence on the other side).

    Args:
        path: The Tatoeba folder (``tatoeba.xxx-eng.*`` files, e.g. ``../shared/data/tatoeba``).
        languages: Languages paired with English to keep on both sides (``"eng"`` is ignored: each pair keeps
            its English rows); all by default.
        test_fraction: Expected share of held-out components (see :func:`split_parallel`).
        seed: The split's seed.
        max_per_language: Keep at most this many sentence pairs (parallel ids) per language on each side, the
            first in file order: a smaller pool that is still a subset of the same split.

    Returns:
        ``(train, test)`` parallel tables as from :func:`load_tatoeba`.

    Raises:
        ValueError: An unknown language (naming the available ones); ``max_per_language`` below 1.

    Usage:
        >>> from st_hybrid.data import split_tatoeba, tatoeba_retrieval
        >>> train, test = split_tatoeba("../shared/data/tatoeba", languages=["deu", "fra"])  # doctest: +SKIP
        >>> corpus = tatoeba_retrieval(test)  # doctest: +SKIP
    """
    if max_per_language is not None and max_per_language < 1:
        raise ValueError(f"max_per_language must be >= 1 (or None for every pair), got {max_per_language}.")
    paired = [lang for lang in languages if lang != "eng"] if languages is not None else None
    keep = {f"{lang}-eng" for lang in _tatoeba_languages(Path(path), paired)}  # unknown languages fail first
    train, test = split_parallel(load_tatoeba(path), test_fraction=test_fraction, seed=seed)
    if paired is None and max_per_language is None:
        return train, test

    def kept(side: Dataset) -> Dataset:  # load_tatoeba's parallel ids are "<xxx>-eng/<line>"
        ids = side.select_columns(["parallel_id"]).to_dict()["parallel_id"]
        taken: dict[str, dict[str, None]] = defaultdict(dict)  # pair -> its kept parallel ids, in order
        rows = []
        for i, pid in enumerate(ids):
            pair = pid.split("/", 1)[0]
            if pair not in keep:
                continue
            if pid not in taken[pair] and (max_per_language is None or len(taken[pair]) < max_per_language):
                taken[pair][pid] = None
            if pid in taken[pair]:
                rows.append(i)
        return side.select(rows)

    return kept(train), kept(test)


# ---------------------------------------------------------------------------------------------
# Training pairs
# ---------------------------------------------------------------------------------------------
def _group_by_parallel_id(parallel_ids: np.ndarray, rng: np.random.Generator):
    """Order rows by parallel id (randomly within an id); return order, group start and size per row."""
    order = np.lexsort((rng.random(len(parallel_ids)), parallel_ids))
    sorted_ids = parallel_ids[order]
    is_start = np.ones(len(order), dtype=bool)
    is_start[1:] = sorted_ids[1:] != sorted_ids[:-1]
    group_starts = np.flatnonzero(is_start)
    group_sizes = np.diff(np.append(group_starts, len(order)))
    group_of_row = np.cumsum(is_start) - 1
    return order, group_starts[group_of_row], group_sizes[group_of_row]


def _cross_pair_indices(
    parallel_ids: np.ndarray, languages: np.ndarray, cross_partners: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(query row, passage row) index pairs across languages within each parallel id.

    Rows of an id sit in random order; row j's partners are the next k rows of its id, cyclically,
    so every row gets min(k, size - 1) distinct random partners with O(rows * k) numpy work.
    """
    order, starts, sizes = _group_by_parallel_id(parallel_ids, np.random.default_rng(seed))
    position = np.arange(len(order)) - starts
    max_shift = int(sizes.max()) - 1 if len(sizes) else 0
    shifts = range(1, (max_shift if cross_partners is None else min(cross_partners, max_shift)) + 1)
    queries, passages = [], []
    for shift in shifts:
        valid = shift < sizes
        partner = order[starts + (position + shift) % sizes]
        queries.append(order[valid])
        passages.append(partner[valid])
    if not queries:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    queries, passages = np.concatenate(queries), np.concatenate(passages)
    different = languages[queries] != languages[passages]  # duplicates of one language are not cross
    return queries[different], passages[different]


def build_training_pairs(
    parallel: Dataset,
    cross_partners: int | None = 2,
    include_mono: bool = True,
    seed: int = 0,
) -> Dataset:
    """Build (query, passage) training pairs with language metadata from a parallel table.

    Every row gives one **mono** pair (its question with its own answer) and up to ``cross_partners``
    **cross** pairs (its question with the answer of the same parallel id in another language, partner
    languages drawn at random). With L languages per id that is ``L * (1 + k)`` pairs per id instead
    of the ``L * L`` of all combinations, which explodes for many languages (250 languages: 62,500
    pairs per id). ``cross_partners=None`` materializes every combination. Identity pairs (query text
    equal to passage text, e.g. the mono pairs of bitext like Tatoeba) teach nothing and are dropped.

    Args:
        parallel: A parallel table (see :func:`load_parallel`).
        cross_partners: Cross-lingual partners per row (``None``: all other languages of the id).
        include_mono: Whether to include the mono pairs.
        seed: Seed for the choice of partner languages.

    Returns:
        A dataset with ``query``, ``passage``, ``query_language``, ``passage_language``,
        ``parallel_id``, ``source`` (``"default"`` when the table has none) and, when the table has it,
        ``answer_id`` (of the passage).

    Raises:
        ValueError: Missing columns; a missing (None) or empty ``parallel_id``, ``language``, ``question``,
            ``answer`` or ``source`` (naming the column and the first rows; such ids would pair unrelated
            rows as translations); language codes that differ only in case; no pairs at all.
    """
    missing = [c for c in PARALLEL_COLUMNS if c not in parallel.column_names]
    if missing:
        raise ValueError(
            f"The parallel table lacks columns {missing}; build it with st_hybrid.data.load_parallel."
        )
    if cross_partners is not None and cross_partners < 0:
        raise ValueError(f"cross_partners must be >= 0 or None (all partners), got {cross_partners}.")
    _check_parallel_table(parallel)
    optional = [c for c in ("source", "answer_id") if c in parallel.column_names]
    table = parallel.select_columns([*PARALLEL_COLUMNS, *optional])
    columns = table.to_dict()
    parallel_ids = np.asarray(columns["parallel_id"], dtype=object).astype(str)
    languages = np.asarray(columns["language"], dtype=object).astype(str)
    sources = np.asarray(columns.get("source") or ["default"] * len(table), dtype=object)

    query_rows, passage_rows = _cross_pair_indices(parallel_ids, languages, cross_partners, seed)
    if include_mono:
        mono = np.arange(len(table))
        query_rows, passage_rows = np.concatenate([mono, query_rows]), np.concatenate([mono, passage_rows])
    if len(query_rows) == 0:
        raise ValueError(
            "No training pairs: enable include_mono or give ids that exist in several languages."
        )

    questions = np.asarray(columns["question"], dtype=object)
    answers = np.asarray(columns["answer"], dtype=object)
    informative = questions[query_rows] != answers[passage_rows]
    query_rows, passage_rows = query_rows[informative], passage_rows[informative]
    if len(query_rows) == 0:
        raise ValueError(
            "No training pairs: enable include_mono or give ids that exist in several languages."
        )
    pairs = {
        "query": questions[query_rows].tolist(),
        "passage": answers[passage_rows].tolist(),
        "query_language": languages[query_rows].tolist(),
        "passage_language": languages[passage_rows].tolist(),
        "parallel_id": parallel_ids[query_rows].tolist(),
        "source": sources[query_rows].astype(str).tolist(),
    }
    if "answer_id" in columns:  # the passage's answer sentence: the sampler's grouping key
        pairs["answer_id"] = np.asarray(columns["answer_id"], dtype=object)[passage_rows].astype(str).tolist()
    return Dataset.from_dict(pairs)


def parallel_positive_columns(num_positives: int) -> list[str]:
    """Names of the extra positive columns: ``passage_2``, ``passage_3``, ... (``passage`` is the first)."""
    return [f"passage_{k}" for k in range(2, num_positives + 2)]


def add_parallel_positives(
    pairs: Dataset, num_positives: int = 1, seed: int = 0, answers_from: Dataset | None = None
) -> Dataset:
    """Give every pair ``num_positives`` more positives: its answer in other languages of its parallel id.

    A question's answer in every language is relevant to it (the LAReQA multilingual pool), but a pair
    names one. The extra columns ``passage_2``, ... hold the answers of the pair's ``(source, parallel_id)``
    in other languages: first languages that are neither the query's nor the passage's (in a random order),
    then the query's own. Rows whose id has too few languages are dropped. Train on them with
    :class:`st_hybrid.losses.MultiPositiveRankingLoss`: ``MultipleNegativesRankingLoss`` would score the
    extra columns as negatives, i.e. a translation of the positive as a false negative.

    Args:
        pairs: Training pairs (see :func:`build_training_pairs`); other columns (mined negatives) are kept.
        num_positives: Extra positives per row (>= 1).
        seed: Seed for the choice of languages.
        answers_from: Pairs to read each id's answers from (default ``pairs``): give the pairs before
            a step that dropped rows (mining), so no answer is lost with them.

    Returns:
        ``pairs`` with the columns ``passage_2`` ... after ``passage``, fewer rows if some ids were short.
        A lone mined ``negative`` column is renamed ``negative_1``, as with several negatives.

    Raises:
        ValueError: ``num_positives < 1``, missing columns, or no row with enough languages.
    """
    if num_positives < 1:
        raise ValueError(f"num_positives must be >= 1, got {num_positives}.")
    needed = ["query", "passage", "query_language", "passage_language", "parallel_id"]
    source = answers_from if answers_from is not None else pairs
    for name, table in (("pairs", pairs), ("answers_from", source)):
        if missing := [c for c in needed if c not in table.column_names]:
            raise ValueError(f"{name} lacks the columns {missing}; build it with build_training_pairs.")
    taken = [c for c in parallel_positive_columns(num_positives) if c in pairs.column_names]
    if taken:
        raise ValueError(f"pairs already has the columns {taken}: add parallel positives once.")

    def keys(table: Dataset) -> list[tuple[str, str]]:
        sources = table["source"] if "source" in table.column_names else ["default"] * len(table)
        return list(zip(map(str, sources), map(str, table["parallel_id"]), strict=True))

    answers: dict[tuple[str, str], dict[str, str]] = {}
    for key, language, text in zip(keys(source), source["passage_language"], source["passage"], strict=True):
        answers.setdefault(key, {}).setdefault(language, text)
    rng = np.random.default_rng(seed)
    extra, kept = [], []
    row_keys = keys(pairs)
    for row, (key, query_language, passage_language, passage) in enumerate(
        zip(row_keys, pairs["query_language"], pairs["passage_language"], pairs["passage"], strict=True)
    ):
        by_language = answers.get(key, {})
        others = sorted(set(by_language) - {query_language, passage_language})
        order = [others[i] for i in rng.permutation(len(others))]
        if query_language != passage_language and query_language in by_language:
            order.append(query_language)
        texts = [by_language[language] for language in order if by_language[language] != passage]
        if len(texts) >= num_positives:
            kept.append(row)
            extra.append(texts[:num_positives])
    if not kept:
        raise ValueError(
            f"No pair's parallel id has {num_positives} answer(s) besides its passage: lower num_positives "
            "or train on data with more languages per id."
        )
    result = pairs.select(kept) if len(kept) < len(pairs) else pairs
    names = parallel_positive_columns(num_positives)
    for position, name in enumerate(names):
        result = result.add_column(name, [texts[position] for texts in extra])
    others = [c for c in result.column_names if c not in names]
    at = others.index("passage") + 1
    result = result.select_columns(others[:at] + names + others[at:])
    if "negative" in result.column_names:
        # sentence-transformers' collator expects a column named `negative` at index 2 and warns otherwise.
        result = result.rename_column("negative", "negative_1")
    return result


# ---------------------------------------------------------------------------------------------
# Retrieval corpus (evaluation)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrievalCorpus:
    """Queries, candidates and relevance for language-aware retrieval evaluation.

    Lists of one kind are aligned (``query_texts[i]`` belongs to ``query_ids[i]``). ``relevant`` maps a
    query id to the ids of its relevant candidates, in every language.
    """

    query_ids: list[str]
    query_texts: list[str]
    query_languages: list[str]
    query_parallel_ids: list[str]
    candidate_ids: list[str]
    candidate_texts: list[str]
    candidate_languages: list[str]
    relevant: dict[str, set[str]] = field(repr=False)

    @property
    def languages(self) -> list[str]:
        """Languages of the queries and candidates, sorted."""
        return sorted(set(self.query_languages) | set(self.candidate_languages))

    def __repr__(self) -> str:
        return (
            f"RetrievalCorpus(languages={self.languages}, queries={len(self.query_ids)}, "
            f"candidates={len(self.candidate_ids)})"
        )


def load_lareqa_retrieval(
    path: str | Path,
    languages: Sequence[str] | None = None,
    max_articles: int | None = None,
) -> RetrievalCorpus:
    """Load LAReQA files as a retrieval corpus (queries, candidate sentences, relevance).

    Candidates are every sentence of every paragraph in every language (XQuAD-R: 13,014; MLQA-R:
    20,534). A query's relevant candidates are the answer sentences of its parallel id in all loaded
    languages (XQuAD-R: 11 each; MLQA-R: 2-4). Ids: queries ``"<lang>/<qas id>"``, candidates
    ``"<lang>/<article>/<paragraph>/<sentence>"``.

    Args:
        path: A folder of ``<language>.json`` files or one file.
        languages: Languages to load; all by default.
        max_articles: Keep the first N articles of each file (XQuAD-R files are article-aligned, so this
            keeps a parallel subset; MLQA-R files are not, so there it also drops relevant answers).
    """
    files = _lareqa_files(path, languages)
    queries: dict[str, list[str]] = defaultdict(list)
    candidates: dict[str, list[str]] = defaultdict(list)
    answers_of_id: dict[str, set[str]] = defaultdict(set)
    for language, file in files.items():
        for article, paragraph_index, paragraph in _iter_paragraphs(file, max_articles):
            prefix = f"{language}/{article}/{paragraph_index}"
            for sentence_index, sentence in enumerate(paragraph["sentences"]):
                candidates["id"].append(f"{prefix}/{sentence_index}")
                candidates["text"].append(sentence)
                candidates["language"].append(language)
            for qa in paragraph["qas"]:
                sentence_index = _answer_sentence_index(paragraph, _first_answer_start(qa, file))
                parallel_id = str(qa["id"])
                answers_of_id[parallel_id].add(f"{prefix}/{sentence_index}")
                queries["id"].append(f"{language}/{parallel_id}")
                queries["text"].append(qa["question"])
                queries["language"].append(language)
                queries["parallel_id"].append(parallel_id)
    if not queries["id"]:
        raise ValueError(
            f"No questions found in {path} (languages={languages}, max_articles={max_articles})."
        )
    relevant = {qid: answers_of_id[pid] for qid, pid in zip(queries["id"], queries["parallel_id"])}
    return RetrievalCorpus(
        query_ids=queries["id"],
        query_texts=queries["text"],
        query_languages=queries["language"],
        query_parallel_ids=queries["parallel_id"],
        candidate_ids=candidates["id"],
        candidate_texts=candidates["text"],
        candidate_languages=candidates["language"],
        relevant=relevant,
    )


TATOEBA_DIRECTIONS = ("eng-x", "x-eng")


def tatoeba_retrieval(
    parallel_test: Dataset, direction: str = "eng-x", pivot: str = "eng"
) -> RetrievalCorpus:
    """Held-out bitext (e.g. Tatoeba's test side of :func:`split_tatoeba`) as a retrieval corpus.

    Every distinct (language, sentence) of the table is one item. A sentence's translations are the other
    sentences of its component (:func:`translation_components`: the rows of its parallel id, and through
    identical texts every translation of the same English sentence, e.g. the 47 translations of
    "I have two cats."); all of them are relevant.

    Queries and candidates are disjoint by design, so that no query can retrieve itself (the evaluator and
    mteb score every candidate; a query's own sentence in the pool would take rank 1 without being a
    translation). Hence two directions around the ``pivot`` language (English):

    - ``"eng-x"``: English sentences are the queries; the pool is every other language's sentences at once
      (the mixed pool: up to 112 languages, every translation relevant). The multilingual setting gives
      mAP, rank distance and nDCG@10 in that pool; the cross setting ranks within one language's sentences,
      so ``pools=[["eng", x] for x in languages]`` of :class:`~st_hybrid.evaluation.LanguageAwareRetrievalEvaluator`
      (with ``mrr_at_k`` including 1) gives XTREME-R's English->x accuracy@1 as each pool's ``multi_mrr@1``
      (MRR@1 is 1 exactly when the top candidate is a translation).
    - ``"x-eng"``: every other language's sentences are the queries; the pool is the English sentences.
      ``per_language[x]["multi_mrr@1"]`` is x->English accuracy@1, over the pool of all held-out English
      sentences (XTREME-R ranks within the ~1,000 English sentences of x's own file: a harder, larger pool
      here, the same for every x).

    A text present in two languages (a name, "OK.") is one item per language, both in one component, so a
    candidate equal to a query's text is always a translation of it (no tie of a relevant candidate with a
    non-relevant duplicate). Queries without a translation on the other side are left out.

    Ids: ``"<language>/<i>"``, ``i`` the position of the sentence among its language's distinct sentences
    in sorted order (independent of row order); ``query_parallel_ids`` hold the component's smallest
    parallel id.

    Args:
        parallel_test: A bitext parallel table (``question == answer`` on every row, as from
            :func:`load_tatoeba`), normally the held-out side of :func:`split_tatoeba`.
        direction: ``"eng-x"`` (pivot-language queries, pool of the other languages) or ``"x-eng"``.
        pivot: The language on one side of every pair (``"eng"`` in Tatoeba).

    Raises:
        ValueError: An unknown direction; a row whose question differs from its answer (not bitext); no
            query with a translation on the other side.

    Usage:
        >>> from st_hybrid.data import split_tatoeba, tatoeba_retrieval
        >>> from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator
        >>> _, test = split_tatoeba("../shared/data/tatoeba")  # doctest: +SKIP
        >>> corpus = tatoeba_retrieval(test, direction="eng-x")  # doctest: +SKIP
        >>> evaluator = LanguageAwareRetrievalEvaluator.from_corpus(
        ...     corpus, settings=["multi"], mrr_at_k=(1, 10),
        ...     pools=[["eng", x] for x in corpus.languages if x != "eng"])  # doctest: +SKIP
        >>> report = evaluator.compute_report(model)  # doctest: +SKIP
        >>> {pool["languages"][1]: pool["metrics"]["multi_mrr@1"] for pool in report["pools"]}  # doctest: +SKIP
    """
    if direction not in TATOEBA_DIRECTIONS:
        raise ValueError(f"direction must be one of {TATOEBA_DIRECTIONS}, got {direction!r}.")
    _require_columns(parallel_test, PARALLEL_COLUMNS, "build it with st_hybrid.data.load_tatoeba.")
    _check_parallel_table(parallel_test, "the held-out bitext table")
    columns = parallel_test.select_columns(list(PARALLEL_COLUMNS)).to_dict()
    not_bitext = [i for i, (q, a) in enumerate(zip(columns["question"], columns["answer"])) if q != a]
    if not_bitext:
        raise ValueError(
            f"tatoeba_retrieval needs bitext rows (question == answer, as load_tatoeba gives); rows "
            f"{not_bitext[:5]} differ. For question/answer data use load_lareqa_retrieval."
        )
    components = translation_components(parallel_test)
    keys = _component_keys(np.asarray(columns["parallel_id"], dtype=object).astype(str), components)
    # One item per distinct (language, text); identical texts share a component, so it is well defined.
    component_of = dict(zip(zip(columns["language"], columns["question"]), components.tolist()))
    items = sorted(component_of)
    ids, position = [], defaultdict(int)
    for language, _ in items:
        ids.append(f"{language}/{position[language]}")
        position[language] += 1
    is_query = [(language == pivot) == (direction == "eng-x") for language, _ in items]
    candidates_of = defaultdict(set)
    for item, item_id, query in zip(items, ids, is_query):
        if not query:
            candidates_of[component_of[item]].add(item_id)
    queries = [
        (item_id, item)
        for item, item_id, query in zip(items, ids, is_query)
        if query and candidates_of[component_of[item]]
    ]
    if not queries:
        raise ValueError(
            f"No {direction} query has a translation on the other side: the table needs rows in {pivot!r} "
            "and in other languages sharing parallel ids."
        )
    candidates = [(item_id, item) for item, item_id, query in zip(items, ids, is_query) if not query]
    return RetrievalCorpus(
        query_ids=[item_id for item_id, _ in queries],
        query_texts=[text for _, (_, text) in queries],
        query_languages=[language for _, (language, _) in queries],
        query_parallel_ids=[str(keys[component_of[item]]) for _, item in queries],
        candidate_ids=[item_id for item_id, _ in candidates],
        candidate_texts=[text for _, (_, text) in candidates],
        candidate_languages=[language for _, (language, _) in candidates],
        relevant={item_id: set(candidates_of[component_of[item]]) for item_id, item in queries},
    )
