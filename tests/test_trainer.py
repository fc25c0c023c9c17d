"""HybridTrainer and the stock-trainer helper: metadata never reaches the collator, batches, resume."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from test_sampler import make_pairs, table

from st_hybrid.data import METADATA_COLUMNS, build_training_pairs, load_lareqa
from st_hybrid.sampler import HybridBatchSampler
from st_hybrid.trainer import HybridSamplerFactory, HybridTrainer, hybrid_batch_sampler, split_metadata


class RecordingCollator:
    """Wraps the trainer's collator and records what it receives and returns."""

    def __init__(self, collator):
        self.collator = collator
        self.feature_keys: set[str] = set()
        self.output_keys: set[str] = set()
        self.batches: list[list[tuple[str, str]]] = []

    def __getattr__(self, name):
        return getattr(self.collator, name)

    def __call__(self, features):
        for feature in features:
            self.feature_keys |= set(feature)
        self.batches.append([(feature["query"], feature["passage"]) for feature in features])
        output = self.collator(features)
        self.output_keys |= set(output)
        return output


def record(trainer) -> RecordingCollator:
    trainer.data_collator = RecordingCollator(trainer.data_collator)
    return trainer.data_collator


def row_index(pairs) -> dict[tuple[str, str], int]:
    return {(q, p): i for i, (q, p) in enumerate(zip(pairs["query"], pairs["passage"]))}


def make_args(tmp_path, **overrides) -> SentenceTransformerTrainingArguments:
    kwargs = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "max_steps": 4,
        "learning_rate": 1e-4,
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "use_cpu": True,
        "seed": 11,
        "dataloader_drop_last": True,
    }
    kwargs.update(overrides)
    return SentenceTransformerTrainingArguments(**kwargs)


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(languages=("en", "de", "fr"), num_ids=32, cross_partners=1)


def assert_pure(pairs, batches):
    """Each recorded batch is monolingual (one language) or cross-lingual, no parallel id twice."""
    index, cols = row_index(pairs), table(pairs)
    for batch in batches:
        rows = np.array([index[item] for item in batch])
        ql, pl = cols["query_language"][rows], cols["passage_language"][rows]
        assert ((ql == pl).all() and len(set(ql)) == 1) or (ql != pl).all()
        assert len(set(cols["parallel_id"][rows])) == len(rows)


def test_split_metadata(pairs):
    texts, metadata = split_metadata(pairs)
    assert texts.column_names == ["query", "passage"]
    assert len(metadata) == len(pairs) and sorted(metadata.languages) == ["de", "en", "fr"]
    plain = pairs.select_columns(["query", "passage"])
    assert split_metadata(plain) == (plain, None)


def test_hybrid_trainer_keeps_metadata_from_collator_loss_and_model_card(tiny_model_path, pairs, tmp_path):
    model = SentenceTransformer(tiny_model_path)
    trainer = HybridTrainer(
        model=model,
        args=make_args(tmp_path, max_steps=3),
        train_dataset=pairs,
        loss=MultipleNegativesRankingLoss(model),
        batch_sampler=partial(HybridBatchSampler, strategy="hybrid", alpha=0.5),
    )
    assert trainer.train_dataset.column_names == ["query", "passage"]
    sampler = trainer.get_batch_sampler(trainer.train_dataset, batch_size=8, drop_last=True, seed=11)
    assert isinstance(sampler, HybridBatchSampler) and sampler.strategy == "hybrid"
    recorder = record(trainer)
    trainer.train()
    assert recorder.feature_keys == {"query", "passage"}
    assert not any(key.startswith(column) for key in recorder.output_keys for column in METADATA_COLUMNS)
    assert len(recorder.batches) >= 3  # accelerate's loader reads one batch ahead
    assert_pure(pairs, recorder.batches)
    # Widget examples and the saved card never show the metadata.
    # (Without stripping, ST picks e.g. {'source_sentence': 'question 3 in es', 'sentences': ['es', 'default-3', ...]}.)
    widget_texts = set()
    for example in model.model_card_data.widget:
        for value in example.values():
            widget_texts |= set(value) if isinstance(value, list) else {value}
    assert widget_texts and all(text.startswith(("question", "answer")) for text in widget_texts)
    model.save(str(tmp_path / "model"))
    card = (tmp_path / "model" / "README.md").read_text()
    assert "query_language" not in card and "parallel_id" not in card


def test_hybrid_trainer_default_sampler_and_eval_fallback(tiny_model_path, pairs, tmp_path):
    model = SentenceTransformer(tiny_model_path)
    plain_eval = pairs.select_columns(["query", "passage"]).select(range(40))
    tiny_eval = pairs.select(range(12))  # metadata, but too few rows per language for a step of 8
    trainer = HybridTrainer(
        model=model,
        args=make_args(tmp_path, eval_strategy="no"),
        train_dataset=pairs,
        eval_dataset={"with_meta": pairs, "plain": plain_eval, "tiny": tiny_eval},
        loss=MultipleNegativesRankingLoss(model),
    )
    kwargs = {"batch_size": 8, "drop_last": True, "seed": 0}
    assert isinstance(trainer.get_batch_sampler(trainer.train_dataset, **kwargs), HybridBatchSampler)
    assert isinstance(
        trainer.get_batch_sampler(trainer.eval_dataset["with_meta"], **kwargs), HybridBatchSampler
    )
    fallback = trainer.get_batch_sampler(trainer.eval_dataset["plain"], **kwargs)
    assert not isinstance(fallback, HybridBatchSampler)
    assert not isinstance(
        trainer.get_batch_sampler(trainer.eval_dataset["tiny"], **kwargs), HybridBatchSampler
    )
    with pytest.raises(ValueError, match="rows per step"):  # the train set itself too small: an error
        trainer.get_batch_sampler(trainer.train_dataset, batch_size=4096, drop_last=True)
    assert trainer.eval_dataset["with_meta"].column_names == ["query", "passage"]
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_with_meta_loss"]) and math.isfinite(metrics["eval_plain_loss"])
    # The hybrid sampler given through the training arguments instead: used for train, not for plain eval.
    args = make_args(tmp_path, batch_sampler=partial(HybridBatchSampler, strategy="mono"))
    trainer = HybridTrainer(
        model=model,
        args=args,
        train_dataset=pairs,
        eval_dataset=plain_eval,
        loss=MultipleNegativesRankingLoss(model),
    )
    assert trainer.get_batch_sampler(trainer.train_dataset, **kwargs).strategy == "mono"
    assert not isinstance(trainer.get_batch_sampler(trainer.eval_dataset, **kwargs), HybridBatchSampler)


def test_hybrid_trainer_rejects_instances(tiny_model_path, pairs, tmp_path):
    model = SentenceTransformer(tiny_model_path)
    with pytest.raises(TypeError, match="not an instance"):
        HybridTrainer(
            model=model,
            args=make_args(tmp_path),
            train_dataset=pairs,
            loss=MultipleNegativesRankingLoss(model),
            batch_sampler=HybridBatchSampler(pairs, 8, True, metadata=pairs),
        )


def test_cached_loss_with_gather_runs_unchanged(tiny_model_path, pairs, tmp_path):
    model = SentenceTransformer(tiny_model_path)
    loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=4, gather_across_devices=True)
    trainer = HybridTrainer(
        model=model,
        args=make_args(tmp_path, max_steps=2),
        train_dataset=pairs,
        loss=loss,
        batch_sampler=partial(HybridBatchSampler, strategy="mono"),
    )
    recorder = record(trainer)
    trainer.train()
    assert all(math.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)
    cols, index = table(pairs), row_index(pairs)
    for batch in recorder.batches:
        rows = [index[item] for item in batch]
        assert len(set(cols["query_language"][rows]) | set(cols["passage_language"][rows])) == 1


def test_stock_trainer_helper(tiny_model_path, pairs, tmp_path):
    train_dataset, batch_sampler = hybrid_batch_sampler(pairs, strategy="cross")
    assert isinstance(batch_sampler, HybridSamplerFactory)
    assert train_dataset.column_names == ["query", "passage"]
    model = SentenceTransformer(tiny_model_path)
    args = make_args(tmp_path, batch_sampler=batch_sampler, max_steps=2, save_strategy="steps", save_steps=2)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=MultipleNegativesRankingLoss(model)
    )
    recorder = record(trainer)
    trainer.train()
    assert recorder.feature_keys == {"query", "passage"}
    assert len(recorder.batches) >= 2
    cols, index = table(pairs), row_index(pairs)
    for batch in recorder.batches:
        rows = [index[item] for item in batch]
        assert (cols["query_language"][rows] != cols["passage_language"][rows]).all()
    # Another dataset (e.g. the eval set) gets the default sampler; checkpoints do not carry the metadata.
    other = pairs.select_columns(["query", "passage"]).select(range(16))
    assert not isinstance(batch_sampler(other, batch_size=8, drop_last=True), HybridBatchSampler)
    saved = torch.load(tmp_path / "out" / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert saved.batch_sampler.metadata is None and saved.batch_sampler.sampler_kwargs == {
        "strategy": "cross"
    }
    with pytest.raises(ValueError, match="missing"):
        hybrid_batch_sampler(pairs.select_columns(["query", "passage"]))
    with pytest.raises(ValueError, match="alpha"):
        hybrid_batch_sampler(pairs, alpha=2)


def _train_and_record(model_path, pairs, tmp_path, resume_from=None):
    model = SentenceTransformer(model_path)
    args = make_args(tmp_path, max_steps=10, save_strategy="steps", save_steps=4, learning_rate=1e-3)
    trainer = HybridTrainer(
        model=model,
        args=args,
        train_dataset=pairs,
        loss=MultipleNegativesRankingLoss(model),
        batch_sampler=partial(HybridBatchSampler, alpha=0.5),
    )
    recorder = record(trainer)
    trainer.train(resume_from_checkpoint=resume_from)
    # accelerate's loader reads one batch ahead of the step: keep the batches of the steps run.
    done = int(resume_from.rsplit("-", 1)[1]) if resume_from else 0
    return recorder.batches[: trainer.state.global_step - done]


def test_resume_continues_the_same_batch_sequence(tiny_model_path, tmp_path):
    # 48 rows / batch 8 = 6 batches per epoch: 10 steps cross into epoch 1.
    pairs = make_pairs(languages=("en", "de", "fr"), num_ids=8, cross_partners=1)
    full = _train_and_record(tiny_model_path, pairs, tmp_path)
    assert len(full) == 10
    assert full[6:10] != full[:4]  # sanity: epoch 1 is not epoch 0 again
    # checkpoint-4: mid epoch 0 (skip 4 batches, then into epoch 1); checkpoint-8: mid epoch 1 (skip 2).
    for done in (4, 8):
        resumed = _train_and_record(
            tiny_model_path, pairs, tmp_path, resume_from=str(tmp_path / "out" / f"checkpoint-{done}")
        )
        assert len(resumed) == 10 - done and resumed == full[done:], done


def test_end_to_end_mlqa_r(tiny_model_path, shared_data, tmp_path):
    parallel = load_lareqa(shared_data / "mlqa-r", languages=["en", "de", "es", "ar"])
    pairs = build_training_pairs(parallel, cross_partners=1, seed=0)
    model = SentenceTransformer(tiny_model_path)
    before = model.encode(["Query: where is Paris?"], convert_to_tensor=True).clone()
    trainer = HybridTrainer(
        model=model,
        args=make_args(tmp_path, per_device_train_batch_size=16, max_steps=4),
        train_dataset=pairs,
        loss=MultipleNegativesRankingLoss(model),
        batch_sampler=partial(HybridBatchSampler, strategy="hybrid", alpha=0.5, language_weighting="size"),
    )
    recorder = record(trainer)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(value) for value in losses)
    after = model.encode(["Query: where is Paris?"], convert_to_tensor=True)
    assert not torch.allclose(before, after)  # the weights moved
    assert_pure(pairs, recorder.batches)


@pytest.mark.parametrize(
    ("metric", "given", "expected"),
    [
        ("eval_xquad-r_rank_distance", None, False),  # transformers would derive True from the name
        ("eval_xquad-r_rank_distance", True, False),
        ("eval_xquad-r_multi_map", None, True),
        ("eval_loss", None, False),
    ],
)
def test_rank_distance_as_best_metric_means_lower_is_better(
    tiny_model_path, pairs, tmp_path, metric, given, expected
):
    model = SentenceTransformer(tiny_model_path)
    args = make_args(tmp_path, metric_for_best_model=metric, greater_is_better=given)
    trainer = HybridTrainer(
        model=model, args=args, train_dataset=pairs, loss=MultipleNegativesRankingLoss(model)
    )
    assert trainer.args.greater_is_better is expected
