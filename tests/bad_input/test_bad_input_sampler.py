"""Bad input to the data loaders, the sampler and the trainers: a clear error naming the problem and the fix.

Each case failed silently before (wrong pairs, wrong batches, metadata fed to the model) or crashed with
a bare error; nothing on disk is changed by a refused input.
"""

from __future__ import annotations

import json
import logging
import pickle
from functools import partial

import numpy as np
import pytest
from datasets import Dataset, concatenate_datasets
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from st_hybrid.data import (
    build_training_pairs,
    load_lareqa,
    load_lareqa_retrieval,
    load_parallel,
    load_tatoeba,
)
from st_hybrid.sampler import HybridBatchSampler, PairMetadata
from st_hybrid.trainer import HybridTrainer, hybrid_batch_sampler


# -- helpers ---------------------------------------------------------------------------------------
def parallel_table(num_ids: int = 4, languages=("en", "de")) -> dict[str, list]:
    rows = {"parallel_id": [], "language": [], "question": [], "answer": []}
    for i in range(num_ids):
        for lang in languages:
            rows["parallel_id"].append(str(i))
            rows["language"].append(lang)
            rows["question"].append(f"question {i} in {lang}")
            rows["answer"].append(f"answer {i} in {lang}")
    return rows


def pairs_with_metadata(num_ids: int = 32, languages=("en", "de", "fr"), source: str = "default") -> Dataset:
    """Per (id, language): a mono row and a cross row to the next language."""
    columns = {
        k: [] for k in ("query", "passage", "query_language", "passage_language", "parallel_id", "source")
    }
    for i in range(num_ids):
        for index, lang in enumerate(languages):
            partners = [lang] + ([languages[(index + 1) % len(languages)]] if len(languages) > 1 else [])
            for passage_lang in partners:
                columns["query"].append(f"{source} question {i} in {lang}")
                columns["passage"].append(f"{source} answer {i} in {passage_lang}")
                columns["query_language"].append(lang)
                columns["passage_language"].append(passage_lang)
                columns["parallel_id"].append(f"{source}-{i}")
                columns["source"].append(source)
    return Dataset.from_dict(columns)


def make_args(tmp_path, **overrides) -> SentenceTransformerTrainingArguments:
    kwargs = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "max_steps": 2,
        "save_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": True,
        "seed": 3,
        "dataloader_drop_last": True,
    }
    kwargs.update(overrides)
    return SentenceTransformerTrainingArguments(**kwargs)


# -- missing / empty values ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "value", "row"),
    [("parallel_id", None, 3), ("parallel_id", "", 5), ("language", None, 0), ("language", "  ", 6),
     ("question", None, 2), ("answer", "", 7)],
)  # fmt: skip
def test_missing_or_empty_values_name_the_column_and_rows(column, value, row):
    """Before: None became the string "None" and rows without an id were paired as translations."""
    rows = parallel_table()
    rows[column][row] = value
    table = Dataset.from_dict(rows)
    pattern = rf"Column '{column}'.* 1 missing or empty value\(s\), first at rows \[{row}\]"
    with pytest.raises(ValueError, match=pattern):
        build_training_pairs(table)
    with pytest.raises(ValueError, match=pattern):
        load_parallel(table)


def test_missing_values_in_a_parallel_file_name_the_file(tmp_path):
    rows = parallel_table()
    rows["parallel_id"][1] = rows["parallel_id"][4] = None
    path = tmp_path / "parallel.jsonl"
    text = "\n".join(json.dumps(dict(zip(rows, values))) for values in zip(*rows.values()))
    path.write_text(text)
    with pytest.raises(ValueError, match=r"Column 'parallel_id' of .*parallel.jsonl has 2 .*rows \[1, 4\]"):
        load_parallel(path)
    assert path.read_text() == text  # the input is left as it was


@pytest.mark.parametrize(
    ("column", "value"), [("parallel_id", None), ("query_language", ""), ("passage_language", None)]
)
def test_missing_metadata_values_name_the_column(column, value):
    columns = {k: list(v) for k, v in pairs_with_metadata(num_ids=4).to_dict().items()}
    columns[column][2] = value
    with pytest.raises(ValueError, match=rf"Column '{column}'.*first at rows \[2\]"):
        PairMetadata.from_columns(columns)


# -- line-aligned files, LAReQA questions ----------------------------------------------------------
def test_tatoeba_files_with_different_line_counts_name_both_files(tmp_path):
    """Before: zip() silently dropped the extra lines and misaligned nothing visibly."""
    foreign, english = tmp_path / "tatoeba.deu-eng.deu", tmp_path / "tatoeba.deu-eng.eng"
    foreign.write_text("Hallo.\nDanke.\nJa.\n")
    english.write_text("Hello.\nThanks.\n")
    message = rf"{foreign}.* 3 lines, {english}.* 2"
    with pytest.raises(ValueError, match=message):
        load_tatoeba(tmp_path)
    with pytest.raises(ValueError, match=message):
        load_parallel(tmp_path)
    assert foreign.read_text() == "Hallo.\nDanke.\nJa.\n" and english.read_text() == "Hello.\nThanks.\n"


def test_lareqa_question_without_answers_names_file_and_id(tmp_path):
    """Before: a bare IndexError."""
    paragraph = {
        "context": "One. Two.",
        "sentences": ["One.", "Two."],
        "sentence_breaks": [[0, 4], [5, 9]],
        "qas": [
            {"id": "q-ok", "question": "First?", "answers": [{"text": "One", "answer_start": 0}]},
            {"id": "q-empty", "question": "Second?", "answers": []},
        ],
    }
    path = tmp_path / "en.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [paragraph]}]}))
    for load in (load_lareqa, load_lareqa_retrieval):
        with pytest.raises(ValueError, match=rf"{path}: question 'q-empty' has no answers"):
            load(tmp_path)


# -- language codes --------------------------------------------------------------------------------
def test_language_codes_differing_only_in_case_are_rejected():
    """Before: 'en' and 'EN' made a 'cross-lingual' pair of one language."""
    rows = parallel_table()
    rows["language"][2] = "EN"  # id 1 in "EN", the others in "en"
    with pytest.raises(ValueError, match=r"differ only in case: \[\['EN', 'en'\]\]"):
        build_training_pairs(Dataset.from_dict(rows))
    columns = pairs_with_metadata(num_ids=4).to_dict()
    columns["passage_language"] = [
        lang.upper() if i % 2 else lang for i, lang in enumerate(columns["passage_language"])
    ]
    with pytest.raises(ValueError, match="differ only in case"):
        PairMetadata.from_columns(columns)


# -- mixed strategy --------------------------------------------------------------------------------
def test_mixed_refuses_at_construction_when_some_epoch_could_not_fill_a_step():
    """25 bilingual ids, 15 cross rows per batch: a half of the ids holds only 12 of them."""
    bilingual = pairs_with_metadata(num_ids=25, languages=("en", "de"), source="s")
    english = pairs_with_metadata(num_ids=200, languages=("en",), source="s").map(
        lambda row: {
            "parallel_id": "en-" + row["parallel_id"],
            "query": "en " + row["query"],
            "passage": "en " + row["passage"],
        }
    )
    pairs = concatenate_datasets([bilingual, english])
    with pytest.raises(
        ValueError, match=r"cross rows from at most 12 positive groups, need 15.*drop_small_pools=True"
    ):
        HybridBatchSampler(pairs, 30, True, strategy="mixed", num_processes=1, metadata=pairs)


def test_mixed_names_a_source_without_cross_rows_and_honours_drop_small_pools(caplog):
    multi = pairs_with_metadata(num_ids=40, source="lareqa")
    english = pairs_with_metadata(num_ids=80, languages=("en",), source="mrtydi")
    pairs = concatenate_datasets([multi, english])
    with pytest.raises(ValueError, match=r"Source 'mrtydi' has no cross-lingual rows .*strategy='hybrid'"):
        HybridBatchSampler(pairs, 8, True, strategy="mixed", num_processes=1, metadata=pairs)
    with caplog.at_level(logging.WARNING, logger="st_hybrid.sampler"):
        sampler = HybridBatchSampler(
            pairs, 8, True, strategy="mixed", num_processes=1, metadata=pairs, drop_small_pools=True
        )
    assert "skipping the source" in caplog.text
    sources = np.asarray(pairs["source"])
    assert all((sources[batch] == "lareqa").all() for batch in sampler)
    tiny = pairs_with_metadata(num_ids=3, source="tiny")  # too few ids for a step of 8
    neither = concatenate_datasets([tiny, english])
    with pytest.raises(ValueError, match="every one was skipped"):
        HybridBatchSampler(
            neither, 8, True, strategy="mixed", num_processes=1, metadata=neither, drop_small_pools=True
        )


# -- metadata must never become model input ----------------------------------------------------------
def test_stock_trainer_with_the_sampler_class_and_metadata_columns_raises(tiny_model_path, tmp_path):
    """Before: the metadata columns were tokenized as extra inputs (hard negatives for MNRL)."""
    pairs = pairs_with_metadata()
    model = SentenceTransformer(tiny_model_path)
    args = make_args(tmp_path, batch_sampler=partial(HybridBatchSampler, strategy="hybrid"))
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=pairs, loss=MultipleNegativesRankingLoss(model)
    )
    with pytest.raises(
        ValueError, match=r"still has the metadata columns.*HybridTrainer.*hybrid_batch_sampler"
    ):
        trainer.train()


def test_sampler_factory_raises_for_a_changed_train_dataset(tiny_model_path, tmp_path):
    """Before: a shuffled train set or the original pairs silently got random batches."""
    pairs = pairs_with_metadata()
    train_dataset, batch_sampler = hybrid_batch_sampler(pairs, strategy="mono")
    model = SentenceTransformer(tiny_model_path)
    eval_dataset = train_dataset.select(range(24))

    def trainer_for(dataset):
        return SentenceTransformerTrainer(
            model=model,
            args=make_args(tmp_path, batch_sampler=batch_sampler),
            train_dataset=dataset,
            eval_dataset=eval_dataset,
            loss=MultipleNegativesRankingLoss(model),
        )

    with pytest.raises(
        ValueError, match=r"fingerprint .*shuffle, select or map.*hybrid_batch_sampler\(pairs"
    ):
        trainer_for(train_dataset.shuffle(seed=0)).get_train_dataloader()
    with pytest.raises(ValueError, match=r"still has the metadata columns"):
        trainer_for(pairs).get_train_dataloader()
    with pytest.raises(ValueError, match=r"fingerprint"):  # a subset: another length, still the train set
        trainer_for(train_dataset.select(range(60))).get_train_dataloader()
    trainer = trainer_for(train_dataset)
    assert isinstance(trainer.get_train_dataloader().batch_sampler, HybridBatchSampler)
    assert not isinstance(trainer.get_eval_dataloader().batch_sampler, HybridBatchSampler)  # eval: default
    restored = pickle.loads(pickle.dumps(batch_sampler))  # as in a checkpoint's training_args.bin
    with pytest.raises(ValueError, match="carries no metadata"):
        restored(train_dataset, batch_size=8, drop_last=True)


@pytest.mark.parametrize("problem", ["no parallel_id", "no metadata", "a missing language"])
def test_hybrid_trainer_refuses_a_train_set_without_complete_metadata(tiny_model_path, tmp_path, problem):
    """Before: a warning, then training on random batches."""
    pairs = pairs_with_metadata()
    if problem == "no parallel_id":
        pairs, match = pairs.remove_columns("parallel_id"), r"missing: \['parallel_id'\]"
    elif problem == "no metadata":
        pairs, match = pairs.select_columns(["query", "passage"]), "none of the metadata columns"
    else:
        languages = list(pairs["query_language"])
        languages[5] = None
        pairs, match = (
            pairs.remove_columns("query_language").add_column("query_language", languages),
            "query_language",
        )
    model = SentenceTransformer(tiny_model_path)
    with pytest.raises(
        ValueError, match=rf"HybridTrainer cannot build hybrid batches for the train dataset: .*{match}"
    ):
        HybridTrainer(
            model=model,
            args=make_args(tmp_path),
            train_dataset=pairs,
            loss=MultipleNegativesRankingLoss(model),
        )


def test_a_pool_with_enough_ids_but_too_few_positive_groups_names_the_fix():
    """40 German ids answered by only 5 distinct sentences: 5 positive groups cannot fill a batch of 8."""
    english = pairs_with_metadata(num_ids=40, languages=("en",), source="s")
    german = pairs_with_metadata(num_ids=40, languages=("de",), source="s").map(
        lambda row, i: {"parallel_id": f"de-{i}", "passage": f"shared answer {i % 5}"}, with_indices=True
    )
    pairs = concatenate_datasets([english, german])
    with pytest.raises(ValueError, match=r"mono 'de': 40 rows, 5 positive groups.*drop_small_pools=True"):
        HybridBatchSampler(pairs, 8, True, strategy="mono", num_processes=1, metadata=pairs)
    sampler = HybridBatchSampler(
        pairs, 8, True, strategy="mono", num_processes=1, metadata=pairs, drop_small_pools=True
    )
    languages = np.asarray(pairs["query_language"])
    assert all((languages[batch] == "en").all() for batch in sampler)


def test_negatives_chaining_every_row_into_one_group_get_an_error_naming_the_fix():
    """Negatives mined from the training passages link each row to another: the error says how to mine instead."""
    from datasets import Dataset

    from st_hybrid.sampler import HybridBatchSampler

    n = 200
    pairs = Dataset.from_dict(
        {
            "query": [f"q{i}" for i in range(n)],
            "passage": [f"p{i}" for i in range(n)],
            "negative": [f"p{(i + 1) % n}" for i in range(n)],  # row i's negative is row i+1's positive
            "query_language": ["en"] * n,
            "passage_language": ["en"] * n,
            "parallel_id": [str(i) for i in range(n)],
        }
    )
    with pytest.raises(ValueError, match="1 positive groups") as error:
        HybridBatchSampler(
            pairs, batch_size=8, drop_last=True, metadata=pairs, strategy="mono", num_processes=1
        )
    assert "avoid_training_positives=True" in str(error.value)
