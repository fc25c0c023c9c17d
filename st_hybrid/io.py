"""Result files that are never half-written and never stale.

Reports are written atomically (a temporary file in the same folder, then ``os.replace``): a run killed
mid-write leaves the previous file, not a truncated one. A cached result (a zero-shot evaluation, a grid
cell) is stored beside a record of the inputs it was computed from, ``<name>.inputs.json``, and reused only
when those inputs hash the same; otherwise it is recomputed and the log says which inputs changed.

A local model's or data folder's identity is its content: each file's name, size and SHA-256. A retrained
model in the same folder does not pass for the old one, and a re-copied data folder (same bytes, new
modification times) or a moved checkout still hits the cache. A Hub id is identified by its name.

Usage:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from st_hybrid.io import cached_json, write_json
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_json(folder / "report.json", {"map": 0.5})  # doctest: +ELLIPSIS
    PosixPath('...report.json')
    >>> cached_json(folder / "zero_shot.json", {"model": "e5-small"}, lambda: {"map": 0.8})
    {'map': 0.8}
    >>> cached_json(folder / "zero_shot.json", {"model": "e5-small"}, lambda: {"map": -1.0})  # reused
    {'map': 0.8}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["cached_json", "changed_inputs", "content_hash", "path_fingerprint", "write_json", "write_text"]

logger = logging.getLogger(__name__)

# Files that describe a model folder without changing what it computes.
_IGNORED_FILES = {"README.md"}
# Folders inside a run or model folder that are not part of the model itself.
_IGNORED_DIRS = {"checkpoints", "eval", "assets", ".cache"}


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as JSON atomically (see :func:`write_text`); values JSON cannot hold are written as strings."""
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def content_hash(inputs: Any) -> str:
    """SHA-256 of ``inputs`` as canonical JSON (sorted keys): equal inputs give equal hashes."""
    canonical = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def path_fingerprint(name_or_path: str | os.PathLike | None) -> dict[str, Any] | None:
    """Identity of a local file or folder by content (each file's name, size and SHA-256), or of a Hub id.

    Each file is read once per process (digests are memoized by path, size, modification time and inode),
    so fingerprinting a 470 MB model costs about a second once. A name that is not a local path is taken
    as a Hub id and identified by the name alone.
    """
    if name_or_path is None:
        return None
    path = Path(name_or_path)
    if not path.exists():
        return {"id": str(name_or_path)}
    if path.is_file():
        files = [path]
        root = path.parent
    else:
        root = path
        files = [
            file
            for file in sorted(path.rglob("*"))
            if file.is_file()
            and file.name not in _IGNORED_FILES
            and not _IGNORED_DIRS.intersection(file.relative_to(path).parts[:-1])
        ]
    return {
        "files": {str(file.relative_to(root)): [file.stat().st_size, _file_digest(file)] for file in files}
    }


_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _file_digest(file: Path) -> str:
    """SHA-256 of a file's bytes, memoized until the file is rewritten (its size, mtime or inode change)."""
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _DIGESTS:
        with open(file, "rb") as handle:
            _DIGESTS[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _DIGESTS[key]


def _inputs_file(result_file: Path) -> Path:
    return result_file.with_name(result_file.stem + ".inputs.json")


def changed_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Top-level keys whose values differ between two input records."""
    return sorted(
        key for key in set(old) | set(new) if content_hash(old.get(key)) != content_hash(new.get(key))
    )


def cached_json(
    result_file: str | os.PathLike,
    inputs: Mapping[str, Any],
    compute: Callable[[], Any],
    description: str | None = None,
) -> Any:
    """The JSON result at ``result_file`` if it was computed from ``inputs``; else ``compute()``, stored.

    The inputs are recorded in ``<stem>.inputs.json`` beside the result, after the result itself, so an
    interrupted computation is never mistaken for a finished one.

    Args:
        result_file: Where the result lives (``compute`` may write it itself; it is rewritten atomically).
        inputs: Everything the result depends on (JSON-serializable; see :func:`path_fingerprint`).
        compute: Produces the result (a JSON-serializable value) when the stored one is missing or stale.
        description: What the result is, for the log (default: the file path).

    Returns:
        The stored or freshly computed result.
    """
    result_file = Path(result_file)
    inputs = json.loads(json.dumps(inputs, default=str))  # compare like with like after a JSON round trip
    record_file = _inputs_file(result_file)
    description = description or str(result_file)
    reason = None
    if result_file.exists() and record_file.exists():
        record = json.loads(record_file.read_text(encoding="utf-8"))
        if record.get("hash") == content_hash(inputs):
            logger.info("Reusing %s (same inputs: %s)", description, record_file)
            return json.loads(result_file.read_text(encoding="utf-8"))
        changed = changed_inputs(record.get("inputs", {}), inputs)
        reason = f"its inputs changed ({', '.join(changed) or 'format'})"
    elif result_file.exists():
        reason = f"no record of the inputs it was computed from ({record_file.name} is missing)"
    if reason:
        logger.warning("Recomputing %s: %s.", description, reason)
    result = compute()
    write_json(result_file, result)
    write_json(record_file, {"hash": content_hash(inputs), "inputs": inputs})
    return result
