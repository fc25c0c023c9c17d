"""examples/research/languages.py: its data plan (pure functions) and one end-to-end run on a tiny random model.

The end-to-end run uses MLQA-R and XQuAD-R from ../shared/data (one article) and a small Tatoeba folder cut from
the real files, so that every code path (MLQA-R-only counts, MLQA-R plus Tatoeba bitext, mono mapped onto its
MLQA-R-only cell, the merge, nested pools, the sampler statistics) runs in well under a minute.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "research" / "languages.py"
spec = importlib.util.spec_from_file_location("research_languages", SCRIPT)
research = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = research
spec.loader.exec_module(research)

TATOEBA_LANGUAGES = ("deu", "fra", "rus", "tha")


def _small_tatoeba(shared_data: Path, folder: Path, lines: int = 60) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for code in TATOEBA_LANGUAGES:
        for side in (code, "eng"):
            source = shared_data / "tatoeba" / f"tatoeba.{code}-eng.{side}"
            text = source.read_text(encoding="utf-8").splitlines()[:lines]
            (folder / source.name).write_text("\n".join(text) + "\n", encoding="utf-8")
    return folder


def test_training_languages_grow_from_mlqa_to_tatoeba_counting_each_language_once():
    config = research.ResearchConfig(mlqa_languages=["en", "de", "es"])
    order = ["deu", "fra", "rus", "spa", "tha"]
    assert research.training_languages(2, config, order) == {
        "mlqa": ["en", "de"],
        "tatoeba": [],
        "languages": ["de", "en"],
    }
    four = research.training_languages(4, config, order)
    # deu and spa are MLQA-R languages (de, es): their bitext comes first and adds no language.
    assert four["tatoeba"] == ["deu", "spa", "fra"]
    assert four["languages"] == ["de", "en", "es", "fra"]
    assert research.training_languages(6, config, order)["tatoeba"] == ["deu", "spa", "fra", "rus", "tha"]
    with pytest.raises(SystemExit, match="7 languages asked for, the data has 6"):
        research.training_languages(7, config, order)


def test_mono_beyond_mlqa_is_its_mlqa_only_cell(tmp_path):
    config = research.ResearchConfig(mlqa_languages=["en", "de", "es"], counts=[2, 5], seeds=[1, 2])
    cells = research.plan_cells(config, ["deu", "fra", "rus"], tmp_path)
    assert [cell.count for cell in cells][:: 3 * 2] == [2, 5]
    extremes_first = research.ResearchConfig(mlqa_languages=["en", "de", "es"], counts=[3, 5, 2], seeds=[1])
    assert [cell.count for cell in research.plan_cells(extremes_first, ["deu", "fra", "rus"], tmp_path)][::3] == [
        2, 5, 3,
    ]  # fmt: skip
    mono = [cell for cell in cells if cell.strategy == "mono" and cell.count == 5]
    assert [cell.folder for cell in mono] == [tmp_path / "mono_L3" / "seed1", tmp_path / "mono_L3" / "seed2"]
    assert all(cell.same_as == 3 and cell.data["tatoeba"] == [] for cell in mono)
    hybrid = next(cell for cell in cells if cell.strategy == "hybrid" and cell.count == 5)
    overrides = research.cell_overrides(hybrid, config)
    assert overrides["tatoeba_split"] == "train" and overrides["single_source"] is True
    assert overrides["train_languages"] == ["en", "de", "es", "deu", "fra", "rus"]


def test_slope_per_doubling_is_the_least_squares_slope():
    points = [{"num_languages": n, "map": 0.9 - 0.05 * math.log2(n)} for n in (1, 2, 4, 8)]
    assert research.slope_per_doubling(points, "map") == pytest.approx(-0.05)
    assert math.isnan(research.slope_per_doubling(points[:1], "map"))


def test_unknown_research_keys_name_the_valid_ones(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"train": {}, "research": {"countz": [2]}}))
    with pytest.raises(SystemExit, match="unknown research keys \\['countz'\\]"):
        research.load_config(config)


# ---------------------------------------------------------------------------------------------
# examples/train.py on Tatoeba's train side, evaluated on its held-out side
# ---------------------------------------------------------------------------------------------
def _train_args(tmp_path, **overrides):
    return research.train.parse_args([], overrides={"output_dir": str(tmp_path / "run"), **overrides})


def test_train_side_pairs_share_no_text_with_the_held_out_pool(shared_data, tmp_path):
    tatoeba = str(shared_data / "tatoeba")
    args = _train_args(
        tmp_path,
        train_data=[str(shared_data / "mlqa-r"), tatoeba],
        train_languages=["en", "de", "deu", "fra"],  # each source keeps the codes it has
        tatoeba_split="train",
        single_source=True,
        eval_data=tatoeba,
        eval_max_per_language=50,
    )
    pairs = research.train.build_pairs(args)
    assert set(pairs["query_language"]) == {"en", "de", "eng", "deu", "fra"}
    assert pairs.unique("source") == ["mlqa-r+tatoeba"]  # one source: hybrid keeps alpha over both
    assert all(pairs["answer_id"])  # Tatoeba rows get one too (MLQA-R's have theirs)
    evaluator = research.train.build_evaluator(args)
    texts = set(pairs["query"]) | set(pairs["passage"])
    assert texts.isdisjoint(evaluator.query_texts) and texts.isdisjoint(evaluator.candidate_texts)
    research.train.check_no_leakage(pairs, evaluator)
    # Every Tatoeba line is on one side: the train side's bitext plus the full held-out side is the whole file.
    from st_hybrid.data import split_tatoeba

    _, held_out = split_tatoeba(tatoeba, languages=["deu", "fra"])
    trained = {text for text, source in zip(pairs["query"], pairs["query_language"], strict=True)
               if source in ("deu", "fra")}  # fmt: skip
    file_lines = set((shared_data / "tatoeba" / "tatoeba.deu-eng.deu").read_text().splitlines())
    held_out_deu = {
        t for t, lang in zip(held_out["question"], held_out["language"], strict=True) if lang == "deu"
    }
    assert {line for line in file_lines if line in trained or line in held_out_deu} == file_lines
    # Training on the whole folder and evaluating on its held-out side is refused (shared text).
    whole = _train_args(tmp_path, train_data=[tatoeba], train_languages=["deu"], eval_data=tatoeba)
    with pytest.raises(SystemExit, match="also appear in the evaluation set"):
        research.train.check_no_leakage(
            research.train.build_pairs(whole), research.train.build_evaluator(whole)
        )


def test_tatoeba_options_are_checked_and_leave_other_runs_inputs_unchanged(shared_data, tmp_path):
    with pytest.raises(SystemExit, match="tatoeba_split='train' applies to a Tatoeba folder"):
        research.train.build_pairs(
            _train_args(tmp_path, train_data=[str(shared_data / "mlqa-r")], tatoeba_split="train")
        )
    with pytest.raises(SystemExit):
        _train_args(tmp_path, tatoeba_split="test")
    with pytest.raises(SystemExit):
        _train_args(tmp_path, eval_tatoeba_direction="x-x")
    with pytest.raises(SystemExit, match="train_languages \\['xx'\\] are not in the training data"):
        research.train.build_pairs(_train_args(tmp_path, train_languages=["en", "xx"]))
    # Runs that do not use the new options keep their cache keys (cached cells and evaluations stay valid).
    plain = _train_args(tmp_path)
    assert not {"tatoeba_split", "single_source", "eval_max_per_language"} & set(
        research.train.run_inputs(plain)["options"]
    )
    assert "tatoeba" not in research.train.evaluation_inputs(plain, "model")
    tatoeba = _train_args(tmp_path, eval_data=str(shared_data / "tatoeba"), eval_max_per_language=5)
    assert research.train.evaluation_inputs(tatoeba, "model")["tatoeba"]["max_per_language"] == 5


def test_train_script_evaluates_on_the_tatoeba_held_out_pool(tiny_model_path, shared_data, tmp_path):
    tatoeba = str(shared_data / "tatoeba")
    args = _train_args(
        tmp_path, model=tiny_model_path, train_data=[tatoeba], train_languages=["deu", "fra"],
        tatoeba_split="train", strategy="cross", batch_size=4, max_steps=2, max_seq_length=32,
        save_steps=1000, eval_data=tatoeba, eval_name="tatoeba", eval_max_per_language=10,
        eval_languages=["deu", "fra"],
    )  # fmt: skip
    results = research.train.run(args)
    assert (
        results["after"]["num_candidates"] == 20
        and results["before"]["pool"]["config"] == "tatoeba-held-out-eng-x"
    )
    assert results["eval_pool"].startswith(
        "Tatoeba held-out split (test_fraction 0.2, seed 0), at most 10 pairs"
    )
    assert "multi_mrr@1" in results["after"]["metrics"]
    assert "Tatoeba held-out" in (tmp_path / "run" / "model" / "README.md").read_text()


@pytest.mark.slow
def test_research_languages_end_to_end_and_resumed_from_its_cache(
    tiny_model_path, shared_data, tmp_path, monkeypatch
):
    tatoeba = _small_tatoeba(shared_data, tmp_path / "tatoeba")
    config = {
        "train": {
            "model": tiny_model_path,
            "max_seq_length": 32,
            "batch_size": 4,
            "max_steps": 2,
            "learning_rate": 1.0e-4,
            "save_steps": 1000,
            "logging_steps": 1,
            "eval_batch_size": 32,
            "output_dir": str(tmp_path / "out"),
        },
        "research": {
            "mlqa": str(shared_data / "mlqa-r"),
            "mlqa_languages": ["en", "de", "es"],
            "tatoeba": str(tatoeba),
            "counts": [2, 4],
            "seeds": [1],
            "xquad": str(shared_data / "xquad-r"),
            "xquad_max_articles": 1,
            "xquad_pools": [1, 2, 4, 11],
            "tatoeba_max_per_language": 5,
            "tatoeba_pools": [1, 2, 4],
            "weightings": [{"language_weighting": "uniform"}, {"language_weighting": "size"}],
        },
    }
    config_file = tmp_path / "research.yaml"
    config_file.write_text(yaml.safe_dump(config))
    docs = tmp_path / "docs"
    argv = ["--config", str(config_file), "--docs-dir", str(docs)]

    results = research.main(argv)
    document = (docs / "languages.md").read_text()
    assert "Status: **complete**" in document
    for count in (2, 4):
        for strategy in ("mono", "cross", "hybrid"):
            assert f"L={count} {strategy}" in results["rows"]
            assert f"| {count} | {strategy}" in document
    assert "| 4 | mono (= L=3: bitext adds no same-language pairs)" in document
    assert "| 4 | hybrid merged r=0.5 |" in document
    assert document.count("| – | zero-shot |") == 2  # XQuAD-R and Tatoeba tables
    assert "MLQA-R en,de,es + Tatoeba train side, 2 languages" in document  # deu (= de) and fra
    for image in ("languages_q1.png", "languages_q2.png", "languages_sampler.png"):
        assert (docs / "img" / image).stat().st_size > 0
    # Q2: one encoding per model, its nested pools as points; every line present.
    assert set(results["curves"]) == {"zero-shot", "mono", "cross", "hybrid", "hybrid merged r=0.5"}
    assert [p["num_languages"] for p in results["curves"]["hybrid"]["xquad"]] == [1, 2, 4, 11]
    assert [p["num_languages"] for p in results["curves"]["hybrid"]["tatoeba"]] == [1, 2, 4]
    # Seen / unseen XQuAD-R languages follow the cell's training languages (Tatoeba deu counts as de).
    assert results["rows"]["L=4 hybrid"]["seen"] == ["de", "en", "es"]
    assert results["rows"]["L=2 cross"]["seen"] == ["de", "en"]
    shares = results["sampler"]["weightings"]["uniform"]["share"]
    assert set(shares) == set(TATOEBA_LANGUAGES) and sum(shares.values()) == pytest.approx(1.0)
    first = json.loads((tmp_path / "out" / "invocations.json").read_text())[-1]
    assert (
        first["trained"] == 6 and first["evaluations"] == 8 * 3
    )  # 6 cells + zero-shot + merge, 3 evaluators

    # Answers written by hand survive a re-run; nothing is trained or evaluated again.
    (docs / "languages.md").write_text(
        document.replace(
            document[document.index("<!-- answers -->") : document.index("<!-- /answers -->")],
            "<!-- answers -->\nQ1: written by hand.\n",
        )  # fmt: skip
    )

    def no_training(*args, **kwargs):
        raise AssertionError("a cached cell was trained again")

    monkeypatch.setattr(research.train, "run", no_training)
    again = research.main(argv)
    assert json.dumps(again["rows"]) == json.dumps(results["rows"])  # (NaN-safe comparison)
    second = json.loads((tmp_path / "out" / "invocations.json").read_text())
    assert len(second) == 2 and second[-1]["trained"] == 0 and second[-1]["evaluations"] == 0
    assert "Q1: written by hand." in (docs / "languages.md").read_text()


@pytest.mark.parametrize("name", ["research_languages_cpu.yaml", "research_languages_gpu.yaml"])
def test_shipped_configs_parse(name):
    train_options, config = research.load_config(ROOT / "examples" / "configs" / name)
    # bf16 needs a GPU to parse (transformers checks the device); everything else is checked here.
    args = research.train.parse_args([], overrides={**train_options, "bf16": False})
    assert args.training.max_steps > 0 and set(config.strategies) == set(research.STRATEGIES)
    assert config.counts[-1] == 113 and config.merge_ratio == 0.5
