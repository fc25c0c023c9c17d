"""Benchmark: HybridBatchSampler vs sentence-transformers' samplers on 1M pairs / 250 languages.

One run, side by side on the same synthetic pairs (shaped like ``build_training_pairs`` with
``cross_partners=2``: per parallel id and language one mono row and two cross rows):

* ``DefaultBatchSampler`` over a ``RandomSampler`` (what the trainer uses by default): full epoch.
* ``NoDuplicatesBatchSampler`` plain and with ``precompute_hashes=True`` (on the text columns, as the
  trainer would see them): a fixed number of batches, extrapolated to the epoch (said in the output),
  plus the hashing time of the precomputed variant.
* ``HybridBatchSampler`` (hybrid, alpha 0.5): index build time (reading the metadata and text columns,
  the positive groups, the pools), a full epoch, and peak traced memory of build + epoch (tracemalloc,
  a separate untimed run).
* Positive groups on real data (``../shared/data``, full sets, pairs from ``build_training_pairs`` with
  its defaults): how many parallel ids the grouping joined to another id (shared answer sentence or
  text) and the largest group, for XQuAD-R, MLQA-R and Tatoeba (skipped with ``--no-real-data``).

Targets: epoch <= 2x DefaultBatchSampler, >= 10x faster than NoDuplicatesBatchSampler, build < 2 s.

Usage:
    python benchmarks/sampler.py                       # 1M rows, 250 languages, batch 100
    python benchmarks/sampler.py --ids 40 --nodup-batches 50   # a quick smoke run
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler, NoDuplicatesBatchSampler
from torch.utils.data import RandomSampler

from st_hybrid.data import build_training_pairs, load_lareqa, load_tatoeba
from st_hybrid.sampler import HybridBatchSampler, PairMetadata
from st_hybrid.trainer import split_metadata

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def synthetic_pairs(num_ids: int, num_languages: int, seed: int = 0) -> Dataset:
    """num_ids x num_languages x 3 rows: a mono pair and two cross pairs per (id, language)."""
    rng = np.random.default_rng(seed)
    languages = np.array([f"x{i:03d}" for i in range(num_languages)])
    ids = np.repeat(np.arange(num_ids), num_languages * 3)
    query = np.tile(np.repeat(np.arange(num_languages), 3), num_ids)
    shift = np.zeros((num_ids * num_languages, 3), dtype=np.int64)
    first = rng.integers(1, num_languages, size=len(shift))
    second = rng.integers(1, num_languages - 1, size=len(shift))
    shift[:, 1], shift[:, 2] = first, np.where(second >= first, second + 1, second)  # two distinct partners
    passage = (query + shift.ravel()) % num_languages
    return Dataset.from_dict(
        {
            "query": [f"question {i} in {languages[q]}" for i, q in zip(ids.tolist(), query.tolist())],
            "passage": [f"answer {i} in {languages[p]}" for i, p in zip(ids.tolist(), passage.tolist())],
            "query_language": languages[query].tolist(),
            "passage_language": languages[passage].tolist(),
            "parallel_id": ids.astype(str).tolist(),
        }
    )


def real_data_groups(data: Path = SHARED_DATA) -> dict[str, dict]:
    """Positive-group statistics of the training pairs built from XQuAD-R, MLQA-R and Tatoeba."""
    loaders = {
        "xquad-r": lambda: load_lareqa(data / "xquad-r"),
        "mlqa-r": lambda: load_lareqa(data / "mlqa-r"),
        "tatoeba": lambda: load_tatoeba(data / "tatoeba"),
    }
    stats = {}
    for name, load in loaders.items():
        pairs = build_training_pairs(load())
        start = time.perf_counter()
        stats[name] = PairMetadata.from_dataset(pairs).group_stats()
        stats[name]["grouping_s"] = time.perf_counter() - start
    return stats


def time_epoch(sampler, max_batches: int | None = None) -> tuple[float, int, bool]:
    """Seconds for an epoch (or for the first max_batches, extrapolated), batches timed, extrapolated?

    When extrapolating, the first batch (which carries the per-epoch set-up) counts once and the
    average of the following batches stands for the rest of the epoch.
    """
    iterator = iter(sampler)
    start = time.perf_counter()
    next(iterator)
    first = time.perf_counter() - start
    count = 1 + sum(1 for _ in itertools.islice(iterator, None if max_batches is None else max_batches - 1))
    elapsed = time.perf_counter() - start
    total = len(sampler)
    if max_batches is not None and count < total:
        return first + (elapsed - first) / (count - 1) * (total - 1), count, True
    return elapsed, count, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=1334, help="parallel ids (x languages x 3 rows)")
    parser.add_argument("--languages", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--nodup-batches", type=int, default=200, help="NoDuplicates batches timed, then extrapolated"
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of N for the hybrid and default timings")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--no-real-data", action="store_true", help="skip the XQuAD-R / MLQA-R / Tatoeba groups"
    )
    options = parser.parse_args()

    start = time.perf_counter()
    pairs = synthetic_pairs(options.ids, options.languages)
    print(f"data: {len(pairs):,} rows, {options.languages} languages, batch size {options.batch_size} "
          f"(built in {time.perf_counter() - start:.1f} s)")  # fmt: skip
    texts, _ = split_metadata(pairs)
    batch = options.batch_size
    results: dict[str, dict] = {}

    # HybridBatchSampler: build (metadata read + pools) and one full epoch.
    # Cheap timings take the best of --repeat runs (the machine is shared); each run is a new epoch.
    builds, epochs = [], []
    for repeat in range(options.repeat):
        start = time.perf_counter()
        hybrid = HybridBatchSampler(pairs, batch, True, seed=0, num_processes=1, metadata=pairs)
        builds.append(time.perf_counter() - start)
        hybrid.set_epoch(repeat)
        epoch, count, _ = time_epoch(hybrid)
        epochs.append(epoch)
    results["hybrid"] = {"build_s": min(builds), "epoch_s": min(epochs), "batches": count}

    # Peak traced memory of build + epoch (separate run: tracemalloc slows allocation down).
    tracemalloc.start()
    sampler = HybridBatchSampler(pairs, batch, True, seed=0, num_processes=1, metadata=pairs)
    sampler.set_epoch(1)
    for _ in sampler:
        pass
    results["hybrid"]["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    del sampler
    # The whole process so far (data set, arrow buffers, sampler), for scale.
    results["process_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    generator = torch.Generator().manual_seed(0)
    default = DefaultBatchSampler(RandomSampler(texts, generator=generator), batch_size=batch, drop_last=True)
    timings = [time_epoch(default) for _ in range(options.repeat)]
    results["default"] = {"epoch_s": min(t[0] for t in timings), "batches": timings[0][1]}

    nodup = NoDuplicatesBatchSampler(texts, batch, True, generator=generator, seed=0)
    epoch, count, extrapolated = time_epoch(nodup, options.nodup_batches)
    results["no_duplicates"] = {"epoch_s": epoch, "batches": count, "extrapolated": extrapolated}

    start = time.perf_counter()
    hashed = NoDuplicatesBatchSampler(texts, batch, True, generator=generator, seed=0, precompute_hashes=True)
    hashed._build_hashes()  # otherwise done lazily by the first __iter__; timed apart from the epoch
    hashing = time.perf_counter() - start
    epoch, count, extrapolated = time_epoch(hashed, options.nodup_batches)
    results["no_duplicates_hashed"] = {
        "hash_s": hashing, "epoch_s": epoch, "batches": count, "extrapolated": extrapolated,
    }  # fmt: skip

    print(f"\n{'sampler':<34}{'epoch (s)':>12}{'batches timed':>16}  note")
    h = results["hybrid"]
    print(f"{'HybridBatchSampler (hybrid)':<34}{h['epoch_s']:>12.3f}{h['batches']:>16,}  "
          f"build {h['build_s']:.3f} s, peak {h['peak_mib']:.0f} MiB traced (build + epoch); "
          f"process max RSS {results['process_max_rss_mib']:.0f} MiB incl. the data")  # fmt: skip
    print(f"{'DefaultBatchSampler(RandomSampler)':<34}{results['default']['epoch_s']:>12.3f}"
          f"{results['default']['batches']:>16,}")  # fmt: skip
    for name, label in (
        ("no_duplicates", "NoDuplicatesBatchSampler"),
        ("no_duplicates_hashed", "  precompute_hashes=True"),
    ):
        r = results[name]
        note = f"extrapolated from {r['batches']} of {len(hybrid):,} batches" if r["extrapolated"] else ""
        if "hash_s" in r:
            note += f"; + {r['hash_s']:.1f} s hashing"
        print(f"{label:<34}{r['epoch_s']:>12.3f}{r['batches']:>16,}  {note}")

    ratios = {
        "hybrid_vs_default": h["epoch_s"] / results["default"]["epoch_s"],
        "no_duplicates_vs_hybrid": results["no_duplicates"]["epoch_s"] / h["epoch_s"],
        "no_duplicates_hashed_vs_hybrid": results["no_duplicates_hashed"]["epoch_s"] / h["epoch_s"],
        "hybrid_build_plus_epoch_vs_default": (h["epoch_s"] + h["build_s"]) / results["default"]["epoch_s"],
    }
    results["ratios"] = ratios
    print("\nratios (same run):")
    print(f"  hybrid epoch / default epoch:             {ratios['hybrid_vs_default']:.2f}x  (target <= 2x)")
    print(f"  (hybrid build + epoch) / default epoch:   {ratios['hybrid_build_plus_epoch_vs_default']:.2f}x")
    print(
        f"  no_duplicates / hybrid:                   {ratios['no_duplicates_vs_hybrid']:.1f}x faster  (target >= 10x)"
    )
    print(
        f"  no_duplicates_hashed / hybrid:            {ratios['no_duplicates_hashed_vs_hybrid']:.1f}x faster  (target >= 10x)"
    )
    print(f"  hybrid build:                             {h['build_s']:.2f} s  (target < 2 s)")
    if not options.no_real_data:
        results["positive_groups"] = real_data_groups()
        print("\npositive groups of build_training_pairs(...) on the full sets (../shared/data):")
        print(f"{'data':<10}{'rows':>9}{'ids':>8}{'groups':>8}{'ids joined':>12}{'largest (ids / rows)':>22}")
        for name, g in results["positive_groups"].items():
            print(f"{name:<10}{g['rows']:>9,}{g['ids']:>8,}{g['groups']:>8,}{g['ids_joined']:>12,}"
                  f"{g['largest_group_ids']:>13} / {g['largest_group_rows']}")  # fmt: skip
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(
                {"rows": len(pairs), "languages": options.languages, "batch_size": batch, **results},
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
