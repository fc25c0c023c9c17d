"""Fine-tune a multilingual encoder with hybrid (mono / cross-lingual) batches and evaluate it LAReQA-style.

Runs under ``accelerate launch`` (one or many processes, CPU or GPUs) and plain ``python``. Every
field of :class:`TrainConfig` is a YAML key and a command-line flag (``--batch-size 32``); flags win.

Usage:
    accelerate launch examples/train.py --config examples/configs/default.yaml
    python examples/train.py --config examples/configs/default.yaml --strategy mono --max-steps 50
    accelerate launch --multi_gpu --num_processes 2 examples/train.py --config ... --resume

Outputs under ``output_dir``: ``checkpoints/``, ``model/`` (loads with plain ``SentenceTransformer``; its
README is the model card), ``eval/{before,after}/`` (metrics JSON/CSV, pair matrix, heatmap) and
``results.json`` (config, before/after metrics, runtime).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger("st_hybrid.train")

HEADLINE_METRICS = ("mono_map", "cross_map", "multi_map", "rank_distance", "multi_ndcg@10", "multi_recall@10")


@dataclass
class TrainConfig:
    """Everything a run needs; each field is a YAML key and a ``--flag``."""

    # Model
    model: str = "intfloat/multilingual-e5-small"
    base_model_name: str | None = None  # Hub id for the card when `model` is a local copy of it
    max_seq_length: int = 128
    freeze_embeddings: bool = (
        False  # the word-embedding matrix is most of a small model: freezing halves CPU time
    )
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    # Training data: LAReQA folders/files, parallel datasets (.jsonl/.parquet) or Hub ids
    train_data: list[str] = field(default_factory=lambda: ["../shared/data/mlqa-r"])
    train_languages: list[str] | None = None
    cross_partners: int | None = 2
    max_train_pairs: int | None = None
    # Batches
    strategy: str = "hybrid"
    alpha: float = 0.5
    language_weighting: str = "uniform"
    temperature: float = 1.0
    one_pair_per_batch: bool = False
    # Optimization
    batch_size: int = 16
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_steps: int = -1
    num_train_epochs: float = 1.0
    loss: str = "mnrl"  # mnrl | cached_mnrl
    scale: float = 20.0
    gather_across_devices: bool = False
    mini_batch_size: int = 32  # cached_mnrl only
    seed: int = 42
    # Evaluation (LAReQA-style, never on training data)
    eval_data: str | None = "../shared/data/xquad-r"
    eval_name: str = "xquad-r"
    eval_languages: list[str] | None = None
    eval_max_articles: int | None = None
    eval_batch_size: int = 64
    eval_steps: int | None = None  # also evaluate during training every N steps
    evaluate_before: bool = True
    # Output
    output_dir: str = "outputs/default"
    save_steps: int = 50
    save_total_limit: int | None = 2
    logging_steps: int = 10
    resume: bool = False
    push_to_hub: str | None = None
    hub_private: bool = False

    @classmethod
    def from_sources(cls, config_path: str | None, overrides: dict[str, Any]) -> TrainConfig:
        values = yaml.safe_load(Path(config_path).read_text()) if config_path else {}
        values = {**(values or {}), **overrides}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SystemExit(f"Unknown config keys {unknown}. Valid keys: {sorted(known)}")
        config = cls(**values)
        if isinstance(config.train_data, str):
            config.train_data = [config.train_data]
        return config


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="YAML config file (examples/configs/*.yaml)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "resume":
            parser.add_argument(
                flag, action="store_true", default=argparse.SUPPRESS, help="continue from the last checkpoint"
            )
        else:
            # YAML parsing gives ints, floats, bools, null and [lists] on the command line too.
            parser.add_argument(
                flag, dest=f.name, type=yaml.safe_load, default=argparse.SUPPRESS, metavar="VALUE"
            )
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config"}  # only the flags given
    return TrainConfig.from_sources(args.config, overrides)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
def load_model(config: TrainConfig):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(config.model)
    model.max_seq_length = config.max_seq_length
    if config.freeze_embeddings:
        model[0].auto_model.get_input_embeddings().requires_grad_(False)
    return model


def build_pairs(config: TrainConfig):
    from datasets import concatenate_datasets

    from st_hybrid.data import build_training_pairs, load_parallel

    tables = [load_parallel(source, languages=config.train_languages) for source in config.train_data]
    pairs = [build_training_pairs(t, cross_partners=config.cross_partners, seed=config.seed) for t in tables]
    pairs = concatenate_datasets(pairs) if len(pairs) > 1 else pairs[0]
    if config.max_train_pairs and len(pairs) > config.max_train_pairs:
        pairs = pairs.shuffle(seed=config.seed).select(range(config.max_train_pairs))
    return pairs


def build_evaluator(config: TrainConfig):
    if not config.eval_data:
        return None
    from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator

    return LanguageAwareRetrievalEvaluator.from_lareqa(
        config.eval_data,
        languages=config.eval_languages,
        max_articles=config.eval_max_articles,
        name=config.eval_name,
        query_prompt=config.query_prompt,
        corpus_prompt=config.passage_prompt,
        batch_size=config.eval_batch_size,
    )


def check_no_leakage(pairs, evaluator) -> None:
    """Refuse to evaluate on text the model trained on: the scores would be inflated."""
    passages = set(pairs["passage"]) & set(evaluator.candidate_texts)
    queries = set(pairs["query"]) & set(evaluator.query_texts)
    if passages or queries:
        raise SystemExit(
            f"{len(passages)} training passages and {len(queries)} training queries also appear in the "
            f"evaluation set {evaluator.name!r}, e.g. {sorted(passages or queries)[0][:80]!r}. Evaluate on "
            "data disjoint from training (e.g. train on MLQA-R, evaluate on XQuAD-R) or set eval_data: null."
        )


def build_loss(config: TrainConfig, model):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if config.loss == "mnrl":
        return MultipleNegativesRankingLoss(
            model, scale=config.scale, gather_across_devices=config.gather_across_devices
        )
    if config.loss == "cached_mnrl":
        return CachedMultipleNegativesRankingLoss(
            model,
            scale=config.scale,
            mini_batch_size=config.mini_batch_size,
            gather_across_devices=config.gather_across_devices,
        )
    raise SystemExit(f"Unknown loss {config.loss!r}: use 'mnrl' or 'cached_mnrl'.")


def _ddp_backend() -> str | None:
    """Without CUDA, transformers starts a process group only when told to use gloo (CPU multi-process)."""
    import torch

    launched_distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return "gloo" if launched_distributed and not torch.cuda.is_available() else None


def training_arguments(config: TrainConfig):
    from sentence_transformers import SentenceTransformerTrainingArguments

    eval_every = config.eval_steps and config.eval_data
    return SentenceTransformerTrainingArguments(
        output_dir=str(Path(config.output_dir) / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs,
        seed=config.seed,
        data_seed=config.seed,
        prompts={"query": config.query_prompt, "passage": config.passage_prompt},
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if eval_every else "no",
        eval_steps=config.eval_steps if eval_every else None,
        report_to="none",
        dataloader_drop_last=True,
        ddp_backend=_ddp_backend(),
    )


def evaluate_into(evaluator, model, folder: Path) -> dict:
    """Run the evaluator, write its files to ``folder`` and return its report (the JSON schema)."""
    folder.mkdir(parents=True, exist_ok=True)
    evaluator(model, output_path=str(folder))
    return json.loads((folder / f"{evaluator.name}_metrics.json").read_text())


def cached_evaluation(evaluator, model, folder: Path) -> dict:
    """The zero-shot evaluation is the same for every run of a base model: reuse it on resume."""
    report_file = folder / f"{evaluator.name}_metrics.json"
    if report_file.exists():
        return json.loads(report_file.read_text())
    return evaluate_into(evaluator, model, folder)


def format_before_after(before: dict | None, after: dict) -> str:
    if before is None:
        return "\n".join(f"{name:<18}{after['metrics'][name]:>10.4f}" for name in HEADLINE_METRICS)
    lines = [f"{'metric':<18}{'before':>10}{'after':>10}{'delta':>10}"]
    for name in HEADLINE_METRICS:
        old, new = before["metrics"][name], after["metrics"][name]
        lines.append(f"{name:<18}{old:>10.4f}{new:>10.4f}{new - old:>+10.4f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def run(config: TrainConfig) -> dict:
    """Train, evaluate before/after, save model + card + metrics; return the results dict."""
    from accelerate import PartialState

    from st_hybrid import HybridBatchSampler, HybridTrainer

    # The training arguments set up the distributed state; a PartialState made before them would
    # pin a single-process state on CPU-only machines.
    args = training_arguments(config)
    state = PartialState()
    output_dir = Path(config.output_dir)
    model = load_model(config)
    pairs = build_pairs(config)
    evaluator = build_evaluator(config)
    if evaluator is not None:
        check_no_leakage(pairs, evaluator)
    logger.info("Training pairs: %d; strategy=%s alpha=%s", len(pairs), config.strategy, config.alpha)

    before = None
    if evaluator is not None and config.evaluate_before and state.is_main_process:
        before = cached_evaluation(evaluator, model, output_dir / "eval" / "before")
    state.wait_for_everyone()

    sampler = functools.partial(
        HybridBatchSampler,
        strategy=config.strategy,
        alpha=config.alpha,
        language_weighting=config.language_weighting,
        temperature=config.temperature,
        one_pair_per_batch=config.one_pair_per_batch,
    )
    trainer = HybridTrainer(
        model=model,
        args=args,
        train_dataset=pairs,
        loss=build_loss(config, model),
        evaluator=evaluator if config.eval_steps else None,
        batch_sampler=sampler,
    )
    resume = config.resume and any((output_dir / "checkpoints").glob("checkpoint-*"))
    start = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.perf_counter() - start

    model_dir = output_dir / "model"
    trainer.save_model(str(model_dir))
    results = None
    if state.is_main_process:
        after = evaluate_into(evaluator, model, output_dir / "eval" / "after") if evaluator else None
        results = {
            "config": dataclasses.asdict(config),
            "train_pairs": len(pairs),
            "train_languages": sorted(set(pairs["query_language"]) | set(pairs["passage_language"])),
            "global_step": train_output.global_step,
            "train_loss": train_output.training_loss,
            "train_seconds": round(train_seconds, 1),
            "num_processes": state.num_processes,
            "resumed": bool(resume),
            "before": before,
            "after": after,
        }
        write_model_card(config, model_dir, results, output_dir)
        (output_dir / "results.json").write_text(json.dumps(results, indent=2))
        if after:
            print(
                f"\n{config.eval_name}: {config.strategy} (alpha={config.alpha}), {train_output.global_step} steps"
            )
            print(format_before_after(before, after))
        if config.push_to_hub:
            from st_hybrid.hub import publish_model

            # The card written above (with this repo id in its usage snippet) is uploaded as is.
            published = publish_model(model_dir, config.push_to_hub, private=config.hub_private)
            print(f"Pushed to {published.url}")
    state.wait_for_everyone()
    return results


def write_model_card(config: TrainConfig, model_dir: Path, results: dict, output_dir: Path) -> None:
    """README.md (+ heatmap and metrics) in the saved model folder, rendered from model_cards/."""
    from st_hybrid.model_card import ModelCardInfo
    from st_hybrid.model_card import write_model_card as render

    info = ModelCardInfo(
        base_model=config.base_model_name or config.model,
        strategy=config.strategy,
        alpha=config.alpha if config.strategy in ("hybrid", "mixed") else None,
        languages=results["train_languages"],
        language_weighting=config.language_weighting,
        train_datasets=[Path(source).name for source in config.train_data],
        hyperparameters={
            "batch_size": config.batch_size * results["num_processes"],
            "learning_rate": config.learning_rate,
            "weight_decay": config.weight_decay,
            "warmup_ratio": config.warmup_ratio,
            "steps": results["global_step"],
            "max_seq_length": config.max_seq_length,
            "seed": config.seed,
        },
        loss=f"{'Cached' if config.loss == 'cached_mnrl' else ''}MultipleNegativesRankingLoss (scale={config.scale:g})",
        query_prefix=config.query_prompt,
        passage_prefix=config.passage_prompt,
        num_training_pairs=results["train_pairs"],
        training_notes=_before_after_note(config, results),
    )
    reports = [output_dir / "eval" / "after" / f"{config.eval_name}_metrics.json"] if results["after"] else []
    render(model_dir, info, reports, repo_id=config.push_to_hub)


def _before_after_note(config: TrainConfig, results: dict) -> str | None:
    if not (results["before"] and results["after"]):
        return None
    table = format_before_after(results["before"], results["after"])
    return f"Zero-shot base model vs this model on {config.eval_name}:\n\n```\n{table}\n```"


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
