"""st_hybrid.io: atomic JSON writes and results cached by the hash of their inputs."""

from __future__ import annotations

import json
import logging
import os

import pytest

from st_hybrid import io
from st_hybrid.io import cached_json, content_hash, path_fingerprint, write_json


def test_write_json_replaces_atomically_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    write_json(target, {"map": 0.5})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json(target, {"map": 0.9})
    assert json.loads(target.read_text()) == {"map": 0.5}  # the old report, whole
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_write_json_creates_folders_and_stringifies_paths(tmp_path):
    target = write_json(tmp_path / "a" / "b.json", {"path": tmp_path})
    assert json.loads(target.read_text()) == {"path": str(tmp_path)}


def test_content_hash_ignores_key_order_and_sees_values():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_path_fingerprint_changes_when_a_model_file_is_rewritten(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"1234")
    (model / "README.md").write_text("card")
    first = path_fingerprint(model)
    (model / "README.md").write_text("a new card")  # the card does not change what the model computes
    assert path_fingerprint(model) == first
    (model / "model.safetensors").write_bytes(b"123456")  # retrained in place
    assert path_fingerprint(model) != first
    assert path_fingerprint("intfloat/multilingual-e5-small") == {"id": "intfloat/multilingual-e5-small"}
    assert path_fingerprint(None) is None


def test_path_fingerprint_is_the_content_not_the_copy(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "en.json").write_text('{"a": 1}')
    first = path_fingerprint(data)
    # Re-copied elsewhere, with new modification times: the same bytes are the same data.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "en.json").write_text('{"a": 1}')
    os.utime(copy / "en.json", ns=(1, 10**18))
    assert path_fingerprint(copy) == first
    (copy / "en.json").write_text('{"a": 2}')  # same size, other content
    assert path_fingerprint(copy) != first
    assert path_fingerprint(copy / "en.json") == {
        "files": {"en.json": [8, path_fingerprint(copy)["files"]["en.json"][1]]}
    }


def test_cached_json_reuses_only_results_with_the_same_inputs(tmp_path, caplog):
    result_file = tmp_path / "zero_shot" / "metrics.json"
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return {"map": value}

        return run

    inputs = {"model": "m1", "languages": ["en", "de"]}
    assert cached_json(result_file, inputs, compute(0.5)) == {"map": 0.5}
    assert cached_json(result_file, dict(inputs), compute(0.9)) == {"map": 0.5}
    assert calls == [0.5]

    with caplog.at_level(logging.WARNING, logger="st_hybrid.io"):
        changed = {**inputs, "languages": ["en", "es"]}
        assert cached_json(result_file, changed, compute(0.7), "zero-shot evaluation") == {"map": 0.7}
    assert calls == [0.5, 0.7]
    assert "Recomputing zero-shot evaluation" in caplog.text and "languages" in caplog.text
    assert "model" not in caplog.text.split("changed")[-1]  # only the input that changed is named


def test_cached_json_recomputes_a_result_without_an_inputs_record(tmp_path, caplog):
    result_file = tmp_path / "metrics.json"
    write_json(result_file, {"map": 0.1})  # written by an older version: inputs unknown
    with caplog.at_level(logging.WARNING, logger="st_hybrid.io"):
        assert cached_json(result_file, {"model": "m"}, lambda: {"map": 0.3}) == {"map": 0.3}
    assert "no record of the inputs" in caplog.text
    assert os.path.exists(tmp_path / "metrics.inputs.json")
