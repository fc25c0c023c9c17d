"""A real 2-process run (accelerate launch, gloo on CPU) through HybridTrainer: disjoint, same-type steps."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from st_hybrid.sampler import HybridBatchSampler

SCRIPT = Path(__file__).parent / "scripts" / "ddp_hybrid_batches.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(model: str, out: Path, strategy: str, steps: int, *extra: str) -> list[dict]:
    command = [
        str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2",
        "--main_process_port", str(free_port()),
        str(SCRIPT), "--model", model, "--out", str(out), "--strategy", strategy, "--steps", str(steps), *extra,
    ]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


@pytest.mark.slow
def test_two_processes_get_disjoint_same_type_steps(tiny_model_path, tmp_path):
    """One ~25 s launch (hybrid); the other strategies are covered by the simulated BatchSamplerShard tests."""
    strategy = "hybrid"
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from ddp_hybrid_batches import synthetic_pairs
    finally:
        sys.path.pop(0)
    pairs = synthetic_pairs()
    ql, pl = np.asarray(pairs["query_language"]), np.asarray(pairs["passage_language"])
    pid = np.asarray(pairs["parallel_id"])

    steps = 8  # 96 rows / (2 x 8) = 6 steps per epoch: the run crosses into epoch 1
    logs = launch(tiny_model_path, tmp_path / "out", strategy, steps)

    for rank, log in enumerate(logs):
        assert log["rank"] == rank and log["world_size"] == 2
        assert log["sampler_num_processes"] == 2  # detected from the distributed state
        assert log["steps"] == steps and len(log["batches"]) == steps
        assert all(len(batch) == 8 for batch in log["batches"])
        assert all(np.isfinite(log["losses"]))

    kinds_seen = set()
    for step, (b0, b1) in enumerate(zip(logs[0]["batches"], logs[1]["batches"])):
        rows = np.array(b0 + b1)
        assert len(set(rows)) == 16, f"step {step}: shards overlap"
        assert len(set(pid[rows])) == 16, (
            f"step {step}: a parallel id is in both shards (gather would see it)"
        )
        kinds = {
            "mono" if (ql[b] == pl[b]).all() else "cross" if (ql[b] != pl[b]).all() else "x" for b in (b0, b1)
        }
        assert len(kinds) == 1 and "x" not in kinds, f"step {step}: {kinds}"
        if kinds == {"mono"}:
            assert len(set(ql[rows])) == 1  # one language for the whole step
        kinds_seen |= kinds
    assert kinds_seen == {"mono", "cross"}

    # The ranks together trained on exactly the sequence a local sampler with W=2 plans for epochs 0 and 1.
    local = HybridBatchSampler(pairs, 8, True, seed=5, strategy=strategy, num_processes=2, metadata=pairs)
    expected = local.plan_epoch(0)[0].tolist() + local.plan_epoch(1)[0].tolist()
    interleaved = [batch for step in zip(logs[0]["batches"], logs[1]["batches"]) for batch in step]
    assert interleaved == expected[: 2 * steps]


@pytest.mark.slow
def test_two_process_resume_after_an_epoch_boundary_continues_the_sequence(tiny_model_path, tmp_path):
    """Two ~25 s launches. 6 steps per epoch; checkpoint-8 lies in epoch 1, so resuming skips 2 steps of it.

    Before HybridTrainer set the sampler's epoch itself, the resumed epoch replayed epoch 0's order: after
    skip_first_batches the sampler sits under SkipBatchSampler -> BatchSamplerShard, out of set_epoch's reach.
    """
    steps = 10
    full = launch(tiny_model_path, tmp_path / "full", "hybrid", steps, "--save-steps", "8")
    checkpoint = tmp_path / "full" / "trainer" / "checkpoint-8"
    assert checkpoint.is_dir()
    resumed = launch(tiny_model_path, tmp_path / "resumed", "hybrid", steps, "--resume-from", str(checkpoint))
    for rank in range(2):
        assert full[rank]["steps_run"] == steps and resumed[rank]["steps_run"] == steps - 8
        assert resumed[rank]["batches"] == full[rank]["batches"][8:], f"rank {rank}"
    # Sanity: the interrupted epoch's order differs from epoch 0's (else the test could not fail).
    assert full[0]["batches"][8:10] != full[0]["batches"][2:4]
