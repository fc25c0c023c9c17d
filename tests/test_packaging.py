"""The built wheel works outside the source checkout (issue 8, section 7).

What this proves: a wheel built from the checkout (``pip wheel --no-build-isolation``, i.e. with the pinned
setuptools>=77 that the PEP 639 ``license`` string needs) and installed non-editable into a fresh virtual
environment carries everything st-hybrid reads at run time: the card templates (found through
``importlib.resources``), the ``evaluate`` metric folder (its ``metrics.py`` symlink packaged as a real file), the
license file and the ``st-hybrid`` console script. The fresh venv has no pip and sees the project venv's
site-packages only through a ``.pth`` line, so the project's *editable* install (a ``.pth`` hook in that
site-packages, only processed in real site dirs) is not active there: every ``st_hybrid`` import resolves to the
installed wheel, which the child process asserts. Everything runs offline.

It does not prove that the declared dependency ranges resolve from PyPI (the dependencies come from the project
venv), nor anything about other platforms or Python versions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
from importlib.resources import files
from pathlib import Path

import st_hybrid
from st_hybrid import model_card
from st_hybrid.model_card import ModelCardInfo, find_template, write_model_card
from st_hybrid.testing import build_tiny_model

prefix, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
checks = {"package": st_hybrid.__file__, "template": str(find_template("model_card.md"))}

model = build_tiny_model(out / "tiny")
report = {"name": "xquad-r", "languages": ["de", "en"], "num_queries": 10, "num_candidates": 12,
          "metrics": {"mono_map": 0.5, "multi_map": 0.25}, "per_language": {}}
readme = write_model_card(model, ModelCardInfo(base_model="intfloat/multilingual-e5-small",
                                               languages=["de", "en"]), [report])
checks["card"] = readme.read_text()

import evaluate

folder = files("st_hybrid").joinpath("evaluate_metric", "language_aware_retrieval")
metric = evaluate.load(str(folder))
checks["metric_module"] = sys.modules[type(metric).__module__].__file__
checks["metric"] = metric.compute(
    predictions=[[0.9, 0.1, 0.8, 0.2], [0.3, 0.7, 0.6, 0.1]], references=[[0, 2], [1, 3]],
    query_languages=["en", "de"], candidate_languages=["en", "en", "de", "de"])
checks["metric_folder"] = str(folder)
checks["prefix"] = str(prefix)
print("RESULT" + json.dumps(checks, default=float))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """Build the wheel and install it (no dependencies, non-editable) into a fresh pip-less venv."""
    root = tmp_path_factory.mktemp("packaging")
    wheels = root / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, cwd=root, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("st_hybrid-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())  # fmt: skip
    # The dependencies (torch, sentence-transformers, ...) come from the project venv, without its .pth hooks.
    (site / "project_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, cwd=root, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    return {"root": root, "venv": venv, "python": python, "wheel": wheel}


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "ST_HYBRID"))}
    env.update(
        TMPDIR=str(root), HF_HUB_OFFLINE="1", HF_HOME=str(root / "hf-home"), TOKENIZERS_PARALLELISM="false"
    )
    return env


def test_wheel_holds_license_templates_and_metric_files(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert "st_hybrid/templates/model_card.md" in names and "st_hybrid/templates/hybrid_sections.md" in names
    assert "st_hybrid/evaluate_metric/language_aware_retrieval/metrics.py" in names  # the symlink, as a file
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    metadata = (
        zipfile.ZipFile(installed["wheel"])
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    assert "License-Expression: Apache-2.0" in metadata and "Requires-Dist: pyarrow" in metadata


@pytest.mark.slow
def test_installed_wheel_renders_a_card_loads_the_metric_and_runs_the_cli(installed):
    root, venv = installed["root"], installed["venv"]
    work = root / "outside-checkout"
    work.mkdir()
    script = work / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run(
        [str(installed["python"]), str(script), str(venv), str(work)],
        capture_output=True, text=True, cwd=work, env=_env(root), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    checks = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[6:])
    prefix = str(venv.resolve())
    for key in ("package", "template", "metric_folder"):
        assert checks[key].startswith(prefix), (key, checks[key])  # the wheel, not the checkout
    assert not checks["package"].startswith(str(ROOT))
    card = checks["card"]
    assert "## Hybrid batch training (st-hybrid)" in card and "## Model Details" in card
    assert "### Framework Versions" in card and "license: mit" in card
    assert checks["metric"]["multi_map"] == pytest.approx(0.875)

    cli = subprocess.run([str(venv / "bin" / "st-hybrid"), "--help"], capture_output=True, text=True, cwd=work,
                         env=_env(root), timeout=120)  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "publish" in cli.stdout and "card" in cli.stdout
