"""Fine-tune a multilingual encoder with hybrid (mono / cross-lingual) batches and evaluate it LAReQA-style.

Runs under ``accelerate launch`` (one or many processes, CPU or GPUs) and plain ``python``. The options are
dataclasses parsed by ``transformers.HfArgumentParser`` together with ``SentenceTransformerTrainingArguments``,
so every training flag works (``--bf16``, ``--gradient_accumulation_steps 4``, ``--lr_scheduler_type cosine``,
``--dataloader_num_workers 4``, ``--report_to tensorboard``, ``--push_to_hub --hub_model_id user/name``, ...).
Flags take ``--snake_case`` or ``--kebab-case``. A YAML ``--config`` sets any of them by name (without the
dashes); flags win over the YAML. Everything is checked before the model is loaded.

Usage:
    accelerate launch examples/train.py --config examples/configs/default.yaml
    python examples/train.py --config examples/configs/default.yaml --strategy mono --max_steps 50 --bf16 --use_cpu
    accelerate launch --multi_gpu --num_processes 2 examples/train.py --config ... --resume
    python examples/train.py --config ... --merge_ratio 0.5   # also save and evaluate the merge with the base
    python examples/train.py --config ... --hard_negatives 1  # train on mined, language-aware hard negatives

Outputs under ``output_dir``: ``checkpoints/``, ``model/`` (loads with plain ``SentenceTransformer``; its
README is the model card), with ``--merge_ratio`` also ``model-merged/``, ``eval/{before,after,merged}/``
(metrics JSON/CSV, pair matrix, heatmap) and ``results.json``; with ``--hard_negatives N`` also
``hard_negatives/`` (the pairs with negatives mined by the base model, or ``--hard_negatives_model``, reused while
their inputs are unchanged).
A used ``output_dir`` is refused unless ``--resume`` (continue its last checkpoint) or ``--overwrite`` (start
over) is given. The zero-shot evaluation in ``eval/before`` is reused only if the model, data, languages and
prompts are unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import logging
import math
import os
import shutil
import sys
import time
import typing
from collections.abc import Set
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from sentence_transformers import SentenceTransformerTrainingArguments
from transformers import HfArgumentParser

from st_hybrid.data import METADATA_COLUMNS, is_tatoeba_folder, parallel_positive_columns
from st_hybrid.io import cached_json, changed_inputs, content_hash, path_fingerprint, write_json
from st_hybrid.losses import POSITIVE_REDUCTIONS
from st_hybrid.mining import LANGUAGE_MODES, negative_columns
from st_hybrid.sampler import LANGUAGE_WEIGHTINGS, STRATEGIES

logger = logging.getLogger("st_hybrid.train")

TATOEBA_SPLITS = ("all", "train")
TATOEBA_DIRECTIONS = ("eng-x", "x-eng")
# Options added after runs were cached: left out of a run's inputs at their defaults, so older caches stay valid.
_NEW_OPTION_DEFAULTS = {
    "tatoeba_split": "all",
    "tatoeba_test_fraction": 0.2,
    "tatoeba_split_seed": 0,
    "single_source": False,
    "eval_tatoeba_direction": "eng-x",
    "eval_max_per_language": None,
    "loss_directions": ["query_to_doc"],
    "partition_mode": "joint",
    "parallel_positives": 0,
    "positive_alignment": 0.0,
    "positive_reduction": "mean",
    "hard_negatives_model": None,
}
# Where mined hard negatives come from (see MiningArguments); with hard_negatives 0 none of these options count.
HARD_NEGATIVE_SOURCES = ("paragraphs", "passages")
HARD_NEGATIVES_DIR = "hard_negatives"  # under output_dir: the mined pairs, keyed by their inputs
HEADLINE_METRICS = ("mono_map", "cross_map", "multi_map", "rank_distance", "multi_ndcg@10", "multi_recall@10")
LOSSES = ("mnrl", "cached_mnrl")
# MultipleNegativesRankingLoss' interaction directions (sentence-transformers >= 5): query_to_doc is InfoNCE;
# doc_to_query adds the symmetric term (each passage must pick its own query among the batch's queries).
LOSS_DIRECTIONS = ("query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc")
PARTITION_MODES = ("joint", "per_direction")


def _as_list(value: Any, split_commas: bool = False) -> list[str] | None:
    """A list from YAML (a list, or one bare string) or flags (items, a YAML-style ``[a, b]``, or ``a,b``)."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    result = []
    for item in map(str, items):
        if item.startswith("[") and item.endswith("]") or split_commas:
            result += [part.strip() for part in item.strip("[]").split(",") if part.strip()]
        else:
            result.append(item.strip())
    return result


def _as_languages(value: Any, name: str) -> list[str] | None:
    languages = _as_list(value, split_commas=True)
    bad = [code for code in languages or [] if not (code.isascii() and code.replace("-", "").isalnum())]
    if bad:
        raise ValueError(f"{name}: {bad} are not language codes. Give codes, e.g. `--{name} en de es`.")
    if languages is not None and not languages:
        raise ValueError(f"{name} is empty: give language codes (e.g. `--{name} en de`) or leave it unset.")
    return languages


def _none_if_null(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in ("", "null", "none") else value


@dataclass
class ModelArguments:
    model: str = field(default="intfloat/multilingual-e5-small", metadata={"help": "Hub id or local folder."})
    base_model_name: str | None = field(
        default=None, metadata={"help": "Hub id for the card when --model is a local copy of it."}
    )
    max_seq_length: int = field(
        default=128,
        metadata={
            "help": "Truncation while training; the saved model and the before/after evaluations use eval_max_seq_length."
        },
    )
    freeze_embeddings: bool = field(
        default=False,
        metadata={"help": "Freeze the word embeddings (most of a small model): halves CPU time."},
    )
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "

    def __post_init__(self) -> None:
        if self.max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1, got {self.max_seq_length}.")


@dataclass
class DataArguments:
    train_data: list[str] = field(
        default_factory=lambda: ["../shared/data/mlqa-r"],
        metadata={"help": "LAReQA folders/files, parallel .jsonl/.parquet files or Hub dataset ids."},
    )
    train_languages: list[str] | None = field(default=None, metadata={"help": "Default: every language."})
    cross_partners: int | None = field(
        default=2, metadata={"help": "Cross-lingual partners per pair (YAML null: every language pair)."}
    )
    max_train_pairs: int | None = None
    tatoeba_split: str = field(
        default="all",
        metadata={
            "help": "A Tatoeba folder in train_data trains on: 'all' its lines, or 'train' the train side of "
            "st_hybrid.data.split_tatoeba (the held-out side stays an evaluation pool: eval_data the same folder)."
        },
    )
    tatoeba_test_fraction: float = field(
        default=0.2, metadata={"help": "Held-out share of the Tatoeba split (training and evaluation)."}
    )
    tatoeba_split_seed: int = field(default=0, metadata={"help": "Seed of the Tatoeba split."})
    single_source: bool = field(
        default=False,
        metadata={
            "help": "Treat every train_data dataset as one source: hybrid then gives alpha of all steps to "
            "mono batches, instead of sharing steps between datasets by their sizes first."
        },
    )

    def __post_init__(self) -> None:
        self.train_data = _as_list(self.train_data)
        self.train_languages = _as_languages(self.train_languages, "train_languages")
        if not self.train_data:
            raise ValueError("train_data is empty: give at least one dataset.")
        if self.cross_partners is not None and self.cross_partners < 1:
            raise ValueError(f"cross_partners must be >= 1 or null (every pair), got {self.cross_partners}.")
        if self.tatoeba_split not in TATOEBA_SPLITS:
            raise ValueError(
                f"tatoeba_split must be one of {list(TATOEBA_SPLITS)}, got {self.tatoeba_split!r}."
            )
        if not 0 < self.tatoeba_test_fraction < 1:
            raise ValueError(
                f"tatoeba_test_fraction must be strictly between 0 and 1, got {self.tatoeba_test_fraction}."
            )


@dataclass
class BatchArguments:
    strategy: str = field(default="hybrid", metadata={"help": f"One of {', '.join(STRATEGIES)}."})
    alpha: float = field(default=0.5, metadata={"help": "Share of monolingual batches (hybrid, mixed)."})
    language_weighting: str = field(
        default="uniform", metadata={"help": f"One of {', '.join(LANGUAGE_WEIGHTINGS)}."}
    )
    temperature: float = 1.0
    one_pair_per_batch: bool = False
    drop_small_pools: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}: choose one of {list(STRATEGIES)}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (the share of monolingual batches), got {self.alpha}.")
        if self.language_weighting not in LANGUAGE_WEIGHTINGS:
            raise ValueError(
                f"Unknown language_weighting {self.language_weighting!r}: choose one of {list(LANGUAGE_WEIGHTINGS)}."
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")


@dataclass
class LossArguments:
    loss: str = field(
        default="mnrl", metadata={"help": "mnrl or cached_mnrl (gradient caching, large batches)."}
    )
    scale: float = 20.0
    gather_across_devices: bool = False
    mini_batch_size: int = field(default=32, metadata={"help": "cached_mnrl only."})
    loss_directions: list[str] = field(
        default_factory=lambda: ["query_to_doc"],
        metadata={
            "help": f"The loss' interaction directions, any of {', '.join(LOSS_DIRECTIONS)}: query_to_doc is "
            "InfoNCE with in-batch negatives; adding doc_to_query makes it symmetric."
        },
    )
    partition_mode: str = field(
        default="joint",
        metadata={
            "help": "joint: one softmax over every direction's candidates; per_direction: one per direction."
        },
    )
    parallel_positives: int = field(
        default=0,
        metadata={
            "help": "Extra positives per pair: its answer in this many other languages of its parallel id "
            "(st_hybrid.data.add_parallel_positives), trained with st_hybrid.losses.MultiPositiveRankingLoss. "
            "0: one positive, MNRL."
        },
    )
    positive_alignment: float = field(
        default=0.0,
        metadata={
            "help": "Weight of MultiPositiveRankingLoss' translation-alignment term: each positive must also "
            "retrieve the pair's other positives (its translations) among the batch. Needs parallel_positives "
            ">= 1; 0: off."
        },
    )
    positive_reduction: str = field(
        default="mean",
        metadata={
            "help": "How MultiPositiveRankingLoss combines a query's positives: mean, or hardest (only its "
            "worst-scored positive, the answer whose language the model disfavours). hardest needs "
            "parallel_positives >= 1."
        },
    )

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}: choose one of {list(LOSSES)}.")
        self.loss_directions = _as_list(self.loss_directions, split_commas=True) or []
        unknown = sorted(set(self.loss_directions) - set(LOSS_DIRECTIONS))
        if unknown or not self.loss_directions:
            raise ValueError(
                f"loss_directions {self.loss_directions} must be one or more of {list(LOSS_DIRECTIONS)}, e.g. "
                "--loss_directions query_to_doc doc_to_query (the symmetric loss)."
            )
        if len(set(self.loss_directions)) != len(self.loss_directions):
            raise ValueError(f"loss_directions {self.loss_directions} names a direction twice.")
        if self.partition_mode not in PARTITION_MODES:
            raise ValueError(
                f"Unknown partition_mode {self.partition_mode!r}: choose one of {list(PARTITION_MODES)}."
            )
        if self.parallel_positives < 0:
            raise ValueError(f"parallel_positives must be >= 0, got {self.parallel_positives}.")
        if self.parallel_positives and (self.loss != "mnrl" or self.loss_directions != ["query_to_doc"]):
            raise ValueError(
                f"parallel_positives {self.parallel_positives} trains MultiPositiveRankingLoss, which has no "
                f"{self.loss} / {self.loss_directions} variant: set loss: mnrl and loss_directions: "
                "query_to_doc, or parallel_positives: 0."
            )
        if self.positive_alignment < 0:
            raise ValueError(f"positive_alignment must be >= 0, got {self.positive_alignment}.")
        if self.positive_alignment and not self.parallel_positives:
            raise ValueError(
                f"positive_alignment {self.positive_alignment} aligns a pair's positives with each other, and "
                "there is one positive per pair: set parallel_positives >= 1, or positive_alignment 0."
            )
        if self.positive_reduction not in POSITIVE_REDUCTIONS:
            raise ValueError(
                f"Unknown positive_reduction {self.positive_reduction!r}: choose one of {list(POSITIVE_REDUCTIONS)}."
            )
        if self.positive_reduction != "mean" and not self.parallel_positives:
            raise ValueError(
                f"positive_reduction {self.positive_reduction!r} chooses among a pair's positives, and there is "
                "one positive per pair: set parallel_positives >= 1, or positive_reduction mean."
            )
        if self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {self.mini_batch_size}.")


@dataclass
class MiningArguments:
    """Hard negatives mined before training (st_hybrid.mining), never from a positive group.

    The base model mines unless ``hard_negatives_model`` names another one, e.g. a small model mining for a
    large one, whose own encoding would cost more than the training steps it leaves room for.
    """

    hard_negatives: int = field(
        default=0,
        metadata={
            "help": "Mined hard negatives per training pair (columns negative, or negative_1..N), mined once "
            "with the base model (or hard_negatives_model) before training and cached under "
            "output_dir/hard_negatives; 0: none."
        },
    )
    hard_negatives_model: str | None = field(
        default=None,
        metadata={
            "help": "Mine with this sentence-transformers model (Hub id or folder), using its own stored "
            "query/document prompts, instead of the base model; unset: the base model with query_prompt / "
            "passage_prompt."
        },
    )
    hard_negatives_language: str = field(
        default="passage",
        metadata={
            "help": f"One of {', '.join(LANGUAGE_MODES)}: negatives in the pair's passage language (a mono "
            "batch stays monolingual), in its query language (for cross pairs: look-alikes in the query's "
            "own language), or in any language."
        },
    )
    hard_negatives_from: str = field(
        default="paragraphs",
        metadata={
            "help": "paragraphs: every sentence of the LAReQA train_data paragraphs that is no question's "
            "answer, no training text and no evaluation text (keeps the sampler's positive groups; rows of other "
            "sources, e.g. Tatoeba, draw from them too, with hard_negatives_language any); passages: the "
            "training passages (other pairs' positives: the sampler joins their groups, on real data into one)."
        },
    )
    hard_negatives_range_min: int = field(
        default=0, metadata={"help": "Skip this many best candidates outside the positive group."}
    )
    hard_negatives_range_max: int | None = field(
        default=None,
        metadata={"help": "Search depth (default range_min + hard_negatives); raise it with margins."},
    )
    hard_negatives_absolute_margin: float | None = field(
        default=None, metadata={"help": "Drop candidates scoring above the positive score minus this."}
    )
    hard_negatives_relative_margin: float | None = field(
        default=None,
        metadata={"help": "Drop candidates scoring above (1 - this) x the positive score, e.g. 0.05."},
    )

    def __post_init__(self) -> None:
        self.hard_negatives_model = _none_if_null(self.hard_negatives_model)
        if self.hard_negatives < 0:
            raise ValueError(
                f"hard_negatives must be >= 0 (negatives mined per pair; 0: none), got {self.hard_negatives}."
            )
        if self.hard_negatives_language not in LANGUAGE_MODES:
            raise ValueError(
                f"hard_negatives_language must be one of {list(LANGUAGE_MODES)}, got "
                f"{self.hard_negatives_language!r}."
            )
        if self.hard_negatives_from not in HARD_NEGATIVE_SOURCES:
            raise ValueError(
                f"hard_negatives_from must be one of {list(HARD_NEGATIVE_SOURCES)}, got {self.hard_negatives_from!r}."
            )
        if self.hard_negatives_range_min < 0:
            raise ValueError(f"hard_negatives_range_min must be >= 0, got {self.hard_negatives_range_min}.")
        depth = self.hard_negatives_range_min + self.hard_negatives
        if self.hard_negatives_range_max is not None and self.hard_negatives_range_max < depth:
            raise ValueError(
                f"hard_negatives_range_max={self.hard_negatives_range_max} leaves fewer than hard_negatives="
                f"{self.hard_negatives} ranks after hard_negatives_range_min={self.hard_negatives_range_min}: "
                f"set it to at least {depth} or leave it unset."
            )
        for name in ("hard_negatives_absolute_margin", "hard_negatives_relative_margin"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0 or unset, got {value}.")
        if self.hard_negatives_relative_margin is not None and self.hard_negatives_relative_margin >= 1:
            raise ValueError(
                f"hard_negatives_relative_margin must be below 1 (a share of the positive score, e.g. 0.05), "
                f"got {self.hard_negatives_relative_margin}."
            )
        unused = [f.name for f in fields(self)[1:] if getattr(self, f.name) != f.default]
        if not self.hard_negatives and unused:
            logger.warning("hard_negatives is 0 (no mining): %s have no effect.", ", ".join(unused))

    def mining_options(self) -> dict[str, Any]:
        """The options that shape the mined negatives (the keyword names of mine_hard_negatives)."""
        return {
            "num_negatives": self.hard_negatives,
            "language": self.hard_negatives_language,
            "candidates": self.hard_negatives_from,
            "range_min": self.hard_negatives_range_min,
            "range_max": self.hard_negatives_range_max,
            "absolute_margin": self.hard_negatives_absolute_margin,
            "relative_margin": self.hard_negatives_relative_margin,
        }


@dataclass
class EvaluationArguments:
    eval_data: str | None = field(
        default="../shared/data/xquad-r",
        metadata={"help": "LAReQA folder, never training data; 'null': none."},
    )
    eval_name: str = "xquad-r"
    eval_languages: list[str] | None = None
    eval_max_articles: int | None = field(default=None, metadata={"help": "A subset: the first N articles."})
    eval_tatoeba_direction: str = field(
        default="eng-x",
        metadata={
            "help": "With eval_data a Tatoeba folder (its held-out side): eng-x (English queries, a pool of "
            "every other language) or x-eng."
        },
    )
    eval_max_per_language: int | None = field(
        default=None, metadata={"help": "Tatoeba eval_data: a subset, at most N held-out pairs per language."}
    )
    eval_batch_size: int = 64
    eval_max_seq_length: int | None = field(
        default=None,
        metadata={
            "help": "Truncation of the evaluations and of the saved model; default: the base model's own limit "
            "(a short training truncation must not truncate the benchmark or the published model)."
        },
    )
    evaluate_before: bool = field(default=True, metadata={"help": "Also evaluate the base model (cached)."})

    def __post_init__(self) -> None:
        self.eval_data = _none_if_null(self.eval_data)
        self.eval_languages = _as_languages(self.eval_languages, "eval_languages")
        if self.eval_max_seq_length is not None and self.eval_max_seq_length < 1:
            raise ValueError(f"eval_max_seq_length must be >= 1, got {self.eval_max_seq_length}.")
        if self.eval_max_articles is not None and self.eval_max_articles < 1:
            raise ValueError(f"eval_max_articles must be >= 1, got {self.eval_max_articles}.")
        if self.eval_tatoeba_direction not in TATOEBA_DIRECTIONS:
            raise ValueError(
                f"eval_tatoeba_direction must be one of {list(TATOEBA_DIRECTIONS)}, got {self.eval_tatoeba_direction!r}."
            )
        if self.eval_max_per_language is not None and self.eval_max_per_language < 1:
            raise ValueError(f"eval_max_per_language must be >= 1, got {self.eval_max_per_language}.")


@dataclass
class MergeArguments:
    merge_ratio: float | None = field(
        default=None,
        metadata={"help": "Also save model-merged/: (1 - r) * base + r * fine-tuned weights, evaluated too."},
    )

    def __post_init__(self) -> None:
        if self.merge_ratio is not None and not (
            math.isfinite(self.merge_ratio) and 0 <= self.merge_ratio <= 1
        ):
            raise ValueError(
                f"merge_ratio must be in [0, 1] (0 = base, 1 = fine-tuned), got {self.merge_ratio}."
            )


@dataclass
class RunArguments:
    resume: bool = field(
        default=False, metadata={"help": "Continue the run in output_dir from its last checkpoint."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Start over in a used output_dir (deletes its previous run's outputs)."},
    )

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise ValueError(
                "--resume continues the run in output_dir and --overwrite discards it: pick one."
            )


ARGUMENT_CLASSES = (
    ModelArguments,
    DataArguments,
    BatchArguments,
    LossArguments,
    MiningArguments,
    EvaluationArguments,
    MergeArguments,
    RunArguments,
    SentenceTransformerTrainingArguments,
)


@dataclass
class Arguments:
    """One run's arguments: our groups plus the training arguments (whose output_dir is ``checkpoints/``)."""

    model: ModelArguments
    data: DataArguments
    batches: BatchArguments
    loss: LossArguments
    mining: MiningArguments
    evaluation: EvaluationArguments
    merge: MergeArguments
    run: RunArguments
    training: SentenceTransformerTrainingArguments
    output_dir: Path

    def options(self) -> dict[str, Any]:
        """Our options as one flat dict (the YAML keys)."""
        groups = (
            self.model,
            self.data,
            self.batches,
            self.loss,
            self.mining,
            self.evaluation,
            self.merge,
            self.run,
        )
        return {
            "output_dir": str(self.output_dir),
            **{k: v for group in groups for k, v in asdict(group).items()},
        }


def _ddp_backend() -> str | None:
    """Without CUDA, transformers starts a process group only when told to use gloo (CPU multi-process)."""
    import torch

    launched_distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return "gloo" if launched_distributed and not torch.cuda.is_available() else None


# This recipe's defaults where they differ from TrainingArguments'; a YAML config or a flag overrides them.
TRAINING_DEFAULTS = {
    "output_dir": "outputs/default",
    "per_device_train_batch_size": 16,
    "learning_rate": 3e-5,
    "weight_decay": 0.01,
    "warmup_steps": 0.1,  # a float below 1 is a ratio of the total steps (transformers 5)
    "logging_steps": 10,
    "save_steps": 50,
    "save_total_limit": 2,
    "dataloader_drop_last": True,
}


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(ARGUMENT_CLASSES, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default=None, help="YAML file: keys are flag names (examples/configs/*.yaml)."
    )
    parser.add_argument(
        "--batch_size",
        "--batch-size",
        dest="per_device_train_batch_size",
        type=int,
        default=argparse.SUPPRESS,
        help="Short for --per_device_train_batch_size.",
    )
    parser.set_defaults(**TRAINING_DEFAULTS, ddp_backend=_ddp_backend())
    _accept_null(parser)
    return parser


def _accept_null(parser: HfArgumentParser) -> None:
    """Optional numbers take ``null`` (or ``none``) on the command line as in YAML, e.g. ``--cross_partners null``."""
    actions = parser._option_string_actions  # argparse keeps no public map from flag to action
    for group in ARGUMENT_CLASSES[:-1]:
        for name, hint in typing.get_type_hints(group).items():
            if hint in (int | None, float | None):
                action = actions[f"--{name}"]
                action.type = functools.partial(_number_or_null, action.type)


def _number_or_null(convert, text: str):
    return None if text.strip().lower() in ("null", "none") else convert(text)


def _config_defaults(parser: HfArgumentParser, values: dict[str, Any], source: str) -> dict[str, Any]:
    """Map config keys (any flag name, e.g. ``batch_size`` or ``lr_scheduler_type``) to parser destinations."""
    actions = parser._option_string_actions  # argparse keeps no public map from flag to destination
    unknown = sorted(key for key in values if f"--{key}" not in actions or key == "config")
    if unknown:
        ours = sorted(f.name for group in ARGUMENT_CLASSES[:-1] for f in fields(group))
        parser.error(
            f"Unknown config keys {unknown} in {source}. Valid keys: {ours}, batch_size and every "
            "SentenceTransformerTrainingArguments field (see --help)."
        )
    defaults = {actions[f"--{key}"].dest: value for key, value in values.items()}
    if "/" in str(defaults.get("push_to_hub")):  # st-hybrid 0.1: push_to_hub held the repo id
        defaults["hub_model_id"], defaults["push_to_hub"] = defaults["push_to_hub"], True
    return defaults


def _legacy_push_flag(argv: list[str]) -> list[str]:
    """``--push-to-hub user/name`` (st-hybrid 0.1) means ``--push_to_hub --hub_model_id user/name``."""
    result = []
    for token in argv:
        if result and result[-1] in ("--push-to-hub", "--push_to_hub") and "/" in token:
            result.append("--hub_model_id")
        result.append(token)
    return result


def parse_args(argv: list[str] | None = None, overrides: dict[str, Any] | None = None) -> Arguments:
    """Parse flags (after the ``--config`` YAML and ``overrides``, both keyed by flag name) into :class:`Arguments`.

    Every value is checked here, before anything is loaded; a bad one exits with a message naming it.
    """
    argv = _legacy_push_flag(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    config_file = parser.parse_known_args(argv)[0].config
    values = yaml.safe_load(Path(config_file).read_text()) if config_file else {}
    if not isinstance(values or {}, dict):
        parser.error(
            f"{config_file} must hold a mapping of option names to values, not {type(values).__name__}."
        )
    parser.set_defaults(
        **_config_defaults(parser, {**(values or {}), **(overrides or {})}, config_file or "overrides")
    )
    try:
        *groups, training, _ = parser.parse_args_into_dataclasses(argv, look_for_args_file=False)
    except ValueError as err:
        parser.error(str(err))
    output_dir = Path(training.output_dir)
    training.output_dir = str(output_dir / "checkpoints")
    if training.prompts is None:
        training.prompts = {"query": groups[0].query_prompt, "passage": groups[0].passage_prompt}
    arguments = Arguments(*groups, training=training, output_dir=output_dir)
    _prompt_passage_columns(training, arguments.mining.hard_negatives, arguments.loss.parallel_positives)
    if arguments.mining.hard_negatives:
        problem = _hard_negative_source_problem(arguments)
        if problem:
            parser.error(problem)
    if training.push_to_hub and not training.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id user/name (the Hub repository to create or update).")
    if training.eval_strategy != "no" and not arguments.evaluation.eval_data:
        parser.error(f"eval_strategy={training.eval_strategy!r} needs eval_data (a LAReQA folder).")
    return arguments


def _prompt_passage_columns(
    training: SentenceTransformerTrainingArguments, num_negatives: int, num_positives: int
) -> None:
    """Mined negatives and extra positives are passages: give their columns the passage prompt.

    (A per-column prompt dict names each column.)
    """
    prompts = training.prompts
    if isinstance(prompts, dict) and "passage" in prompts and isinstance(prompts["passage"], str):
        negatives = negative_columns(num_negatives, numbered=num_positives > 0)
        for column in negatives + parallel_positive_columns(num_positives):
            prompts.setdefault(column, prompts["passage"])


def _is_lareqa(source: str) -> bool:
    path = Path(source)
    if is_tatoeba_folder(path):
        return False
    return (path.is_dir() and any(path.glob("*.json"))) or (path.is_file() and path.suffix == ".json")


def _hard_negative_source_problem(arguments: Arguments) -> str | None:
    """Why the hard-negative candidates cannot be built from train_data (None when they can).

    ``paragraphs`` needs LAReQA data: its paragraphs are the candidates. Other sources (e.g. Tatoeba bitext) may
    train beside it; their rows then draw negatives from those paragraphs, which only ``language: any`` allows
    (their languages, and codes such as ``eng``, are not the paragraphs').
    """
    mining = arguments.mining
    if mining.hard_negatives_from != "paragraphs":
        return None
    others = [source for source in arguments.data.train_data if not _is_lareqa(source)]
    if not others:
        return None
    if len(others) == len(arguments.data.train_data):
        return (
            f"hard_negatives_from=paragraphs mines from the paragraphs of LAReQA train_data (folders of "
            f"<language>.json), and {others} are not LAReQA data. Add LAReQA data (e.g. ../shared/data/mlqa-r), "
            "or set hard_negatives_from: passages (the training passages)."
        )
    if mining.hard_negatives_language != "any":
        return (
            f"train_data {others} is not LAReQA data: its rows draw hard negatives from the LAReQA paragraphs, "
            f"which hold none of its languages, so hard_negatives_language={mining.hard_negatives_language!r} "
            "would drop every one of its rows. Set hard_negatives_language: any, or train on LAReQA data only."
        )
    return None


RESUME_RECORD = "run.inputs.json"  # the settings of the run in an output_dir, checked by --resume


def check_output_dir(arguments: Arguments) -> None:
    """Refuse a new run in a folder that holds another run, or a --resume with other settings (nothing is touched)."""
    folder = arguments.output_dir
    used = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if used and not (arguments.run.resume or arguments.run.overwrite):
        raise SystemExit(
            f"output_dir {folder} already holds a run ({', '.join(used)}). Pass --resume to continue it, "
            "--overwrite to start over (its checkpoints, model and results are deleted), or choose another "
            "--output_dir. Nothing was changed."
        )
    record_file = folder / RESUME_RECORD
    if arguments.run.resume and record_file.exists():
        changed = changed_inputs(json.loads(record_file.read_text()), resume_record(arguments))
        if changed:
            raise SystemExit(
                f"--resume would continue the run in {folder} with other settings: {changed} differ from "
                "the run it started. Resume with the same settings, or start over with --overwrite."
            )


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
def load_model(arguments: Arguments):
    """The base model, truncating at the evaluation length (see :func:`training_truncation` for training)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(arguments.model.model)
    # None keeps the base model's own limit (the model's identity is part of every cache key already).
    set_truncation(model, arguments.evaluation.eval_max_seq_length or model.max_seq_length)
    if arguments.model.freeze_embeddings:
        if not hasattr(model[0], "auto_model"):
            raise SystemExit(
                f"freeze_embeddings: true freezes a transformer's word embeddings, but {arguments.model.model} "
                f"starts with {type(model[0]).__name__}, whose embedding table is the whole model: nothing would "
                "train. Set freeze_embeddings: false (--freeze_embeddings false)."
            )
        model[0].auto_model.get_input_embeddings().requires_grad_(False)
    return model


def set_truncation(model, length: int) -> None:
    """Set the model's ``max_seq_length``; static embeddings never truncate (their length has no setter)."""
    length_property = getattr(type(model[0]), "max_seq_length", None)
    if isinstance(length_property, property) and length_property.fset is None:
        return
    model.max_seq_length = length


@contextlib.contextmanager
def training_truncation(model, max_seq_length: int):
    """Truncate at ``max_seq_length`` while training only: evaluations and the saved model keep their length."""
    evaluation_length = model.max_seq_length
    set_truncation(model, max_seq_length)
    try:
        yield
    finally:
        set_truncation(model, evaluation_length)


def build_pairs(arguments: Arguments):
    """Training pairs from every source; a requested language that no source holds is an error."""
    from datasets import concatenate_datasets

    from st_hybrid.data import build_training_pairs

    data, seed = arguments.data, arguments.training.seed
    if data.tatoeba_split != "all" and not any(is_tatoeba_folder(source) for source in data.train_data):
        raise SystemExit(
            f"tatoeba_split={data.tatoeba_split!r} applies to a Tatoeba folder in train_data, and "
            f"{data.train_data} has none: add one (e.g. ../shared/data/tatoeba) or drop tatoeba_split."
        )
    tables = [table for source in data.train_data if (table := _training_table(source, data)) is not None]
    if not tables:
        raise SystemExit(
            f"None of the train_data {data.train_data} holds any of the train_languages {data.train_languages}."
        )
    pairs = [build_training_pairs(t, cross_partners=data.cross_partners, seed=seed) for t in tables]
    if (
        len({"answer_id" in p.column_names for p in pairs}) > 1
    ):  # e.g. MLQA-R (answer ids) with Tatoeba (none)
        pairs = [p if "answer_id" in p.column_names else _with_answer_id(p) for p in pairs]
    pairs = concatenate_datasets(pairs) if len(pairs) > 1 else pairs[0]
    if data.single_source:
        name = "+".join(dict.fromkeys(pairs.unique("source")))
        pairs = pairs.map(lambda batch: {"source": [name] * len(batch["source"])}, batched=True)
    found = set(pairs["query_language"]) | set(pairs["passage_language"])
    missing = sorted(set(data.train_languages or []) - found)
    if missing:
        raise SystemExit(
            f"train_languages {missing} are not in the training data {data.train_data} "
            f"(of the languages asked for, it holds {sorted(found)}). Drop them or add data that has them."
        )
    if data.max_train_pairs and len(pairs) > data.max_train_pairs:
        pairs = pairs.shuffle(seed=seed).select(range(data.max_train_pairs))
    return pairs


def _with_answer_id(pairs):
    """An ``answer_id`` per (source, parallel id, passage language): it links only rows their id links already."""
    return pairs.map(
        lambda batch: {
            "answer_id": [
                f"{source}/{pid}/{language}"
                for source, pid, language in zip(
                    batch["source"], batch["parallel_id"], batch["passage_language"], strict=True
                )
            ]
        },
        batched=True,
    )


def _training_table(source: str, data: DataArguments):
    """One source's parallel table: the train_languages it holds (None if none), Tatoeba's train side if asked.

    ``train_languages`` may mix sources with their own codes (MLQA-R ``en``, Tatoeba ``eng``): each source
    keeps the languages it has; :func:`build_pairs` checks that every language was found somewhere.
    """
    from st_hybrid.data import available_languages, load_parallel, split_tatoeba

    languages = data.train_languages
    available = available_languages(source)
    if languages is not None and available is not None:
        languages = [language for language in languages if language in available]
        if not [language for language in languages if not (is_tatoeba_folder(source) and language == "eng")]:
            return None  # (a Tatoeba folder's English pairs with the languages asked for, never alone)
    if is_tatoeba_folder(source) and data.tatoeba_split == "train":
        train, _ = split_tatoeba(
            source,
            languages=languages,
            test_fraction=data.tatoeba_test_fraction,
            seed=data.tatoeba_split_seed,
        )
        return train
    return load_parallel(source, languages=languages)


def build_evaluator(arguments: Arguments):
    evaluation = arguments.evaluation
    if not evaluation.eval_data:
        return None
    from st_hybrid.evaluation import LanguageAwareRetrievalEvaluator

    if is_tatoeba_folder(evaluation.eval_data):  # its held-out side, the pool a Tatoeba training never sees
        data = arguments.data
        return LanguageAwareRetrievalEvaluator.from_tatoeba(
            evaluation.eval_data,
            direction=evaluation.eval_tatoeba_direction,
            languages=evaluation.eval_languages,
            max_per_language=evaluation.eval_max_per_language,
            test_fraction=data.tatoeba_test_fraction,
            split_seed=data.tatoeba_split_seed,
            name=evaluation.eval_name,
            query_prompt=arguments.model.query_prompt,
            corpus_prompt=arguments.model.passage_prompt,
            batch_size=evaluation.eval_batch_size,
            mrr_at_k=(1, 10),
        )
    return LanguageAwareRetrievalEvaluator.from_lareqa(
        evaluation.eval_data,
        languages=evaluation.eval_languages,
        max_articles=evaluation.eval_max_articles,
        name=evaluation.eval_name,
        query_prompt=arguments.model.query_prompt,
        corpus_prompt=arguments.model.passage_prompt,
        batch_size=evaluation.eval_batch_size,
    )


def check_no_leakage(pairs, evaluator) -> None:
    """Refuse to evaluate on text the model trained on (passages and mined negatives): the scores would be inflated."""
    passage_columns = [c for c in pairs.column_names if c not in (*METADATA_COLUMNS, "query")]
    passages = {text for column in passage_columns for text in pairs[column]} & set(evaluator.candidate_texts)
    queries = set(pairs["query"]) & set(evaluator.query_texts)
    if passages or queries:
        raise SystemExit(
            f"{len(passages)} training passages and {len(queries)} training queries also appear in the "
            f"evaluation set {evaluator.name!r}, e.g. {sorted(passages or queries)[0][:80]!r}. Evaluate on "
            "data disjoint from training (e.g. train on MLQA-R, evaluate on XQuAD-R) or set eval_data: null."
        )


# ---------------------------------------------------------------------------------------------
# Hard negatives
# ---------------------------------------------------------------------------------------------
def hard_negative_corpus(
    arguments: Arguments, exclude: Set[str] = frozenset()
) -> dict[str, list[str]] | None:
    """The extra candidates of ``hard_negatives_from: paragraphs`` (None for ``passages``).

    Every sentence of the LAReQA train_data paragraphs, in the languages trained on, except every question's
    answer sentence (also those of pairs that max_train_pairs left out: a left-out translation of a pair's
    answer would otherwise be mined as its negative). Mining also skips every training text
    (``avoid_training_positives``), so no negative is another pair's positive. Rows of other sources (bitext)
    draw their negatives from the same sentences. Texts in ``exclude`` (the evaluation set's) are left out:
    boilerplate such as a "[citation needed]" sentence occurs in MLQA-R and XQuAD-R paragraphs alike.
    """
    if arguments.mining.hard_negatives_from != "paragraphs":
        return None
    from st_hybrid.mining import lareqa_corpus

    texts, languages, answers = [], [], set()
    for source in filter(_is_lareqa, arguments.data.train_data):  # other sources have no paragraphs
        table = _training_table(source, arguments.data)
        if table is None:
            continue
        answers.update(table["answer"])
        corpus = lareqa_corpus(source, languages=sorted(set(table["language"])))
        texts += corpus["text"]
        languages += corpus["language"]
    keep = [i for i, text in enumerate(texts) if text not in answers and text not in exclude]
    if left_out := len(set(texts) & exclude):
        logger.info(
            "Hard-negative candidates: %d distinct paragraph sentence(s) left out as evaluation texts.",
            left_out,
        )
    return {"text": [texts[i] for i in keep], "language": [languages[i] for i in keep]}


def mining_inputs(arguments: Arguments, pairs, corpus: dict | None) -> dict[str, Any]:
    """Everything the mined negatives depend on: the key of the cached mined pairs.

    The pairs and the corpus are keyed by their content, which covers the data files, languages, cross
    partners, max_train_pairs and the seed that built them; the model by its files; the options by value.
    """
    miner = arguments.mining.hard_negatives_model
    return {
        "model": path_fingerprint(miner or arguments.model.model),
        "max_seq_length": arguments.model.max_seq_length,
        # A separate miner uses its stored prompts, which its files (the fingerprint) already cover.
        "prompts": None if miner else [arguments.model.query_prompt, arguments.model.passage_prompt],
        "pairs": content_hash(pairs.to_dict()),
        "corpus": content_hash(corpus) if corpus is not None else None,
        "options": arguments.mining.mining_options(),
    }


def mining_model(arguments: Arguments, model):
    """The model that mines, and its query and passage prompts (None: the model's stored ones)."""
    miner = arguments.mining.hard_negatives_model
    if miner is None:
        return model, arguments.model.query_prompt, arguments.model.passage_prompt
    from sentence_transformers import SentenceTransformer

    logger.info("Hard negatives are mined with %s, not the base model.", miner)
    return SentenceTransformer(miner, device=model.device), None, None


def mine_into(folder: Path, arguments: Arguments, pairs, model, corpus: dict | None) -> dict[str, Any]:
    """Mine (at the training truncation), save the mined pairs to ``folder/pairs``; a summary.

    ``model`` is the base model: it mines unless ``hard_negatives_model`` names another one.
    """
    from st_hybrid import mining

    options = arguments.mining
    model, query_prompt, passage_prompt = mining_model(arguments, model)
    start = time.perf_counter()
    with training_truncation(model, arguments.model.max_seq_length):
        mined = mining.mine_hard_negatives(
            pairs,
            model,
            language=options.hard_negatives_language,
            num_negatives=options.hard_negatives,
            range_min=options.hard_negatives_range_min,
            range_max=options.hard_negatives_range_max,
            absolute_margin=options.hard_negatives_absolute_margin,
            relative_margin=options.hard_negatives_relative_margin,
            corpus=corpus,
            avoid_training_positives=corpus is not None,
            query_prompt=query_prompt,
            passage_prompt=passage_prompt,
            batch_size=arguments.evaluation.eval_batch_size,
        )
    seconds = time.perf_counter() - start
    if len(mined) == 0:
        raise SystemExit(
            f"Hard-negative mining kept none of the {len(pairs)} pairs (too few candidates outside their positive "
            "groups qualify): raise hard_negatives_range_max, lower the margins or hard_negatives"
            + (", or set hard_negatives_language: any." if options.hard_negatives_language != "any" else ".")
        )
    # Written beside, then swapped in: an interrupted save never passes for the mined pairs.
    partial, target = folder / ".pairs.partial", folder / "pairs"
    shutil.rmtree(partial, ignore_errors=True)
    mined.save_to_disk(str(partial))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return {
        "num_negatives": options.hard_negatives,
        "columns": negative_columns(options.hard_negatives),
        "options": options.mining_options(),
        "candidates": (
            f"{len(set(corpus['text']))} distinct paragraph sentences of the training data that are no "
            "answer and no training text"
            if corpus is not None
            else "the training passages"
        ),
        "pairs_before": len(pairs),
        "pairs": len(mined),
        # HybridBatchSampler's no-repeat unit: a negative that is another pair's text joins their groups.
        "positive_groups": {"before": count_positive_groups(pairs), "after": count_positive_groups(mined)},
        "mined_with": options.hard_negatives_model or arguments.model.model,
        "mined_with_base_model": options.hard_negatives_model is None,
        "seconds": round(seconds, 1),
    }


def count_positive_groups(pairs) -> int:
    """How many positive groups HybridBatchSampler sees in ``pairs`` (negatives included)."""
    from st_hybrid.sampler import PairMetadata

    table = pairs.with_format("arrow")[:]  # the rows as selected (``pairs.data`` ignores a selection)
    metadata = PairMetadata.from_columns({name: table.column(name) for name in table.column_names})
    return len(set(metadata.group.tolist()))


def with_hard_negatives(
    arguments: Arguments, pairs, model, exclude: Set[str] = frozenset()
) -> tuple[Any, dict[str, Any]]:
    """The pairs with mined negatives, and a summary; mined once per inputs, then loaded from output_dir.

    The main process mines (or reuses the cached result); the other processes wait for it and load it. No
    negative is a text of ``exclude`` (the evaluation set's texts: see :func:`hard_negative_corpus`).
    """
    from accelerate import PartialState
    from datasets import load_from_disk

    state = PartialState()
    folder = arguments.output_dir / HARD_NEGATIVES_DIR
    summary_file = folder / "summary.json"
    mined_now = []
    if state.is_main_process:
        corpus = hard_negative_corpus(arguments, exclude)
        if not (folder / "pairs").is_dir():
            summary_file.unlink(missing_ok=True)  # its pairs are gone: mine again

        def mine() -> dict[str, Any]:
            mined_now.append(True)
            return mine_into(folder, arguments, pairs, model, corpus)

        cached_json(summary_file, mining_inputs(arguments, pairs, corpus), mine, "mined hard negatives")
    wait_for_everyone()
    summary = {**json.loads(summary_file.read_text()), "path": str(folder / "pairs")}
    summary["reused"] = not mined_now if state.is_main_process else None
    groups, step = summary["positive_groups"]["after"], arguments.training.per_device_train_batch_size
    step *= arguments.training.world_size
    if groups < step:
        raise SystemExit(
            f"The mined negatives join the {summary['pairs']} pairs into {groups} positive group(s) (before mining: "
            f"{summary['positive_groups']['before']}), fewer than one step needs ({step} rows): a negative mined from "
            "the training passages is another pair's positive, so the sampler can never batch the two pairs "
            "together. Set hard_negatives_from: paragraphs (LAReQA train_data), or lower batch_size."
        )
    mined = load_from_disk(str(folder / "pairs"))
    logger.info(
        "Hard negatives: %d per pair from %s (%s), %d of %d pairs kept%s",
        summary["num_negatives"],
        summary["candidates"],
        arguments.mining.hard_negatives_language,
        summary["pairs"],
        summary["pairs_before"],
        " (cached)" if summary["reused"] else "",
    )
    return mined, summary


def _miner_words(summary: dict[str, Any]) -> str:
    # Summaries cached before hard_negatives_model existed were all mined by the base model.
    if summary.get("mined_with_base_model", True):
        return "the base model"
    return f"`{summary['mined_with']}` (not the base model)"


def hard_negative_notes(summary: dict[str, Any]) -> str:
    """The model card's paragraph on how the negatives were mined."""
    options = summary["options"]
    where = {
        "passage": "in the language of the pair's passage",
        "query": "in the language of the pair's query",
        "any": "in any language",
    }[options["language"]]
    limits = ", ".join(
        f"{name} {options[name]}"
        for name in ("range_min", "range_max", "absolute_margin", "relative_margin")
        if options[name] not in (None, 0)
    )
    return (
        f"**Hard negatives.** Each training pair had {summary['num_negatives']} mined hard negative(s), "
        f"mined with {_miner_words(summary)} before training by `st_hybrid.mining.mine_hard_negatives` (faiss): "
        f"the best-scoring candidates {where}, from {summary['candidates']}, never a "
        "text of the pair's positive group (its translations, the same answer sentence, repeated texts)"
        f"{f' ({limits})' if limits else ''}. {summary['pairs']} of {summary['pairs_before']} pairs got "
        "enough negatives and were trained on."
    )


def with_parallel_positives(arguments: Arguments, pairs, answers_from):
    """The pairs with ``parallel_positives`` more answers each (see :func:`st_hybrid.data.add_parallel_positives`)."""
    from st_hybrid.data import add_parallel_positives

    extended = add_parallel_positives(
        pairs, arguments.loss.parallel_positives, seed=arguments.training.seed, answers_from=answers_from
    )
    logger.info(
        "Parallel positives: %d more per pair, %d of %d pairs have them",
        arguments.loss.parallel_positives,
        len(extended),
        len(pairs),
    )
    return extended


def build_loss(arguments: Arguments, model):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    options = arguments.loss
    if options.parallel_positives:
        from st_hybrid.losses import MultiPositiveRankingLoss

        return MultiPositiveRankingLoss(
            model,
            num_positives=1 + options.parallel_positives,
            scale=options.scale,
            gather_across_devices=options.gather_across_devices,
            alignment_weight=options.positive_alignment,
            positive_reduction=options.positive_reduction,
        )
    common = {
        "scale": options.scale,
        "gather_across_devices": options.gather_across_devices,
        "directions": tuple(options.loss_directions),
        "partition_mode": options.partition_mode,
    }
    if options.loss == "cached_mnrl":
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=options.mini_batch_size, **common)
    return MultipleNegativesRankingLoss(model, **common)


# What a resumed run may change: how it is evaluated and how long it runs.
_RESUMABLE = ("eval", "per_device_eval", "max_steps", "num_train_epochs", "dataloader_num_workers")


def resume_record(arguments: Arguments) -> dict[str, Any]:
    """The settings a resumed run must share with the run it continues, as one flat dict."""
    inputs = run_inputs(arguments)
    settings = {**inputs["options"], **inputs["training"]}
    settings = {key: value for key, value in settings.items() if not key.startswith(_RESUMABLE)}
    return {**settings, "model": inputs["model"], "train_data": inputs["train_data"]}


def evaluation_inputs(arguments: Arguments, model_name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Everything an evaluation of ``model_name_or_path`` depends on: the key of its cached result."""
    evaluation = arguments.evaluation
    inputs = {
        "model": path_fingerprint(model_name_or_path),
        "max_seq_length": arguments.evaluation.eval_max_seq_length,
        "prompts": [arguments.model.query_prompt, arguments.model.passage_prompt],
        "eval_data": path_fingerprint(evaluation.eval_data),
        "eval_name": evaluation.eval_name,
        "eval_languages": evaluation.eval_languages,
        "eval_max_articles": evaluation.eval_max_articles,
    }
    if evaluation.eval_data and is_tatoeba_folder(evaluation.eval_data):
        # The held-out side depends on the split (keys for Tatoeba only: older caches stay valid).
        data = arguments.data
        inputs["tatoeba"] = {
            "direction": evaluation.eval_tatoeba_direction,
            "max_per_language": evaluation.eval_max_per_language,
            "test_fraction": data.tatoeba_test_fraction,
            "split_seed": data.tatoeba_split_seed,
        }
    return inputs


# Training arguments that change where and how a run reports or which process reads them, not what it computes.
_REPORTING_PREFIXES = (
    "output_dir",
    "logging_",
    "save_",
    "hub_",
    "push_to_hub",
    "report_to",
    "run_name",
    "disable_tqdm",
    "local_rank",  # differs between the processes of one run
    "ddp_backend",
)


def run_inputs(arguments: Arguments) -> dict[str, Any]:
    """Everything a run's results depend on (model and data files, options, training arguments)."""
    options = arguments.options()
    for key in ("output_dir", "resume", "overwrite", "merge_ratio"):
        options.pop(key)
    for key, default in _NEW_OPTION_DEFAULTS.items():
        if options.get(key) == default:
            options.pop(key)
    # Without mining its options change nothing: left out, so caches of runs made before they existed stay valid.
    if not arguments.mining.hard_negatives:
        for name in (f.name for f in fields(MiningArguments)):
            options.pop(name, None)  # some already left out at their defaults above
    training = arguments.training.to_dict()
    return {
        "options": options,
        "training": {k: v for k, v in training.items() if not k.startswith(_REPORTING_PREFIXES)},
        "model": path_fingerprint(arguments.model.model),
        "train_data": [path_fingerprint(source) for source in arguments.data.train_data],
        "evaluation": evaluation_inputs(arguments, arguments.model.model),
    }


def evaluate_into(evaluator, model, folder: Path) -> dict:
    """Run the evaluator, write its files to ``folder`` and return its report (the JSON schema)."""
    folder.mkdir(parents=True, exist_ok=True)
    evaluator(model, output_path=str(folder))
    return evaluator.last_report


def cached_evaluation(evaluator, model, folder: Path, inputs: dict[str, Any]) -> dict:
    """An evaluation reused only while its inputs (model files, data, languages, prompts) are unchanged."""
    report_file = folder / f"{evaluator.name}_metrics.json"
    return cached_json(
        report_file, inputs, lambda: evaluate_into(evaluator, model, folder), "zero-shot evaluation"
    )


def format_table(reports: dict[str, dict | None]) -> str:
    """Headline metrics side by side, each column after the first with its difference to the first.

    Columns are as wide as their widest cell plus a gap, so large values (a rank distance of 449.8 against
    300.9) never run into each other.
    """
    columns = {label: report for label, report in reports.items() if report}
    labels = list(columns)
    # Tatoeba's English->X pool has no mono setting: its names are skipped.
    names = [name for name in HEADLINE_METRICS if name in columns[labels[0]]["metrics"]]
    rows = {name: [] for name in names}
    for name in names:
        first = columns[labels[0]]["metrics"][name]
        rows[name].append(f"{first:.4f}")
        for label in labels[1:]:
            value = columns[label]["metrics"][name]
            rows[name].append(f"{value:.4f} ({value - first:+.4f})")
    widths = [
        max([len(label)] + [len(rows[name][i]) for name in names]) + 2 for i, label in enumerate(labels)
    ]
    name_width = max([len("metric")] + [len(name) for name in names])
    lines = [f"{'metric':<{name_width}}" + "".join(f"{label:>{w}}" for label, w in zip(labels, widths))]
    for name in names:
        lines.append(f"{name:<{name_width}}" + "".join(f"{cell:>{w}}" for cell, w in zip(rows[name], widths)))
    return "\n".join(lines)


def prepare_output_dir(arguments: Arguments) -> None:
    """With --overwrite, delete the previous run's outputs (keyed caches, eval/before and hard_negatives, stay)."""
    if not arguments.run.overwrite:
        return
    for name in ("checkpoints", "model", "model-merged", "eval/after", "eval/merged", "results.json"):
        path = arguments.output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        logger.warning("--overwrite: deleted %s", path)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def wait_for_everyone() -> None:
    """A barrier across the run's processes (a no-op in a single process).

    On CPU, ``accelerate launch --multi_gpu`` processes get their gloo group from transformers (ddp_backend),
    and accelerate's ``PartialState`` then reports no distributed setup: its ``wait_for_everyone`` would
    return at once, so the group's own barrier is used.
    """
    import torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    state = PartialState()
    if state.distributed_type != DistributedType.NO:
        state.wait_for_everyone()
    elif dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def run(arguments: Arguments) -> dict | None:
    """Train, evaluate before/after (and the merge), save models + cards + metrics; return the results dict."""
    from accelerate import PartialState

    from st_hybrid import HybridBatchSampler, HybridTrainer

    # The training arguments set up the distributed state; every rank checks the output folder before
    # anyone writes to it.
    check_output_dir(arguments)
    state = PartialState()
    wait_for_everyone()
    output_dir, training = arguments.output_dir, arguments.training
    pairs = build_pairs(arguments)
    evaluator = build_evaluator(arguments)
    if evaluator is not None:
        check_no_leakage(pairs, evaluator)
    if state.is_main_process:
        prepare_output_dir(arguments)
        write_json(output_dir / RESUME_RECORD, resume_record(arguments))
    logger.info(
        "Training pairs: %d; strategy=%s alpha=%s",
        len(pairs),
        arguments.batches.strategy,
        arguments.batches.alpha,
    )
    model = load_model(arguments)
    mining, unmined_pairs = None, pairs
    if arguments.mining.hard_negatives:
        evaluation_texts = (
            set() if evaluator is None else {*evaluator.candidate_texts, *evaluator.query_texts}
        )
        pairs, mining = with_hard_negatives(arguments, pairs, model, evaluation_texts)
    if arguments.loss.parallel_positives:
        pairs = with_parallel_positives(arguments, pairs, answers_from=unmined_pairs)
    if evaluator is not None and (mining or arguments.loss.parallel_positives):
        check_no_leakage(pairs, evaluator)

    before = None
    if evaluator is not None and arguments.evaluation.evaluate_before and state.is_main_process:
        inputs = evaluation_inputs(arguments, arguments.model.model)
        before = cached_evaluation(evaluator, model, output_dir / "eval" / "before", inputs)
    wait_for_everyone()

    batches = arguments.batches
    sampler = functools.partial(
        HybridBatchSampler,
        strategy=batches.strategy,
        alpha=batches.alpha,
        language_weighting=batches.language_weighting,
        temperature=batches.temperature,
        one_pair_per_batch=batches.one_pair_per_batch,
        drop_small_pools=batches.drop_small_pools,
    )
    trainer_args = copy.copy(training)
    trainer_args.push_to_hub = False  # the final model and its card are published below, not checkpoints
    trainer = HybridTrainer(
        model=model,
        args=trainer_args,
        train_dataset=pairs,
        loss=build_loss(arguments, model),
        evaluator=evaluator if training.eval_strategy != "no" else None,
        batch_sampler=sampler,
    )
    resume = arguments.run.resume and any((output_dir / "checkpoints").glob("checkpoint-*"))
    start = time.perf_counter()
    with training_truncation(model, arguments.model.max_seq_length):
        train_output = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.perf_counter() - start

    model_dir = output_dir / "model"
    trainer.save_model(str(model_dir))
    results = None
    if state.is_main_process:
        after = evaluate_into(evaluator, model, output_dir / "eval" / "after") if evaluator else None
        results = {
            "config": arguments.options(),
            "training_arguments": training.to_dict(),
            "train_pairs": len(pairs),
            "hard_negatives": mining,
            "train_languages": sorted(set(pairs["query_language"]) | set(pairs["passage_language"])),
            "global_step": train_output.global_step,
            "train_loss": train_output.training_loss,
            "train_seconds": round(train_seconds, 1),
            "num_processes": state.num_processes,
            "resumed": bool(resume),
            "eval_pool": describe_pool(arguments, after),
            "before": before,
            "after": after,
            "merged": None,
        }
        write_model_card(arguments, model_dir, results, model, pairs)
        if arguments.merge.merge_ratio is not None:
            results["merged"] = merge_and_evaluate(arguments, model, evaluator, results, pairs)
        write_json(output_dir / "results.json", results)
        if after:
            print(
                f"\n{arguments.evaluation.eval_name} ({results['eval_pool']}): {batches.strategy} "
                f"(alpha={batches.alpha}), {train_output.global_step} steps"
            )
            print(format_table(_columns(results)))
        if training.push_to_hub:
            publish(arguments, output_dir / ("model-merged" if results["merged"] else "model"))
    wait_for_everyone()
    return results


def describe_pool(arguments: Arguments, report: dict | None) -> str | None:
    """The evaluation pool in words: how many queries, candidates and languages, and whether a subset."""
    if not report:
        return None
    if (report.get("pool") or {}).get(
        "description"
    ):  # e.g. the Tatoeba held-out pool, named by the evaluator
        return report["pool"]["description"]
    subset = arguments.evaluation.eval_max_articles
    return (
        f"{report['num_queries']} queries x {report['num_candidates']} candidates, {len(report['languages'])} "
        f"languages, {f'subset: first {subset} articles per language' if subset else 'full pool'}"
    )


def _columns(results: dict) -> dict[str, dict | None]:
    columns = {"before (zero-shot)": results["before"], "after (fine-tuned)": results["after"]}
    if results["merged"]:
        columns[f"merged r={results['merged']['ratio']:g}"] = results["merged"]["after"]
    return columns


def merge_and_evaluate(arguments: Arguments, model, evaluator, results: dict, pairs) -> dict:
    """Save ``model-merged/``, (1 - r)·base + r·fine-tuned; evaluate it; write its card (it says it is a merge)."""
    from st_hybrid.merge import save_merged

    ratio = arguments.merge.merge_ratio
    merged_dir = arguments.output_dir / "model-merged"
    merged = save_merged(arguments.model.model, model, ratio, merged_dir)
    after = evaluate_into(evaluator, merged, arguments.output_dir / "eval" / "merged") if evaluator else None
    merged_results = {"ratio": ratio, "path": str(merged_dir), "after": after}
    write_model_card(arguments, merged_dir, {**results, "merged": merged_results}, merged, pairs, merged=True)
    return merged_results


def publish(arguments: Arguments, model_dir: Path) -> None:
    from st_hybrid.hub import publish_model

    training = arguments.training
    # The card written above (with this repo id in its usage snippet) is uploaded as is.
    published = publish_model(
        model_dir,
        training.hub_model_id,
        private=bool(training.hub_private_repo),
        revision=training.hub_revision,
    )
    print(f"Pushed to {published.url} ({model_dir.name}/)")


def write_model_card(
    arguments: Arguments, model_dir: Path, results: dict, model, pairs, merged: bool = False
) -> None:
    """README.md (+ heatmap and metrics) in a saved model folder: sentence-transformers' card plus ours.

    ``model`` (in memory, right after training) carries the trainer's record: training logs, hyperparameters,
    dataset statistics. A merged model's card says it is a merge, and of what.
    """
    from st_hybrid.model_card import ModelCardInfo, load_report
    from st_hybrid.model_card import write_model_card as render

    batches, training, evaluation = arguments.batches, arguments.training, arguments.evaluation
    info = ModelCardInfo(
        base_model=arguments.model.base_model_name or arguments.model.model,
        base_model_path=arguments.model.model if Path(arguments.model.model).is_dir() else None,
        strategy=batches.strategy,
        alpha=batches.alpha if batches.strategy in ("hybrid", "mixed") else None,
        languages=results["train_languages"],
        language_weighting=batches.language_weighting,
        train_datasets=[Path(source).name for source in arguments.data.train_data],
        query_prefix=arguments.model.query_prompt,
        passage_prefix=arguments.model.passage_prompt,
        num_training_pairs=results["train_pairs"],
        merge_ratio=results["merged"]["ratio"] if merged else None,
        training_notes=hard_negative_notes(results["hard_negatives"])
        if results.get("hard_negatives")
        else None,
    )
    # Report files, not dicts: the card also takes the heatmap beside each; a subset pool is named as one.
    pool = {"max_articles": evaluation.eval_max_articles} if evaluation.eval_max_articles else None

    def reports(stage: str) -> list:
        path = arguments.output_dir / "eval" / stage / f"{evaluation.eval_name}_metrics.json"
        return [load_report(path, pool=pool)] if path.exists() else []

    render(
        model_dir,
        info,
        reports("merged" if merged else "after") if results["after"] else [],
        repo_id=training.hub_model_id,
        model=model,
        baseline_reports=reports("before") if results["before"] else [],
        train_dataset=pairs,
    )


def main(argv: list[str] | None = None) -> dict | None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs each CPU build it tries
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
