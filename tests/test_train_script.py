"""examples/train.py end to end: a tiny model through the real script (single process, 2 processes, resume,
TrainingArguments flags, weight merging), its option parsing, and a slow run with the real multilingual-e5-small.

Flags are given in the 0.1 spelling (``--train-languages "[en, de]"``) by ``_flags`` and in the
HfArgumentParser spelling (``--train_languages en de``) by the newer tests: both must keep working."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "train.py"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(TRAIN.parent))
import train  # noqa: E402  (examples/train.py)


def _flags(model: str, output_dir: Path, shared_data: Path, **overrides) -> list[str]:
    settings = {
        "model": model,
        "train_data": f"[{shared_data / 'mlqa-r'}]",
        "train_languages": "[en, de, es]",
        "max_train_pairs": 600,
        "batch_size": 8,
        "max_steps": 6,
        "save_steps": 3,
        "logging_steps": 3,
        "eval_data": str(shared_data / "xquad-r"),
        "eval_languages": "[en, de, es, el]",
        "eval_max_articles": 1,
        "eval_batch_size": 32,
        "max_seq_length": 48,
        "output_dir": str(output_dir),
        "seed": 7,
    }
    settings.update(overrides)
    flags = []
    for key, value in settings.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


def _run(command: list[str], cwd: Path = ROOT, timeout: int = 600, env: dict | None = None) -> str:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def _embeddings(model_dir: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir)).encode(["query: wer war das?", "passage: Paris ist schön."])


def test_train_script_writes_model_metrics_and_card(tiny_model_path, shared_data, tmp_path):
    out = tmp_path / "run"
    log = _run([sys.executable, str(TRAIN), *_flags(tiny_model_path, out, shared_data)])

    results = json.loads((out / "results.json").read_text())
    assert results["global_step"] == 6
    assert results["config"]["strategy"] == "hybrid"
    for stage in ("before", "after"):
        metrics = results[stage]["metrics"]
        assert 0.0 < metrics["multi_map"] <= 1.0
        assert metrics["rank_distance"] >= 0.0
        assert (out / "eval" / stage / "xquad-r_pair_map.png").stat().st_size > 1000
    assert results["before"]["metrics"] != results["after"]["metrics"]  # training moved the model
    assert "multi_map" in log and "before" in log  # the before/after table is printed

    # The model loads with plain sentence-transformers; its card describes the run.
    assert _embeddings(out / "model").shape == (2, 32)
    card = (out / "model" / "README.md").read_text()
    assert "hybrid" in card.lower() and "xquad-r" in card.lower()
    assert f"{results['after']['metrics']['multi_map']:.4f}"[:5] in card

    # Training truncated at 48 tokens; the saved model and the evaluations keep the base model's 64.
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(tiny_model_path).max_seq_length == 64
    assert SentenceTransformer(str(out / "model")).max_seq_length == 64
    assert results["config"]["eval_max_seq_length"] is None  # None: the base model's own limit


def test_resume_continues_the_same_run(tiny_model_path, shared_data, tmp_path):
    """An interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one."""
    full, interrupted = tmp_path / "full", tmp_path / "interrupted"
    common = {"eval_data": "null", "evaluate_before": "false"}
    _run([sys.executable, str(TRAIN), *_flags(tiny_model_path, full, shared_data, **common)])

    # Interrupt after the first checkpoint: stop at step 3, then resume towards step 6.
    _run([sys.executable, str(TRAIN), *_flags(tiny_model_path, interrupted, shared_data, **common)])
    shutil.rmtree(interrupted / "checkpoints" / "checkpoint-6")
    shutil.rmtree(interrupted / "model")
    _run(
        [sys.executable, str(TRAIN), *_flags(tiny_model_path, interrupted, shared_data, **common), "--resume"]
    )

    resumed = json.loads((interrupted / "results.json").read_text())
    assert resumed["resumed"] is True and resumed["global_step"] == 6
    np.testing.assert_allclose(_embeddings(interrupted / "model"), _embeddings(full / "model"), atol=1e-5)


def test_unknown_config_key_names_the_valid_ones(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("strategi: hybrid\n")
    result = subprocess.run(
        [sys.executable, str(TRAIN), "--config", str(config)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode != 0
    assert "Unknown config keys ['strategi']" in result.stderr and "strategy" in result.stderr


def test_push_to_hub_uploads_model_and_card(tiny_model_path, shared_data, tmp_path):
    """--push-to-hub sends the trained model, its card (with this repo id) and the heatmap to the Hub."""
    from hub_server import HubServer  # tests/ is on sys.path (rootdir conftest)

    token = "hf_train_script_secret"
    with HubServer(tokens={token}) as hub:
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": token,
            "HF_HOME": str(tmp_path / "hf"),
        }
        out = tmp_path / "pushed"
        flags = _flags(tiny_model_path, out, shared_data, evaluate_before="false")
        push = ["--push_to_hub", "--hub_model_id", "user/tiny-hybrid"]
        log = _run([sys.executable, str(TRAIN), *flags, *push], env=env)
        files = hub.files("user/tiny-hybrid")
    assert "Pushed to" in log and token not in log
    assert {"model.safetensors", "modules.json", "README.md", "assets/xquad-r_pair_map.png"} <= set(files)
    card = files["README.md"].decode()
    assert 'SentenceTransformer("user/tiny-hybrid")' in card
    assert card == (out / "model" / "README.md").read_text()  # the local card, uploaded as is
    assert token not in card


def test_evaluating_on_training_data_is_refused(tiny_model_path, shared_data, tmp_path):
    flags = _flags(tiny_model_path, tmp_path / "leak", shared_data, train_data=f"[{shared_data / 'xquad-r'}]")
    result = subprocess.run([sys.executable, str(TRAIN), *flags], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    assert "also appear in the evaluation set 'xquad-r'" in result.stderr
    assert not (tmp_path / "leak" / "model").exists()  # refused before training


def test_yaml_flags_and_legacy_spellings_parse_into_the_training_arguments(tmp_path):
    """YAML sets any option by name (ours and TrainingArguments'); flags win; 0.1 spellings still parse."""
    config = tmp_path / "run.yaml"
    config.write_text(
        "strategy: mono\nbatch_size: 12\nlr_scheduler_type: cosine\ntrain_languages: de\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    arguments = train.parse_args(
        ["--config", str(config), "--strategy", "cross", "--push-to-hub", "user/model", "--eval-data", "null"]
    )
    assert arguments.batches.strategy == "cross"  # the flag wins over the YAML
    assert arguments.training.per_device_train_batch_size == 12  # batch_size is short for it
    assert arguments.training.lr_scheduler_type == "cosine"
    assert arguments.data.train_languages == ["de"]  # a bare YAML string is one language
    assert arguments.training.push_to_hub and arguments.training.hub_model_id == "user/model"
    assert arguments.evaluation.eval_data is None
    assert arguments.output_dir == tmp_path / "out"
    assert Path(arguments.training.output_dir) == tmp_path / "out" / "checkpoints"


def test_optional_numbers_take_null_on_the_command_line_as_in_yaml(tmp_path):
    """``cross_partners: null`` (every language pair) works in YAML; the same value works as a flag."""
    base = ["--eval_data", "null", "--output_dir", str(tmp_path)]
    config = tmp_path / "run.yaml"
    config.write_text("cross_partners: 3\nmax_train_pairs: 10\n")
    arguments = train.parse_args(
        [*base, "--config", str(config), "--cross_partners", "null", "--max_train_pairs", "None"]
    )
    assert arguments.data.cross_partners is None and arguments.data.max_train_pairs is None
    assert (
        train.parse_args(
            [*base, "--hard_negatives_relative_margin", "null"]
        ).mining.hard_negatives_relative_margin
        is None
    )
    assert train.parse_args([*base, "--config", str(config)]).data.cross_partners == 3
    with pytest.raises(SystemExit):
        train.parse_args([*base, "--cross_partners", "every"])


def test_training_arguments_flags_reach_the_trainer(tiny_model_path, shared_data, tmp_path):
    """--bf16 --gradient_accumulation_steps 2 --lr_scheduler_type cosine are the arguments the Trainer ran with."""
    out = tmp_path / "flags"
    flags = _flags(tiny_model_path, out, shared_data, eval_data="null", evaluate_before="false")
    extra = [
        "--gradient_accumulation_steps",
        "2",
        "--lr_scheduler_type",
        "cosine",
        "--dataloader_num_workers",
        "0",
    ]
    if (
        torch.backends.cpu.get_cpu_capability() is not None
    ):  # bf16 autocast on CPU (use_cpu, as TrainingArguments asks)
        extra += ["--bf16", "--use_cpu"]
    _run(
        [sys.executable, str(TRAIN), "--config", str(ROOT / "examples/configs/default.yaml"), *flags, *extra]
    )

    # The Trainer saves the arguments it trained with beside every checkpoint.
    used = torch.load(out / "checkpoints" / "checkpoint-6" / "training_args.bin", weights_only=False)
    assert used.gradient_accumulation_steps == 2
    assert used.lr_scheduler_type == "cosine"
    assert used.bf16 and used.use_cpu  # bf16 autocast on CPU: TrainingArguments asks for use_cpu there
    state = json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["train_batch_size"] == 8
    results = json.loads((out / "results.json").read_text())
    assert results["training_arguments"]["gradient_accumulation_steps"] == 2
    assert results["config"]["strategy"] == "hybrid" and results["config"]["freeze_embeddings"] is True


def test_merge_ratio_saves_and_evaluates_the_merged_model(tiny_model_path, shared_data, tmp_path):
    """--merge_ratio 0.5: model-merged/ beside model/, both evaluated, both in results.json; its card says merge."""
    out = tmp_path / "merge"
    log = _run(
        [sys.executable, str(TRAIN), *_flags(tiny_model_path, out, shared_data), "--merge_ratio", "0.5"]
    )

    results = json.loads((out / "results.json").read_text())
    merged = results["merged"]
    assert merged["ratio"] == 0.5 and Path(merged["path"]) == out / "model-merged"
    assert 0.0 < merged["after"]["metrics"]["multi_map"] <= 1.0
    assert (out / "eval" / "merged" / "xquad-r_metrics.json").exists()
    assert "merged r=0.5" in log

    # The merge lies halfway between the base and the fine-tuned weights.
    base, tuned, mixed = (
        _embeddings(Path(p)) for p in (tiny_model_path, out / "model", out / "model-merged")
    )
    assert not np.allclose(mixed, tuned, atol=1e-4) and not np.allclose(mixed, base, atol=1e-4)
    from sentence_transformers import SentenceTransformer

    states = [
        SentenceTransformer(str(p)).state_dict()
        for p in (tiny_model_path, out / "model", out / "model-merged")
    ]
    moved = [
        key
        for key, value in states[1].items()
        if value.is_floating_point() and not value.equal(states[0][key])
    ]
    assert moved  # training changed some weights
    for key in moved:
        torch.testing.assert_close(states[2][key], 0.5 * states[0][key] + 0.5 * states[1][key])
    card = (out / "model-merged" / "README.md").read_text()
    assert "merge" in card.lower() and "0.5" in card


@pytest.mark.slow
def test_train_script_under_accelerate_two_processes(tiny_model_path, shared_data, tmp_path):
    out = tmp_path / "ddp"
    accelerate = [str(VENV_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"]
    _run([*accelerate, str(TRAIN), *_flags(tiny_model_path, out, shared_data, evaluate_before="false")])
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 2
    assert results["global_step"] == 6
    assert 0.0 < results["after"]["metrics"]["multi_map"] <= 1.0
    assert _embeddings(out / "model").shape == (2, 32)


@pytest.mark.slow
def test_train_script_with_real_multilingual_e5_small(shared_data, tmp_path):
    """The real model, a few steps: training moves it and the numbers stay in a sane range."""
    tool = ROOT.parent / "shared" / "tools" / "offline-model"
    model = subprocess.run(
        [str(tool), sys.executable], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = tmp_path / "e5"
    flags = _flags(
        model, out, shared_data, max_steps=3, save_steps=3, batch_size=8, eval_languages="[en, de]"
    )
    _run([sys.executable, str(TRAIN), *flags, "--freeze-embeddings", "true"])
    results = json.loads((out / "results.json").read_text())
    before, after = results["before"]["metrics"], results["after"]["metrics"]
    # Zero-shot e5-small is a real retriever: far above chance on a 1-article pool.
    assert before["mono_map"] > 0.5 and before["multi_map"] > 0.3
    assert abs(after["multi_map"] - before["multi_map"]) < 0.2
    assert after != before


def test_reproduce_pareto_fronts_over_merge_ratios():
    """merge_curves orders each strategy's points r = 0 (zero-shot) .. 1 (trained); the front drops dominated ones."""
    import reproduce  # examples/reproduce.py

    def row(mono, multi, rank_distance):
        metrics = {"mono_map": mono, "cross_map": 0.5, "multi_map": multi, "rank_distance": rank_distance}
        return {metric: {"mean": value, "std": 0.0, "n": 1} for metric, value in metrics.items()}

    summary = {
        "zero-shot": row(0.80, 0.30, 1200),
        "hybrid": row(0.74, 0.52, 400),
        "hybrid r=0.5": row(0.78, 0.54, 370),  # beats the trained model on every column
        "hybrid r=0.3": row(0.79, 0.45, 600),
        "mono": row(0.70, 0.40, 700),
    }
    curves = reproduce.merge_curves(summary)
    assert [p["ratio"] for p in curves["hybrid"]] == [0.0, 0.3, 0.5, 1.0]
    assert [p["ratio"] for p in curves["mono"]] == [0.0, 1.0]
    front = reproduce.pareto_front(curves["hybrid"], "multi_map")
    assert [p["ratio"] for p in front] == [0.0, 0.3, 0.5]  # r = 1 is dominated by r = 0.5
    front = reproduce.pareto_front(curves["hybrid"], "rank_distance")  # lower is better
    assert [p["ratio"] for p in front] == [0.0, 0.3, 0.5]
    table = reproduce.pareto_table(curves)
    assert "| mono | 0, 1 | 0, 1 |" in table
    assert "On the front of all rows (mono vs multi_map): hybrid r=0.3, hybrid r=0.5, zero-shot" in table


def test_static_embedding_model_trains_and_frozen_embeddings_are_refused(
    tiny_model_path, shared_data, tmp_path
):
    """A static model has no length limit to set and no transformer: it trains with freeze_embeddings false,
    and freeze_embeddings true (which would freeze the whole model) is refused with the fix."""
    from st_hybrid.testing import build_tiny_static_model

    static = build_tiny_static_model(tmp_path / "static", tiny_model_path)
    flags = _flags(static, tmp_path / "run", shared_data, max_steps=2, save_steps=2, eval_max_articles=1)
    results = train.main(
        [
            *flags,
            "--freeze_embeddings",
            "false",
            "--learning_rate",
            "0.2",
            "--query_prompt",
            "",
            "--passage_prompt",
            "",
        ]
    )
    assert results["global_step"] == 2
    assert not np.allclose(_embeddings(tmp_path / "run" / "model"), _embeddings(Path(static)))

    with pytest.raises(SystemExit, match="freeze_embeddings: false"):
        train.main(
            [*_flags(static, tmp_path / "frozen", shared_data, max_steps=2), "--freeze_embeddings", "true"]
        )


@pytest.mark.parametrize(
    "name", ["default", "recipe_cpu", "recipe_gemma_cpu", "reproduce_cpu", "reproduce_cpu_quick"]
)
def test_shipped_cpu_configs_parse(name, tiny_model_path, shared_data, monkeypatch):
    """Every CPU config we ship passes train.py's checks as written (a bad key or value would exit)."""
    monkeypatch.chdir(ROOT)  # the configs name ../shared relative to the repository root
    config = ROOT / "examples" / "configs" / f"{name}.yaml"
    arguments = train.parse_args(["--config", str(config), "--model", str(tiny_model_path)])
    assert arguments.model.model == str(tiny_model_path)


def test_loss_directions_reach_the_loss_and_bad_ones_are_refused(tiny_model_path, tmp_path):
    """--loss_directions/--partition_mode build the symmetric loss; a typo exits naming the choices; the default
    adds nothing to a run's inputs (older caches stay valid)."""
    from sentence_transformers import SentenceTransformer

    base = ["--model", str(tiny_model_path), "--output_dir", str(tmp_path / "out"), "--eval_data", "null"]
    symmetric = train.parse_args(
        [*base, "--loss_directions", "query_to_doc,doc_to_query", "--partition_mode", "per_direction"]
    )
    model = SentenceTransformer(str(tiny_model_path))
    loss = train.build_loss(symmetric, model)
    assert loss.directions == ("query_to_doc", "doc_to_query") and loss.partition_mode == "per_direction"
    assert train.run_inputs(symmetric)["options"]["loss_directions"] == ["query_to_doc", "doc_to_query"]

    cached = train.parse_args(
        [*base, "--loss", "cached_mnrl", "--loss-directions", "query_to_doc", "doc_to_query"]
    )
    assert train.build_loss(cached, model).directions == ("query_to_doc", "doc_to_query")

    default = train.parse_args(base)
    assert train.build_loss(default, model).directions == ("query_to_doc",)
    assert "loss_directions" not in train.run_inputs(default)["options"]
    assert "partition_mode" not in train.run_inputs(default)["options"]

    with pytest.raises(SystemExit):
        train.parse_args([*base, "--loss_directions", "query_to_document"])


def test_summary_table_keeps_wide_cells_apart():
    """A rank distance of 449.8 beside 300.9 (-148.9) once printed as '449.8449300.8958': cells must not touch."""
    metrics = {name: 0.5 for name in train.HEADLINE_METRICS}
    before = {"metrics": {**metrics, "rank_distance": 449.8449}}
    merged = {"metrics": {**metrics, "rank_distance": 300.8958}}
    table = train.format_table({"after (fine-tuned)": before, "merged r=0.5": merged, "absent": None})
    row = next(line for line in table.splitlines() if line.startswith("rank_distance"))
    assert row.split() == ["rank_distance", "449.8449", "300.8958", "(-148.9491)"]
    assert "absent" not in table
    lengths = {len(line) for line in table.splitlines()}
    assert len(lengths) == 1, table  # every row as wide as the header: the columns line up
