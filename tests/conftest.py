"""Shared fixtures: everything offline, tiny models built locally, real data from ../shared/data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never touch the network (the Hub is unreachable in CI); the Hub tests use a local server.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TMPDIR", tempfile.gettempdir())

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline copies of XQuAD-R, MLQA-R and Tatoeba beside the checkout (see ../shared/data/README.md)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"{SHARED_DATA} is missing: tests expect ../shared beside the checkout.")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    """A tiny random BERT sentence-transformers model saved to a folder (built once per session)."""
    from st_hybrid.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def example_script():
    """Import a script under examples/ as a module: ``example_script("experiments/checkpoint_soup.py")``."""
    import importlib.util

    def load(relative: str):
        path = PROJECT_ROOT / "examples" / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
