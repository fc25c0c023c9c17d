"""Train through HybridTrainer under `accelerate launch` and log the batches each rank receives.

Run by tests/test_distributed.py::

    accelerate launch --multi_gpu --num_processes 2 tests/scripts/ddp_hybrid_batches.py \
        --model MODEL_DIR --out OUT_DIR [--strategy hybrid] [--steps 8] [--batch-size 8] \
        [--save-steps N] [--resume-from CHECKPOINT_DIR]

Writes ``OUT_DIR/rank{r}.json`` with the world size, the batch sampler's ``num_processes`` and, per
optimizer step run in this launch, the dataset rows of the batch this rank trained on. With
``--save-steps`` checkpoints go to ``OUT_DIR/trainer/checkpoint-N``; ``--resume-from`` continues one.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from st_hybrid.sampler import HybridBatchSampler
from st_hybrid.trainer import HybridTrainer

LANGUAGES = ("en", "de", "fr")


def synthetic_pairs(num_ids: int = 16) -> Dataset:
    """Per (id, language): one mono row and one cross row to the next language (96 rows for 16 ids)."""
    columns = {k: [] for k in ("query", "passage", "query_language", "passage_language", "parallel_id")}
    for i in range(num_ids):
        for index, lang in enumerate(LANGUAGES):
            for passage_lang in (lang, LANGUAGES[(index + 1) % len(LANGUAGES)]):
                columns["query"].append(f"question {i} in {lang}")
                columns["passage"].append(f"answer {i} in {passage_lang}")
                columns["query_language"].append(lang)
                columns["passage_language"].append(passage_lang)
                columns["parallel_id"].append(str(i))
    return Dataset.from_dict(columns)


class RowRecorder:
    """Collator wrapper that records the dataset rows of each batch (texts identify rows uniquely)."""

    def __init__(self, collator, index):
        self.collator, self.index, self.batches = collator, index, []

    def __getattr__(self, name):
        return getattr(self.collator, name)

    def __call__(self, features):
        self.batches.append([self.index[(f["query"], f["passage"])] for f in features])
        return self.collator(features)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", default="hybrid")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: never)")
    parser.add_argument("--resume-from", help="a checkpoint folder to resume from")
    options = parser.parse_args()

    pairs = synthetic_pairs()
    index = {(q, p): i for i, (q, p) in enumerate(zip(pairs["query"], pairs["passage"]))}
    model = SentenceTransformer(options.model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(options.out) / "trainer"),
        per_device_train_batch_size=options.batch_size,
        max_steps=options.steps,
        save_strategy="steps" if options.save_steps else "no",
        save_steps=options.save_steps or 500,
        logging_steps=1,
        disable_tqdm=True,
        seed=options.seed,
        ddp_backend="gloo",
    )
    trainer = HybridTrainer(
        model=model,
        args=args,
        train_dataset=pairs,
        loss=MultipleNegativesRankingLoss(model, gather_across_devices=True),
        batch_sampler=partial(HybridBatchSampler, strategy=options.strategy),
    )
    recorder = RowRecorder(trainer.data_collator, index)
    trainer.data_collator = recorder
    trainer.train(resume_from_checkpoint=options.resume_from)
    done = int(options.resume_from.rstrip("/").rsplit("-", 1)[1]) if options.resume_from else 0

    shard = trainer.get_train_dataloader().batch_sampler
    sampler = getattr(shard, "batch_sampler", shard)
    state = trainer.accelerator.state
    log = {
        "rank": state.process_index,
        "world_size": state.num_processes,
        "sampler_num_processes": sampler.num_processes,
        "sampler_len": len(sampler),
        "steps": trainer.state.global_step,
        "steps_run": trainer.state.global_step - done,
        # accelerate's loader reads one batch ahead: keep the batches of the steps run
        "batches": recorder.batches[: trainer.state.global_step - done],
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }
    Path(options.out).mkdir(parents=True, exist_ok=True)
    (Path(options.out) / f"rank{state.process_index}.json").write_text(json.dumps(log))


if __name__ == "__main__":
    main()
