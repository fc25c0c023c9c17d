"""examples/train.py and reproduce.py on bad input (issue 8, sections 3 and 4).

- Every config value is checked before anything expensive runs (the model is never loaded: these runs
  name a model that does not exist, so reaching it would fail with a different error).
- Cached results (the zero-shot evaluation, reproduce's grid cells) are keyed by what they depend on
  and recomputed, with a log line, when that changes.
- A used output folder is refused unless --resume or --overwrite, a --resume with other settings is
  refused, and refusing changes nothing on disk.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TRAIN, REPRODUCE = EXAMPLES / "train.py", EXAMPLES / "reproduce.py"
sys.path.insert(0, str(EXAMPLES))
import train  # noqa: E402  (examples/train.py)

MISSING_MODEL = "/nonexistent/model-that-must-not-be-loaded"


def _run(script: Path, *flags: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(script), *map(str, flags)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def _tiny_run_flags(model: str, output_dir: Path, shared_data: Path, *extra: str) -> list[str]:
    return [
        *("--model", model, "--output_dir", output_dir),
        *("--train_data", shared_data / "mlqa-r", "--train_languages", "en", "de", "es"),
        *("--max_train_pairs", "300", "--batch_size", "8", "--max_steps", "2", "--save_steps", "2"),
        *("--eval_data", shared_data / "xquad-r", "--eval_max_articles", "1", "--eval_batch_size", "32"),
        *("--max_seq_length", "32", "--seed", "3"),
        *extra,
    ]


# ---------------------------------------------------------------------------------------------
# Config checks before anything expensive
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--strategy", "hybird"], "Unknown strategy 'hybird'"),
        (["--alpha", "1.5"], "alpha must be in [0, 1]"),
        (["--alpha", "-0.1"], "alpha must be in [0, 1]"),
        (["--language_weighting", "sized"], "Unknown language_weighting 'sized'"),
        (["--loss", "mnrll"], "Unknown loss 'mnrll'"),
        (["--merge_ratio", "1.5"], "merge_ratio must be in [0, 1]"),
        (["--train_languages", "e!"], "not language codes"),
        (["--resume", "--overwrite"], "pick one"),
        (["--lr_scheduler_type", "cosinus"], "invalid choice: 'cosinus'"),
    ],
)
def test_bad_config_value_fails_at_parse_time(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit):
        train.parse_args(["--model", MISSING_MODEL, "--output_dir", str(tmp_path / "run"), *flags])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--train_languages", "en", "xx"], "['xx'] are not in"),
        (["--eval_languages", "en", "xx"], "['xx'] are not in"),
    ],
)
def test_language_missing_from_the_data_fails_before_the_model_is_loaded(
    tmp_path, shared_data, flags, message
):
    out = tmp_path / "run"
    data = ["--train_data", str(shared_data / "mlqa-r"), "--eval_data", str(shared_data / "xquad-r")]
    arguments = train.parse_args(["--model", MISSING_MODEL, "--output_dir", str(out), *data, *flags])
    with pytest.raises((ValueError, SystemExit)) as error:  # a model load would raise OSError naming the path
        train.run(arguments)
    assert message in str(error.value) and MISSING_MODEL not in str(error.value)
    assert not (out / "eval").exists() and not (out / "model").exists()


def test_language_missing_from_parallel_data_is_named_before_loading(tmp_path):
    rows = [
        {"parallel_id": f"p{i}", "language": lang, "question": f"q{i} {lang}", "answer": f"a{i} {lang}"}
        for i in range(20)
        for lang in ("en", "de")
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    flags = ["--model", MISSING_MODEL, "--output_dir", str(tmp_path / "run"), "--eval_data", "null"]
    arguments = train.parse_args([*flags, "--train_data", str(data), "--train_languages", "en", "fr"])
    with pytest.raises(SystemExit, match=r"train_languages \['fr'\] are not in the training data"):
        train.run(arguments)


@pytest.mark.parametrize("spelling", [["de"], ["[de]"], ["de,"]])
def test_one_language_is_a_list_of_one_not_of_letters(tmp_path, spelling):
    """`--train_languages de` (and its YAML form `train_languages: de`) means ['de'], never ['d', 'e']."""
    arguments = train.parse_args(["--output_dir", str(tmp_path), "--train_languages", *spelling])
    assert arguments.data.train_languages == ["de"]
    config = tmp_path / "one.yaml"
    config.write_text("train_languages: de\neval_languages: en\n")
    arguments = train.parse_args(["--config", str(config), "--output_dir", str(tmp_path)])
    assert arguments.data.train_languages == ["de"] and arguments.evaluation.eval_languages == ["en"]


def test_unknown_yaml_key_is_named(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("strategy: hybrid\nlerning_rate: 1.0e-4\n")
    with pytest.raises(SystemExit):
        train.parse_args(["--config", str(config)])
    err = capsys.readouterr().err
    assert "Unknown config keys ['lerning_rate']" in err and str(config) in err and "learning_rate" in err


# ---------------------------------------------------------------------------------------------
# Outputs are never stale or clobbered
# ---------------------------------------------------------------------------------------------
def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_used_output_dir_is_refused_and_left_untouched(tiny_model_path, shared_data, tmp_path):
    out = tmp_path / "run"
    flags = _tiny_run_flags(tiny_model_path, out, shared_data, "--evaluate_before", "false")
    train.run(train.parse_args(list(map(str, flags))))
    before = _files(out)

    second = train.parse_args([*map(str, flags), "--strategy", "mono"])
    with pytest.raises(SystemExit, match="already holds a run") as refusal:
        train.run(second)
    assert "--resume" in str(refusal.value) and "--overwrite" in str(refusal.value)
    assert _files(out) == before  # the saved model, checkpoints and results are untouched

    # --resume continues a run only with its settings (evaluation and run length may change).
    other = train.parse_args([*map(str, flags), "--strategy", "mono", "--learning_rate", "1e-3", "--resume"])
    with pytest.raises(SystemExit, match=r"other settings: \['learning_rate', 'strategy'\]"):
        train.run(other)
    assert _files(out) == before


def test_zero_shot_cache_follows_model_and_languages(tiny_model_path, shared_data, tmp_path, caplog):
    """eval/before is reused only for the same model files and evaluation inputs; otherwise recomputed."""
    from sentence_transformers import SentenceTransformer

    model_dir = tmp_path / "base"
    SentenceTransformer(tiny_model_path).save(str(model_dir))
    out = tmp_path / "run"

    def run(*languages: str, overwrite: bool = True) -> dict:
        flags = _tiny_run_flags(str(model_dir), out, shared_data, "--eval_languages", *languages)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="st_hybrid.io"):
            return train.run(train.parse_args([*map(str, flags), *(["--overwrite"] if overwrite else [])]))

    first = run("en", "de", overwrite=False)
    assert set(first["before"]["languages"]) == {"en", "de"} and "Recomputing" not in caplog.text
    run("en", "de")
    assert "Reusing zero-shot evaluation" in caplog.text and "Recomputing" not in caplog.text

    other = run("en", "es")  # other languages: recomputed, and the log says why
    assert "Recomputing zero-shot evaluation" in caplog.text and "eval_languages" in caplog.text
    assert set(other["before"]["languages"]) == set(other["after"]["languages"]) == {"en", "es"}

    # The base model replaced in place (same path, other weights): recomputed.
    model = SentenceTransformer(str(model_dir))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05)
    model.save(str(model_dir))
    replaced = run("en", "es")
    assert "Recomputing zero-shot evaluation" in caplog.text and "(model)" in caplog.text
    assert replaced["before"]["metrics"] != other["before"]["metrics"]


def _reproduce_config(tmp_path: Path, model: str, shared_data: Path, eval_languages: str) -> Path:
    config = tmp_path / "grid.yaml"
    config.write_text(
        f"model: {model}\nmax_seq_length: 32\ntrain_data: [{shared_data / 'mlqa-r'}]\n"
        "train_languages: [en, de]\nmax_train_pairs: 200\nbatch_size: 8\nmax_steps: 2\nsave_steps: 100\n"
        f"eval_data: {shared_data / 'xquad-r'}\neval_languages: {eval_languages}\neval_max_articles: 1\n"
        f"output_dir: {tmp_path / 'grid'}\n"
    )
    return config


@pytest.mark.slow
def test_reproduce_recomputes_zero_shot_and_cells_when_their_inputs_change(
    tiny_model_path, shared_data, tmp_path
):
    grid = ["--strategies", "mono", "--seeds", "1", "--merge-ratios", "0.5"]
    config = _reproduce_config(tmp_path, tiny_model_path, shared_data, "[en, de]")
    _run(REPRODUCE, "--config", config, *grid)
    cell = tmp_path / "grid" / "mono" / "seed1"
    assert set(json.loads((cell / "results.json").read_text())["after"]["languages"]) == {"en", "de"}

    again = _run(REPRODUCE, "--config", config, *grid)
    assert "Recomputing" not in again.stderr and again.stderr.count("Reusing") >= 3  # zero-shot, cell, merge

    config = _reproduce_config(tmp_path, tiny_model_path, shared_data, "[en, es]")
    changed = _run(REPRODUCE, "--config", config, *grid)
    assert "Recomputing zero-shot evaluation" in changed.stderr
    assert "Recomputing grid cell mono" in changed.stderr
    zero_shot = json.loads((tmp_path / "grid" / "zero_shot" / "xquad-r_metrics.json").read_text())
    assert set(zero_shot["languages"]) == {"en", "es"}
    assert set(json.loads((cell / "results.json").read_text())["after"]["languages"]) == {"en", "es"}
    merged = json.loads((cell / "merged" / "r0.5" / "xquad-r_metrics.json").read_text())
    assert set(merged["languages"]) == {"en", "es"}
