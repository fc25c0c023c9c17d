"""examples/research/size.py: the model-size ladder (research question 3), on tiny random models.

The ladder holds three families on purpose, as the real one does: a BERT encoder, an mT5 encoder and a
static-embedding model (no transformer, no length limit, its embedding table is the whole model).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "research"))
import common  # noqa: E402  (examples/research/common.py)
import size  # noqa: E402  (examples/research/size.py)

from st_hybrid.testing import build_tiny_model, build_tiny_static_model  # noqa: E402


def _config(tmp_path: Path, models: list[tuple[str, str, str]], shared_data: Path, strategies: str) -> Path:
    entries = "".join(
        f"    - {{model: {path}, name: {name}{', ' + extra if extra else ''}}}\n"
        for path, name, extra in models
    )
    config = tmp_path / "size.yaml"
    config.write_text(
        f"research:\n  models:\n{entries}  strategies: {strategies}\n  seeds: [1]\n"
        f"max_seq_length: 32\ntrain_data: [{shared_data / 'mlqa-r'}]\ntrain_languages: [en, de, es]\n"
        "max_train_pairs: 300\nbatch_size: 8\nmax_steps: 2\nsave_steps: 100\nlearning_rate: 1.0e-3\n"
        f"eval_data: {shared_data / 'xquad-r'}\neval_languages: [en, de]\neval_max_articles: 1\n"
        f"output_dir: {tmp_path / 'ladder'}\n"
    )
    return config


def test_parameters_are_counted_from_the_files_without_loading(tiny_model_path):
    model = SentenceTransformer(tiny_model_path)
    assert size.count_parameters(Path(tiny_model_path)) == sum(p.numel() for p in model.parameters())


def test_each_model_keeps_its_own_stored_prompts(tmp_path):
    with_prompts = build_tiny_model(
        tmp_path / "p", prompts={"query": "task: q | ", "document": "title: none | "}
    )
    assert common.stored_prompts(with_prompts) == {
        "query_prompt": "task: q | ",
        "passage_prompt": "title: none | ",
    }
    assert common.stored_prompts(build_tiny_model(tmp_path / "none")) == {
        "query_prompt": "",
        "passage_prompt": "",
    }
    assert common.stored_prompts("google/mt5-small") == {}  # a Hub id: train.py's prompts apply


def test_a_ladder_without_models_is_refused(tmp_path, shared_data):
    config = _config(tmp_path, [], shared_data, "[hybrid]")
    with pytest.raises(SystemExit, match="research.models must be a list of mappings"):
        size.settings(size.parse_args(["--config", str(config)]))


@pytest.mark.slow
def test_ladder_of_three_families_writes_tables_plots_and_docs_then_reuses_every_run(
    tmp_path, tiny_model_path, shared_data, caplog
):
    mt5 = build_tiny_model(tmp_path / "tiny-mt5", architecture="mt5")
    static = build_tiny_static_model(tmp_path / "tiny-static", tiny_model_path)
    models = [
        (static, "tiny-static", "family: static, overrides: {freeze_embeddings: false, learning_rate: 0.2}"),
        (tiny_model_path, "tiny-bert", "family: BERT"),
        (mt5, "tiny-mt5", "family: mT5 encoder"),
    ]
    config = _config(tmp_path, models, shared_data, "[hybrid, mono]")
    docs = tmp_path / "docs"
    argv = ["--config", str(config), "--docs-dir", str(docs)]
    with caplog.at_level(logging.INFO):
        results = size.main(argv)

    assert list(results) == ["tiny-static", "tiny-bert", "tiny-mt5"]
    for name, model in results.items():
        assert set(model["reports"]) == {"zero-shot", "hybrid", "mono"}, name
        assert model["parameters"] == sum(p.numel() for p in SentenceTransformer(model["path"]).parameters())
        trained = SentenceTransformer(model["runs"]["hybrid"][0]["output_dir"] + "/model")
        assert type(trained[0]).__name__ == type(SentenceTransformer(model["path"])[0]).__name__
    static_zero, static_hybrid = (
        results["tiny-static"]["reports"][k][0]["metrics"] for k in ("zero-shot", "hybrid")
    )
    assert static_zero != static_hybrid  # the embedding table trained (lr 0.2, not frozen)

    text = (docs / "size.md").read_text()
    for name in ("tiny-static (static)", "tiny-bert (BERT)", "tiny-mt5 (mT5 encoder)"):
        for setting in ("zero-shot", "hybrid", "mono"):
            assert f"| {name} | " in text and f" | {setting} | " in text
    assert text.count("| query language | seen in training |") == 3
    assert "| en | yes |" in text and "| de | yes |" in text
    assert "6 of 6 training runs trained now" in text
    for image in ("size_trend.png", "size_per_language.png"):
        assert (docs / "img" / image).stat().st_size > 10_000

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ladder").glob("*/*/seed1/results.json")}
    assert len(stamps) == 6
    caplog.clear()
    with caplog.at_level(logging.INFO):
        size.main(argv)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert "Recomputing" not in caplog.text and caplog.text.count("Reusing grid cell") == 6
    assert "0 of 6 training runs trained now, 6 read back from cache" in (docs / "size.md").read_text()

    size.main([*argv, "--render-only"])
    text = (docs / "size.md").read_text()
    assert "0 of 6 training runs trained now" in text and "--render-only" not in text
