"""examples/research/mixing.py: the alpha sweep of hybrid vs mixed batches (research question 1).

The end-to-end run uses a tiny random model and tiny slices of the shared data: its numbers are
meaningless, but the grid, the shared alpha = 0 endpoint, the tables, the plot, the docs block and the
cache (a second run trains nothing) are the real ones.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "research"))
import common  # noqa: E402  (examples/research/common.py)
import mixing  # noqa: E402  (examples/research/mixing.py)


def _config(tmp_path: Path, model: str, shared_data: Path, research: str) -> Path:
    config = tmp_path / "mixing.yaml"
    config.write_text(
        f"research:\n{research}"
        f"model: {model}\nmax_seq_length: 32\ntrain_data: [{shared_data / 'mlqa-r'}]\n"
        "train_languages: [en, de, es]\nmax_train_pairs: 300\nbatch_size: 8\nmax_steps: 2\nsave_steps: 100\n"
        f"eval_data: {shared_data / 'xquad-r'}\neval_languages: [en, de]\neval_max_articles: 1\n"
        f"output_dir: {tmp_path / 'grid'}\n"
    )
    return config


SWEEP = "  alphas: [0, 0.5, 1]\n  seeds: [1, 2]\n  merge_ratios: [0.5]\n  merge_alphas: [0.5]\n"


def test_cells_share_the_alpha_zero_endpoint_and_run_a_whole_sweep_per_seed(tmp_path):
    sweep = {
        "strategies": ["hybrid", "mixed"],
        "alphas": [0.0, 0.5, 1.0],
        "seeds": [1, 2],
        "merge_ratios": [0.5],
        "merge_alphas": [0.5],
    }
    cells = mixing.build_cells(sweep, tmp_path)
    labels = [cell.label for cell in cells]
    # alpha 0 once per seed (both strategies draw only cross rows there); alpha 1 differs, so twice.
    assert labels[:5] == [mixing.SHARED, "hybrid a=0.5", "mixed a=0.5", "hybrid a=1", "mixed a=1"]
    assert labels[5:] == labels[:5]  # seed 2 after the whole sweep of seed 1
    assert [cell.overrides["seed"] for cell in cells] == [1] * 5 + [2] * 5
    assert cells[0].overrides["alpha"] == 0 and cells[0].overrides["output_dir"].endswith(
        "cross_only_a0/seed1"
    )
    assert {cell.merge_ratios for cell in cells if "0.5" in cell.label} == {(0.5,)}
    assert all(cell.merge_ratios == () for cell in cells if "0.5" not in cell.label)


def test_only_differences_beyond_the_summed_seed_spread_are_named():
    def row(**metrics):
        return {m: {"mean": v[0], "std": v[1], "n": 3} for m, v in metrics.items()}

    same = {"cross_map": (0.7, 0.01), "rank_distance": (80.0, 2.0)}
    summary = {
        "hybrid a=0.5": row(mono_map=(0.77, 0.004), multi_map=(0.57, 0.010), **same),
        "mixed a=0.5": row(mono_map=(0.74, 0.005), multi_map=(0.56, 0.010), **same),
    }
    sweep = {"alphas": [0.5], "strategies": ["hybrid", "mixed"], "merge_ratios": [], "merge_alphas": []}
    assert mixing.real_differences(summary, sweep) == ["alpha 0.5: mono mAP +0.0300"]
    table = mixing.hybrid_vs_mixed(summary, sweep)
    assert "| hybrid a=0.5 − mixed a=0.5 | +0.0300 ** | +0.0000 | +0.0100 | +0.0 |" in table


def test_bad_sweep_settings_are_refused_with_the_config_named(tmp_path, tiny_model_path, shared_data):
    config = _config(tmp_path, tiny_model_path, shared_data, "  alphas: [0, 1.5]\n")
    with pytest.raises(SystemExit, match=r"mixing.yaml.*alphas in \[0, 1\] \(got \[1.5\]\)"):
        mixing.settings(mixing.parse_args(["--config", str(config)]))
    config.write_text(config.read_text() + "not_an_option: 1\n")
    with pytest.raises(SystemExit, match=r"unknown keys \['not_an_option'\]"):
        common.load_config(config)


@pytest.mark.slow
def test_sweep_writes_tables_plot_and_docs_then_reuses_every_cell(
    tmp_path, tiny_model_path, shared_data, caplog
):
    config = _config(tmp_path, tiny_model_path, shared_data, SWEEP)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "mixing.md").write_text(
        f"# Q1\n\nOur answer, written by hand.\n\n{common.BEGIN}\nold\n{common.END}\n"
    )
    argv = ["--config", str(config), "--docs-dir", str(docs)]
    with caplog.at_level(logging.INFO):
        summary = mixing.main(argv)

    rows = ["hybrid = mixed a=0", "hybrid a=0.5", "mixed a=0.5", "hybrid a=1", "mixed a=1"]
    rows += ["hybrid a=0.5 r=0.5", "mixed a=0.5 r=0.5"]
    assert set(summary) == {"zero-shot", *rows}
    assert all(summary[row]["multi_map"]["n"] == 2 for row in rows)  # two seeds each
    grid = tmp_path / "grid"
    assert sorted(p.name for p in grid.iterdir() if p.is_dir()) == [
        "cross_only_a0", "hybrid_a0.5", "hybrid_a1", "mixed_a0.5", "mixed_a1", "zero_shot",
    ]  # fmt: skip
    text = (docs / "mixing.md").read_text()
    assert text.startswith("# Q1\n\nOur answer, written by hand.") and "\nold\n" not in text
    for row in rows:
        assert f"| {row} | " in text
    assert "| hybrid a=1 − mixed a=1 |" in text and "| hybrid a=0.5 r=0.5 − mixed a=0.5 r=0.5 |" in text
    assert "148 queries x 43 candidates, 2 languages, subset: first 1 articles per language" in text
    assert "10 of 10 training runs trained now" in text
    assert (docs / "img" / "mixing_alpha.png").stat().st_size > 10_000

    results = sorted(grid.glob("*/seed*/results.json"))
    assert len(results) == 10
    stamps = [path.stat().st_mtime_ns for path in results]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = mixing.main(argv)
    assert again == summary
    assert [path.stat().st_mtime_ns for path in results] == stamps
    assert "Recomputing" not in caplog.text and caplog.text.count("Reusing grid cell") == 10
    assert "0 of 10 training runs trained now, 10 read back from cache" in (docs / "mixing.md").read_text()

    # --render-only rewrites the docs from the stored results: the last run's command and timing, no training.
    mixing.main([*argv, "--render-only"])
    text = (docs / "mixing.md").read_text()
    assert "0 of 10 training runs trained now" in text and "--render-only" not in text
    assert [path.stat().st_mtime_ns for path in results] == stamps


# -- the strategy comparison (research.compare): reuses the sweep's trained runs -----------------------
COMPARE = (
    "  compare:\n    mono: {strategy: hybrid, alpha: 1}\n    cross: {strategy: hybrid, alpha: 0}\n"
    "    hybrid: {strategy: hybrid, alpha: 0.5}\n    mixed: {strategy: mixed, alpha: 0.5}\n"
)


def test_compare_cells_are_the_sweeps_runs_with_the_same_overrides(tmp_path):
    sweep = {
        "strategies": ["hybrid", "mixed"],
        "alphas": [0.0, 0.5, 1.0],
        "seeds": [1, 2],
        "merge_ratios": [0.25, 0.5],
        "merge_alphas": [],
        "compare": {
            "mono": {"strategy": "hybrid", "alpha": 1.0},
            "cross": {"strategy": "mixed", "alpha": 0.0},  # alpha 0 is the shared run, trained as hybrid
            "hybrid": {"strategy": "hybrid", "alpha": 0.5},
            "mixed": {"strategy": "mixed", "alpha": 0.5},
        },
    }
    sweep_runs = {(c.overrides["output_dir"]): c.overrides for c in mixing.build_cells(sweep, tmp_path)}
    cells = mixing.compare_cells(sweep, tmp_path)
    assert [c.label for c in cells] == ["mono", "cross", "hybrid", "mixed"] * 2
    for cell in cells:  # the same overrides as the sweep's run in that folder: the same cache key
        assert cell.overrides == sweep_runs[cell.overrides["output_dir"]]
        assert cell.merge_ratios == (0.25, 0.5)
    assert cells[1].overrides["output_dir"].endswith("cross_only_a0/seed1")
    assert cells[1].overrides["strategy"] == "hybrid"
    assert cells[0].overrides["output_dir"].endswith("hybrid_a1/seed1")


def test_strategies_config_trains_with_exactly_the_mixing_configs_options():
    research, options = common.load_config(ROOT / "examples/configs/research_strategies_cpu.yaml")
    _, mixing_options = common.load_config(ROOT / "examples/configs/research_mixing_cpu.yaml")
    assert options == mixing_options  # otherwise every run's cache key changes and all 12 runs retrain
    assert research["train"] is False and set(research["compare"]) == {"mono", "cross", "hybrid", "mixed"}


def test_best_ratio_pareto_verdict_and_difference_rows():
    def row(mono, cross, multi, rank, std=0.01):
        values = {"mono_map": mono, "cross_map": cross, "multi_map": multi, "rank_distance": rank}
        return {
            m: {"mean": v, "std": std if m != "rank_distance" else 1.0, "n": 3} for m, v in values.items()
        }

    summary = {
        "zero-shot": {**row(0.80, 0.70, 0.40, 140), **{}},
        "hybrid": row(0.75, 0.70, 0.57, 70),
        "hybrid r=0.5": row(0.79, 0.74, 0.59, 68),  # best mean mAP of hybrid
        "mono": row(0.76, 0.69, 0.50, 90),
        "mono r=0.5": row(0.78, 0.72, 0.52, 85),
    }
    rows = mixing.ratio_rows(summary, ["hybrid", "mono"], [0.5])
    assert list(rows) == ["zero-shot", "hybrid r=0.5", "hybrid r=1", "mono r=0.5", "mono r=1"]
    assert mixing.best_ratios(rows, ["hybrid", "mono"]) == {"hybrid": "hybrid r=0.5", "mono": "mono r=0.5"}
    lines, verdict = mixing.pareto_verdict(mixing.strategy_curves(rows, ["hybrid", "mono"]))
    # hybrid r=0.5 beats every mono point on both axes; zero-shot keeps the best mono mAP.
    assert verdict == {"multi_map": ["hybrid r=0.5"], "rank_distance": ["hybrid r=0.5"]}
    assert (
        lines[0]
        == "- mono mAP vs multi mAP: the front is zero-shot, hybrid r=0.5; hybrid is on it (hybrid r=0.5)."
    )
    # Given the spread: no row beats hybrid r=0.5 beyond it on one axis without losing beyond it on the other.
    lines, _ = mixing.pareto_verdict(mixing.strategy_curves(rows, ["hybrid", "mono"]), "hybrid", rows)
    assert lines[0].endswith("No row beats hybrid r=0.5 beyond the seed spread.")
    # mono r=0.5 a hair worse on mono mAP (within the spread), far better on multi mAP: hybrid stays on the
    # front of the seed means, but only within the noise.
    summary["mono r=0.5"] = row(0.7899, 0.74, 0.65, 68)
    rows = mixing.ratio_rows(summary, ["hybrid", "mono"], [0.5])
    lines, verdict = mixing.pareto_verdict(mixing.strategy_curves(rows, ["hybrid", "mono"]), "hybrid", rows)
    assert verdict["multi_map"] == ["hybrid r=0.5"]
    assert "hybrid r=0.5 is beaten: mono r=0.5 is better on multi mAP beyond the spread" in lines[0]
    summary["mono r=0.5"] = row(0.80, 0.75, 0.60, 60)  # now mono dominates every hybrid point
    rows = mixing.ratio_rows(summary, ["hybrid", "mono"], [0.5])
    _, verdict = mixing.pareto_verdict(mixing.strategy_curves(rows, ["hybrid", "mono"]))
    assert verdict == {"multi_map": [], "rank_distance": []}


def _copy_data(shared_data: Path, target: Path) -> Path:
    """The slices of MLQA-R / XQuAD-R the tiny config reads, copied so their modification times can change."""
    import shutil

    for name, languages in (("mlqa-r", ["en", "de", "es"]), ("xquad-r", ["en", "de"])):
        (target / name).mkdir(parents=True)
        for language in languages:
            shutil.copy2(shared_data / name / f"{language}.json", target / name / f"{language}.json")
    return target


@pytest.mark.slow
def test_strategy_comparison_reuses_the_sweeps_runs_even_after_the_data_is_recopied(
    tmp_path, tiny_model_path, shared_data, caplog
):
    data = _copy_data(shared_data, tmp_path / "data")
    sweep = "  alphas: [0, 0.5, 1]\n  seeds: [1, 2]\n  merge_ratios: []\n"
    config = _config(tmp_path, tiny_model_path, data, sweep)
    docs = tmp_path / "docs"
    mixing.main(["--config", str(config), "--docs-dir", str(docs)])  # the sweep: 10 runs trained
    results = sorted((tmp_path / "grid").glob("*/seed*/results.json"))
    stamps = [path.stat().st_mtime_ns for path in results]

    compare = _config(
        tmp_path, tiny_model_path, data, sweep.replace("[]", "[0.5]") + "  train: false\n" + COMPARE
    )
    compare = compare.rename(tmp_path / "strategies.yaml")
    argv = ["--config", str(compare), "--docs-dir", str(docs)]
    with caplog.at_level(logging.INFO):
        summary = mixing.main(argv)
    assert [path.stat().st_mtime_ns for path in results] == stamps  # nothing retrained
    assert caplog.text.count("Reusing grid cell") == 8 and "Recomputing" not in caplog.text
    names = ["mono", "cross", "hybrid", "mixed"]
    assert set(summary) == {"zero-shot", *names, *(f"{n} r=0.5" for n in names)}
    assert all(summary[f"{n} r=0.5"]["multi_map"]["n"] == 2 for n in names)
    assert len(list((tmp_path / "grid").glob("*/seed*/merged/r0.5/*_metrics.json"))) == 8
    text = (docs / "strategies.md").read_text()
    assert "SUBSET" in text and "**Each strategy at its best ratio**" in text
    assert "| hybrid r=1 − mono r=1 |" in text and "hybrid is " in text
    for image in ("strategies_pareto.png", "strategies_merge_curves.png"):
        assert (docs / "img" / image).stat().st_size > 10_000
    assert "| mono r=0.5 | " in (tmp_path / "grid" / "strategies.md").read_text()

    # The data folders re-copied (same bytes, new modification times): still the same runs, nothing retrains.
    for file in data.rglob("*.json"):
        os.utime(file, ns=(file.stat().st_atime_ns, file.stat().st_mtime_ns + 10**9))
    assert {entry["state"] for entry in mixing.main([*argv, "--dry-run"])} == {"reused"}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = mixing.main(argv)
    assert [path.stat().st_mtime_ns for path in results] == stamps
    assert "Recomputing" not in caplog.text
    assert {k: v["multi_map"]["mean"] for k, v in again.items()} == pytest.approx(
        {k: v["multi_map"]["mean"] for k, v in summary.items()}
    )
    # A changed data file is a changed input: the runs would train, and train: false refuses.
    victim = next(data.rglob("en.json"))
    victim.write_text(victim.read_text() + "\n")
    with pytest.raises(SystemExit, match=r"research.train is false, but 8 runs would train"):
        mixing.main(argv)
