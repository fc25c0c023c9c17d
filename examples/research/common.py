"""Shared plumbing of the research scripts (examples/research/*.py): configs, offline models, result docs.

A research config is a ``train.py`` YAML config (every key a training option) plus one ``research:``
mapping with the script's own settings (the grid). Models may be given as ``offline-model:NAME``: the
folder that ``../shared/tools/offline-model PYTHON NAME`` builds (no Hub access needed), or as any Hub
id or local folder. The grid itself runs through ``examples/reproduce.py`` (:func:`reproduce.run_cells`).

Usage:
    research, options = load_config("examples/configs/research_mixing_cpu.yaml")
    arguments = parse_run(options, {"strategy": "mixed", "alpha": 0.25, "seed": 1})
    write_doc_block(Path("docs/research/mixing.md"), "Q1: ...", generated_markdown)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))
import train  # noqa: E402  (examples/train.py)

from st_hybrid.io import write_text  # noqa: E402

__all__ = [
    "BEGIN",
    "END",
    "Clock",
    "load_config",
    "parse_run",
    "resolve_model",
    "save_figure",
    "stored_prompts",
    "write_doc_block",
]

OFFLINE_PREFIX = "offline-model:"
OFFLINE_TOOL = EXAMPLES.parent.parent / "shared" / "tools" / "offline-model"
BEGIN, END = "<!-- generated results: begin -->", "<!-- generated results: end -->"


def load_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(research settings, train options)`` from a research config; unknown training keys are refused here."""
    path = Path(path)
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict) or not isinstance(values.get("research", {}), dict):
        raise SystemExit(f"{path} must hold a mapping of train.py options plus a `research:` mapping.")
    research = values.pop("research", {}) or {}
    known = train.build_parser()._option_string_actions  # the flags train.py accepts, as in train.parse_args
    unknown = sorted(key for key in values if f"--{key}" not in known or key == "config")
    if unknown:
        raise SystemExit(
            f"{path}: unknown keys {unknown}. Top-level keys are train.py options (see `python "
            "examples/train.py --help`); the script's own settings go under `research:`."
        )
    return research, values


def parse_run(options: dict[str, Any], overrides: dict[str, Any] | None = None):
    """One run's ``train.Arguments`` from the train options of a research config plus a cell's overrides."""
    return train.parse_args([], overrides={**options, **(overrides or {})})


def resolve_model(spec: str) -> str:
    """A Hub id or local folder as is; ``offline-model:NAME`` built (once, then cached) by the shared tool."""
    if not spec.startswith(OFFLINE_PREFIX):
        return spec
    name = spec[len(OFFLINE_PREFIX) :]
    if not OFFLINE_TOOL.exists():
        raise SystemExit(
            f"{spec}: {OFFLINE_TOOL} is missing. Give the model as a Hub id or a local folder instead."
        )
    built = subprocess.run(
        [str(OFFLINE_TOOL), sys.executable, name], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        raise SystemExit(f"{spec}: the offline-model tool failed:\n{built.stderr[-2000:]}")
    return built.stdout.strip().splitlines()[-1]


def stored_prompts(model: str) -> dict[str, str]:
    """The model's own ``query`` / ``document`` prompts as train options (empty strings when it has none).

    Read from a local folder's ``config_sentence_transformers.json``; a Hub id keeps the config's prompts.
    """
    config = Path(model) / "config_sentence_transformers.json"
    if not Path(model).is_dir():
        return {}
    prompts = json.loads(config.read_text()).get("prompts", {}) if config.exists() else {}
    return {"query_prompt": prompts.get("query", ""), "passage_prompt": prompts.get("document", "")}


def write_doc_block(path: Path, title: str, block: str) -> Path:
    """Write generated results between the :data:`BEGIN` / :data:`END` markers of ``path``.

    Everything outside the markers (the written answers) is kept; a missing file gets a title and the block.
    """
    generated = f"{BEGIN}\n{block.strip()}\n{END}"
    text = path.read_text() if path.exists() else f"# {title}\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + generated + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    return write_text(path, text)


class Clock:
    """Wall time of a research command, said with how many runs it trained (the rest came from cache)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60

    def describe(self, trained: int, done: int, total: int) -> str:
        """E.g. "12.3 min wall time for this invocation (27 of 27 runs trained now, 0 read back from cache)"."""
        pending = f", {total - done} still to come" if done < total else ""
        return (
            f"{self.minutes():.1f} min wall time for this invocation ({trained} of {total} training runs "
            f"trained now, {done - trained} read back from cache{pending})"
        )


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay out, write (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
