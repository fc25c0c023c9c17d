"""Training throughput: HybridTrainer + HybridBatchSampler vs the stock trainer with its default sampler.

Both train the same model on the same MLQA-R pairs with the same loss and batch size; the only
difference is the batch sampler (and HybridTrainer's metadata handling). Runs alternate between the
two and repeat, and the median steps/s of each is compared. Target: ratio >= 0.98.

Usage:
    python benchmarks/train_throughput.py                      # tiny random BERT (sampler overhead shows most)
    python benchmarks/train_throughput.py --model PATH --steps 15 --repeats 2   # e.g. multilingual-e5-small
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mlqa-r"


def _args(output_dir: str, batch_size: int, steps: int, **extra):
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        **extra,
    )


def steps_per_second(kind: str, model_path: str, pairs, batch_size: int, steps: int) -> float:
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from st_hybrid import HybridBatchSampler, HybridTrainer
    from st_hybrid.data import METADATA_COLUMNS

    model = SentenceTransformer(model_path)
    loss = MultipleNegativesRankingLoss(model)
    with tempfile.TemporaryDirectory() as out:
        if kind == "hybrid":
            trainer = HybridTrainer(
                model=model,
                args=_args(out, batch_size, steps),
                train_dataset=pairs,
                loss=loss,
                batch_sampler=HybridBatchSampler,
            )
        else:
            text_only = pairs.remove_columns([c for c in METADATA_COLUMNS if c in pairs.column_names])
            trainer = SentenceTransformerTrainer(
                model=model, args=_args(out, batch_size, steps), train_dataset=text_only, loss=loss
            )
        start = time.perf_counter()
        trainer.train()
        return steps / (time.perf_counter() - start)


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", help="sentence-transformers model folder or Hub id (default: tiny random BERT)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--steps", type=int, default=120
    )  # 30-step runs (~1.5 s) were dominated by setup noise
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from st_hybrid.data import build_training_pairs, load_lareqa
    from st_hybrid.testing import build_tiny_model

    model_path = args.model or build_tiny_model(Path(tempfile.gettempdir()) / "st-hybrid-bench-tiny")
    pairs = build_training_pairs(load_lareqa(DATA), cross_partners=2)
    print(
        f"model={model_path} pairs={len(pairs)} batch={args.batch_size} steps={args.steps} repeats={args.repeats}"
    )

    rates: dict[str, list[float]] = {"default": [], "hybrid": []}
    steps_per_second("default", model_path, pairs, args.batch_size, 2)  # warm-up: imports, kernels
    for repeat in range(args.repeats):
        order = ("default", "hybrid") if repeat % 2 == 0 else ("hybrid", "default")  # cancel drift
        for kind in order:
            rates[kind].append(steps_per_second(kind, model_path, pairs, args.batch_size, args.steps))
            print(f"  repeat {repeat} {kind:<8} {rates[kind][-1]:.2f} steps/s")
    default, hybrid = statistics.median(rates["default"]), statistics.median(rates["hybrid"])
    ratio = hybrid / default
    print(f"median steps/s: default sampler {default:.2f}, HybridBatchSampler {hybrid:.2f}")
    print(
        f"ratio hybrid/default = {ratio:.3f} (target >= 0.98) -> {'OK' if ratio >= 0.98 else 'BELOW TARGET'}"
    )
    return ratio


if __name__ == "__main__":
    main()
