"""examples/research/efficiency.py end to end on a tiny model: tables written, caches reused on a re-run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "research"))
import efficiency  # noqa: E402  (examples/research/efficiency.py)


@pytest.fixture(scope="module")
def tiny_run(tiny_model_path, shared_data, tmp_path_factory):
    """Configs for a tiny run: 2 training steps per strategy, 3 languages, one article each."""
    root = tmp_path_factory.mktemp("efficiency")
    train_config = root / "train.yaml"
    train_config.write_text(
        yaml.safe_dump(
            {
                "model": tiny_model_path,
                "train_data": [str(shared_data / "mlqa-r")],
                "train_languages": ["en", "de", "es"],
                "max_train_pairs": 200,
                "batch_size": 8,
                "max_steps": 2,
                "save_steps": 1000,
                "logging_steps": 1,
                "max_seq_length": 32,
            }
        )
    )
    config = root / "efficiency.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "train_config": str(train_config),
                "strategies": ["mono", "hybrid"],
                "eval_data": str(shared_data / "xquad-r"),
                "eval_languages": ["en", "de", "es"],
                "eval_max_articles": 1,
                "depth": 20,
                "latency_single_queries": 5,
                "latency_batch_queries": 20,
                "latency_repeats": 2,
                "scale_copies": 1,
                "throughput_texts": 8,
                "throughput_batch_size": 4,
                "throughput_repeats": 1,
                "backends": ["torch-fp32", "torch-bf16", "torch-int8", "onnx"],
                "backend_quality_max_articles": 1,
                "output_dir": str(root / "out"),
                "doc": str(root / "docs" / "efficiency.md"),
                "img_dir": str(root / "docs" / "img"),
            }
        )
    )
    return config, root


@pytest.mark.slow  # ~25 s: trains two tiny models and runs every experiment twice
def test_efficiency_script_writes_its_tables_and_reuses_caches(tiny_run, monkeypatch):
    config, root = tiny_run
    doc = root / "docs" / "efficiency.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("# Inference efficiency\n\nHand-written answer.\n\n")
    results = efficiency.main(["--config", str(config)])

    text = doc.read_text()
    assert text.startswith("# Inference efficiency\n\nHand-written answer.")  # kept around the markers
    assert efficiency.BEGIN in text and efficiency.END in text
    for heading in (
        "Exact search",
        "Shared index vs per-language",
        "Compressed indexes",
        "IVF cell language purity",
        "synthetic pool",
        "Encode throughput",
    ):
        assert heading in text
    assert "subset: first 1 articles per language" in text  # the pool is named as a subset
    for name in ("layouts", "compression", "throughput"):
        assert (root / "docs" / "img" / f"efficiency_{name}.png").stat().st_size > 1000

    assert list(results["models"]) == ["zero-shot", "mono", "hybrid"]
    for entry in results["models"].values():
        layouts = {row["setup"]: row for row in entry["layouts"]}
        # Exact per-language indexes merged by score rank like the shared exact index; only the order of
        # tied scores may differ (a tiny bf16 model has ties; the exact property is in test_serving.py).
        for metric in ("map@20", "ndcg@10", "recall@20", "rank_distance@20"):
            shared = layouts["shared:flat"][metric]
            assert layouts["per-language:flat:score"][metric] == pytest.approx(shared, rel=1e-3, abs=1e-3)
        # Top-20 lists cannot beat the full-depth ranking of the same embeddings.
        assert layouts["shared:flat"]["map@20"] <= entry["exact"]["multi_map"] + 1e-9
        compression = {row["setup"]: row for row in entry["compression"]}
        assert set(compression) == {
            f"shared:{k}" for k in ("flat", "sq8", "hnsw", "ivf_flat", "ivf_pq", "int8", "binary")
        }
        assert (
            compression["shared:binary"]["bytes"] * 32 <= compression["shared:flat"]["bytes"]
        )  # 1 bit vs 32
        assert all(row["p50_ms"] > 0 and row["qps"] > 0 for row in entry["compression"])
    # Fine-tuning moved the trained models away from the zero-shot one.
    assert results["models"]["mono"]["exact"] != results["models"]["zero-shot"]["exact"]

    rows = {row["backend"]: row for row in results["throughput"]["rows"]}
    assert rows["torch-fp32"]["texts_per_s"] > 0
    assert rows["torch-int8"]["min_cosine_to_reference"] > 0.5
    assert "skipped" in rows["onnx"] or rows["onnx"]["texts_per_s"] > 0  # optimum is not a dependency
    assert results["scale"]["num_vectors"] == 2 * results["num_candidates"]

    # A second run reuses every model, embedding and experiment: nothing is trained, encoded or searched.
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed although the inputs are unchanged")

    monkeypatch.setattr(efficiency.train, "run", refuse)
    monkeypatch.setattr(efficiency, "load_backend", refuse)
    monkeypatch.setattr(efficiency, "evaluate_setups", refuse)
    monkeypatch.setattr(efficiency, "scale_experiment", refuse)
    again = efficiency.main(["--config", str(config)])
    assert again["models"] == results["models"]
    assert doc.read_text().count(efficiency.BEGIN) == 1


def test_synthetic_pool_keeps_the_real_rows_and_adds_unit_copies():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((30, 8)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    pool = efficiency.synthetic_pool(real, copies=3, noise=0.02)
    assert pool.shape == (120, 8)
    np.testing.assert_array_equal(pool[:30], real)
    np.testing.assert_allclose(np.linalg.norm(pool, axis=1), 1.0, atol=1e-5)
    # Each copy stays close to its source row.
    assert np.all(np.sum(pool[30:60] * real, axis=1) > 0.9)


def test_bad_settings_are_refused_with_the_valid_choices(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("layouts: [shared:annoy]\n")
    with pytest.raises(SystemExit, match="Bad setup 'shared:annoy'"):
        efficiency.load_settings(config)
    config.write_text("depht: 100\n")
    with pytest.raises(SystemExit, match=r"Unknown keys \['depht'\]"):
        efficiency.load_settings(config)


def test_ivf_language_purity_is_one_for_language_clusters_and_low_for_mixed_ones():
    rng = np.random.default_rng(0)
    settings = efficiency.Settings()
    centers = np.eye(16, dtype=np.float32)[:2] * 10
    languages = np.array(["en", "de"] * 200)
    clustered = centers[(languages == "de").astype(int)] + rng.standard_normal((400, 16)).astype(np.float32)
    clustered /= np.linalg.norm(clustered, axis=1, keepdims=True)
    assert efficiency.ivf_language_purity(clustered, languages, settings) == 1.0
    mixed = rng.standard_normal((400, 16)).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    assert efficiency.ivf_language_purity(mixed, languages, settings) < 0.8
