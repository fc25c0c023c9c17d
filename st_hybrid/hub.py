"""Publishing to the Hugging Face Hub: models with st-hybrid cards, datasets with dataset cards, the metric Space.

Everything goes through the real client libraries: ``huggingface_hub`` (``HfApi.create_repo``/``create_commit``),
sentence-transformers' ``save_pretrained`` for in-memory models and ``datasets.Dataset.push_to_hub``. What gets
published loads back with plain ``SentenceTransformer("user/model")``, ``load_dataset("user/data")`` and
``evaluate.load("user/metric")`` - st-hybrid is not needed on the reading side.

Authentication: the ``token`` argument, else ``HF_TOKEN``, else the token saved by ``hf auth login``
(``huggingface-cli login``). The token is only ever sent in the Authorization header: it is never printed, logged or
written into a card. ``HF_ENDPOINT`` is read when a function is called (not only at import time), so a private Hub
or a local test server works even if it is set after importing huggingface_hub.

Local files are only read: a failed publish (network error, 401, 5xx) leaves the model folder, the dataset and the
cards untouched, and running the same call again resumes (files already on the Hub are skipped).

Usage:
    >>> from st_hybrid.hub import publish_model, publish_dataset, publish_metric
    >>> from st_hybrid.model_card import ModelCardInfo
    >>> info = ModelCardInfo(base_model="intfloat/multilingual-e5-small", languages=["en", "de", "ar"])
    >>> publish_model("output/model", "user/hybrid-e5", card_info=info,
    ...               reports=["output/eval/xquad-r_metrics.json"])  # doctest: +SKIP
    >>> publish_dataset("output/pairs", "user/xquad-r-pairs")  # doctest: +SKIP
    >>> publish_metric("st_hybrid/evaluate_metric/language_aware_retrieval",
    ...                "user/language_aware_retrieval")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from st_hybrid.model_card import (
    DatasetCardInfo,
    EvaluationReport,
    ModelCardInfo,
    dataset_statistics,
    hub_asset_base_url,
    load_report,
    model_card_files,
    render_dataset_card,
    render_model_card,
)

__all__ = [
    "PublishError",
    "PublishResult",
    "hub_endpoint",
    "publish_dataset",
    "publish_metric",
    "publish_model",
    "resolve_token",
]

logger = logging.getLogger(__name__)

_SKIP_DIRS = {".git", "__pycache__", ".cache", ".ipynb_checkpoints", ".huggingface"}
_SKIP_SUFFIXES = (".pyc", ".lock")
_SKIP_MODEL_DIR_PREFIXES = ("checkpoint-",)  # Trainer checkpoints inside an output folder are not the model
ReportLike = str | os.PathLike | Mapping[str, Any] | EvaluationReport


class PublishError(RuntimeError):
    """Publishing failed; the message says what went wrong and how to fix it. Local files are untouched."""


@dataclass(frozen=True)
class PublishResult:
    """Where something was published.

    Attributes:
        repo_id: The repository id.
        repo_type: ``"model"``, ``"dataset"`` or ``"space"``.
        url: The repository URL.
        commit_url: URL of the (last) commit.
        commit_oid: Its id.
        revision: The branch committed to (``None`` means ``main``).
        pr_url: The pull request URL when ``create_pr=True``.
    """

    repo_id: str
    repo_type: str
    url: str
    commit_url: str
    commit_oid: str
    revision: str | None = None
    pr_url: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Endpoint, token, errors
# ---------------------------------------------------------------------------------------------------------------
def hub_endpoint() -> str:
    """The Hub endpoint: ``$HF_ENDPOINT`` when set (read now), else huggingface_hub's default.

    Usage:
        >>> hub_endpoint().startswith("http")
        True
    """
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def resolve_token(token: str | None = None) -> str:
    """The token to publish with: ``token``, else ``HF_TOKEN``, else the one saved by ``hf auth login``.

    Raises:
        PublishError: When there is none (the message says how to log in).

    Usage:
        >>> resolve_token("hf_xxx")
        'hf_xxx'
    """
    if token:
        return token
    from huggingface_hub import get_token

    found = os.environ.get("HF_TOKEN") or get_token()
    if not found:
        raise PublishError(
            "No Hugging Face token found. Fix: run `hf auth login` (or `huggingface-cli login`), or set the "
            "HF_TOKEN environment variable to a token with write access (https://huggingface.co/settings/tokens)."
        )
    return found


def _http_error(err: BaseException):
    """The first ``HfHubHTTPError`` in an exception's cause/context chain."""
    from huggingface_hub.errors import HfHubHTTPError

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, HfHubHTTPError):
            return err
        err = err.__cause__ or err.__context__
    return None


def _explain(err: BaseException, action: str, repo_id: str, endpoint: str, token: str | None) -> PublishError:
    """Turn a client exception into a :class:`PublishError` naming the problem and the fix."""
    http = _http_error(err)
    status = getattr(getattr(http, "response", None), "status_code", None)
    where = f"while {action} '{repo_id}' on {endpoint}"
    local = "Your local files were not modified."
    if status == 401:
        message = (
            f"The Hub rejected the credentials (401 Unauthorized) {where}. Fix: run `hf auth login` "
            "(or `huggingface-cli login`) or set HF_TOKEN to a valid token with write access, then rerun the "
            f"same command. {local}"
        )
    elif status == 403:
        message = (
            f"Permission denied (403 Forbidden) {where}. Fix: use a token with write access to the "
            f"'{repo_id.split('/')[0]}' namespace (fine-grained tokens need 'write' on it). {local}"
        )
    elif status == 404:
        message = (
            f"Not found (404) {where}: the repository, branch or file does not exist or is private. Fix: check "
            f"the repo id, --revision and that your token can see the repository. {local}"
        )
    elif status is not None and status >= 500:
        message = (
            f"The Hub had a server error ({status}) {where}. This is usually temporary. Fix: rerun the same "
            f"command - files already uploaded are skipped. {local}"
        )
    elif status is not None:
        detail = str(http).strip().splitlines()[0] if str(http).strip() else ""
        message = f"The Hub answered {status} {where}: {detail}. {local}"
    elif isinstance(err, OSError | ConnectionError) or type(err).__module__.startswith(("httpx", "httpcore")):
        message = (
            f"Could not reach the Hub {where}: {type(err).__name__}: {err}. Fix: check your network connection "
            f"and HF_ENDPOINT (now {endpoint}), then rerun the same command. {local}"
        )
    else:
        message = f"Publishing failed {where}: {type(err).__name__}: {err}. {local}"
    if token:
        message = message.replace(token, "***")
    return PublishError(message)


@contextlib.contextmanager
def _hub_step(action: str, repo_id: str, endpoint: str, token: str | None) -> Iterator[None]:
    try:
        yield
    except PublishError:
        raise
    except Exception as err:
        raise _explain(err, action, repo_id, endpoint, token) from err


def _reads_env_at_call_time(fn):
    """Honour ``HF_HUB_DISABLE_XET`` set after huggingface_hub was imported (it reads it once, at import)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from huggingface_hub import constants

        saved = constants.HF_HUB_DISABLE_XET
        if os.environ.get("HF_HUB_DISABLE_XET", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            constants.HF_HUB_DISABLE_XET = True
        try:
            return fn(*args, **kwargs)
        finally:
            constants.HF_HUB_DISABLE_XET = saved

    return wrapper


def _api(endpoint: str, token: str):
    from huggingface_hub import HfApi

    from st_hybrid.model_card import _version

    return HfApi(endpoint=endpoint, token=token, library_name="st-hybrid", library_version=_version())


def _check_repo_id(repo_id: str) -> None:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(
            f"Invalid repo id {repo_id!r}: expected 'user-or-org/name', e.g. 'alice/hybrid-e5'."
        )


def _prepare_repo(api, repo_id, repo_type, *, private, revision, endpoint, token, space_sdk=None) -> str:
    """Create the repo (no-op when it exists) and the branch ``revision``; return the repo URL."""
    with _hub_step("creating the repository", repo_id, endpoint, token):
        kwargs = {"space_sdk": space_sdk} if space_sdk else {}
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **kwargs)
    if revision and not revision.startswith("refs/pr/"):
        with _hub_step(f"creating the branch '{revision}' of", repo_id, endpoint, token):
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    return str(url)


def _folder_files(
    folder: Path, skip: set[str] = frozenset(), skip_dir_prefixes: tuple[str, ...] = ()
) -> dict[str, Path]:
    """``{path_in_repo: real path}`` for every file under ``folder``; symlinks are followed and resolved."""
    files: dict[str, Path] = {}
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(
            d for d in dirs if d not in _SKIP_DIRS and not d.startswith(skip_dir_prefixes or ("\0",))
        )
        for name in sorted(names):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if rel in skip or name.endswith(_SKIP_SUFFIXES):
                continue
            real = path.resolve()
            if not real.is_file():
                raise PublishError(f"{path} is a broken symlink or not a regular file; fix or remove it.")
            files[rel] = real
    return files


def _commit(api, repo_id, repo_type, files: Mapping[str, Path | bytes], *, message, revision, create_pr, endpoint,
            token, description=None) -> Any:  # fmt: skip
    from huggingface_hub import CommitOperationAdd

    operations = [
        CommitOperationAdd(
            path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes) else str(content)
        )
        for path, content in files.items()
    ]
    with _hub_step("uploading files to", repo_id, endpoint, token):
        return api.create_commit(
            repo_id,
            operations,
            commit_message=message,
            commit_description=description,
            repo_type=repo_type,
            revision=revision,
            create_pr=create_pr,
        )


def _result(repo_id, repo_type, url, info, revision) -> PublishResult:
    return PublishResult(
        repo_id=repo_id,
        repo_type=repo_type,
        url=url,
        commit_url=info.commit_url,
        commit_oid=info.oid,
        revision=revision,
        pr_url=info.pr_url,
    )


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _model_folder(model_or_path) -> Iterator[Path]:
    """A saved model folder: the given path, or a temporary ``save_pretrained`` of an in-memory model."""
    if isinstance(model_or_path, str | os.PathLike):
        folder = Path(model_or_path)
        if not (folder / "modules.json").is_file():
            raise PublishError(
                f"{folder} is not a saved sentence-transformers model (no modules.json). Fix: pass the folder "
                "written by model.save(...) or the SentenceTransformer object itself."
            )
        yield folder
        return
    if not hasattr(model_or_path, "save_pretrained"):
        raise PublishError(
            f"Expected a model folder or a SentenceTransformer, got {type(model_or_path).__name__}."
        )
    with tempfile.TemporaryDirectory(prefix="st-hybrid-publish-") as tmp:
        model_or_path.save_pretrained(tmp, create_model_card=False)
        yield Path(tmp)


@_reads_env_at_call_time
def publish_model(
    model_or_path,
    repo_id: str,
    *,
    card_info: ModelCardInfo | Mapping[str, Any] | None = None,
    reports: Sequence[ReportLike] = (),
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
) -> PublishResult:
    """Publish a sentence-transformers model with an st-hybrid model card, in one commit.

    The commit holds the model files (``checkpoint-*`` sub-folders are skipped), ``README.md`` rendered from ``model_cards/model_card.md`` (training facts,
    results tables, ``model-index``), the reports' heatmaps under ``assets/`` and the reports under ``eval/``.
    With ``card_info=None`` and no reports, an existing ``README.md`` in the folder is uploaded as is.

    Args:
        model_or_path: A saved model folder or a ``SentenceTransformer`` (saved with ``save_pretrained``).
        repo_id: ``"user-or-org/name"``.
        card_info: Training facts (a :class:`ModelCardInfo` or a dict of its fields).
        reports: Evaluation reports: ``{name}_metrics.json`` paths (a sibling ``{name}_pair_map.png`` is picked up),
            dicts or :class:`EvaluationReport`.
        private: Create the repository as private (ignored when it exists).
        revision: Branch to commit to; created from ``main`` when missing.
        commit_message: Commit summary; a default names the model and strategy.
        create_pr: Open a pull request (against ``revision`` or ``main``) instead of committing directly.
        token: Hub token; ``HF_TOKEN`` or the saved login otherwise.

    Returns:
        Where it was published.

    Raises:
        PublishError: With the problem and the fix (401, 403, 5xx, network, bad folder).

    Usage:
        >>> publish_model("output/model", "alice/hybrid-e5", card_info=ModelCardInfo(languages=["en", "de"]),
        ...               reports=["output/eval/xquad-r_metrics.json"], private=True)  # doctest: +SKIP
    """
    _check_repo_id(repo_id)
    loaded = [load_report(r) for r in reports]
    info = ModelCardInfo.from_dict(card_info) if isinstance(card_info, Mapping) else card_info
    with _model_folder(model_or_path) as folder:
        endpoint, token = hub_endpoint(), resolve_token(token)
        render = info is not None or bool(loaded)
        skip = {"README.md"} if render else set()
        files: dict[str, Path | bytes] = dict(_folder_files(folder, skip, _SKIP_MODEL_DIR_PREFIXES))
        if render:
            info = info or ModelCardInfo()
            base = hub_asset_base_url(repo_id, revision, endpoint)
            card = render_model_card(info, loaded, repo_id=repo_id, model_path=folder, asset_base_url=base)
            files["README.md"] = card.encode("utf-8")
            files.update(model_card_files(loaded))
        message = (
            commit_message or f"Add st-hybrid model ({info.strategy if info else 'sentence-transformers'})"
        )
        logger.info("Publishing model %s to %s (%d files)", repo_id, endpoint, len(files))
        api = _api(endpoint, token)
        url = _prepare_repo(
            api, repo_id, "model", private=private, revision=revision, endpoint=endpoint, token=token
        )
        info_commit = _commit(api, repo_id, "model", files, message=message, revision=revision, create_pr=create_pr,
                              endpoint=endpoint, token=token)  # fmt: skip
    logger.info("Published model %s: %s", repo_id, info_commit.pr_url or info_commit.commit_url)
    return _result(repo_id, "model", url, info_commit, revision)


# ---------------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------------
def _load_local_dataset(dataset_or_path, split: str | None):
    import datasets

    if isinstance(dataset_or_path, datasets.Dataset | datasets.DatasetDict):
        return dataset_or_path
    path = Path(dataset_or_path)
    if path.is_dir():
        return datasets.load_from_disk(str(path))
    builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
    if path.is_file() and path.suffix in builders:
        return datasets.load_dataset(builders[path.suffix], data_files=str(path), split=split or "train")
    raise PublishError(
        f"Cannot read a dataset from {path}: expected a folder written by Dataset.save_to_disk or a "
        ".json/.jsonl/.csv/.parquet file."
    )


@contextlib.contextmanager
def _datasets_endpoint(endpoint: str) -> Iterator[None]:
    """``datasets`` reads HF_ENDPOINT once at import time; point it at ``endpoint`` for this call."""
    from datasets import config

    saved = config.HF_ENDPOINT, config.HUB_DATASETS_URL
    config.HF_ENDPOINT = endpoint
    config.HUB_DATASETS_URL = endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
    try:
        yield
    finally:
        config.HF_ENDPOINT, config.HUB_DATASETS_URL = saved


def _pushed_card_metadata(api, repo_id: str, revision: str, endpoint: str, token: str) -> dict[str, Any]:
    """The ``dataset_info``/``configs`` metadata that ``Dataset.push_to_hub`` wrote into README.md."""
    from huggingface_hub import DatasetCard

    with _hub_step("reading back the dataset card of", repo_id, endpoint, token):
        path = api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)
    return DatasetCard(Path(path).read_text(encoding="utf-8")).data.to_dict()


@_reads_env_at_call_time
def publish_dataset(
    dataset_or_path,
    repo_id: str,
    *,
    card_info: DatasetCardInfo | Mapping[str, Any] | None = None,
    split: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
) -> PublishResult:
    """Publish a training-pairs or parallel dataset (``Dataset.push_to_hub``) with an st-hybrid dataset card.

    Two commits: the Parquet data (by ``datasets``), then ``README.md`` rendered from ``model_cards/dataset_card.md``
    with the languages as metadata, sizes per language / language pair / source, source, license and how it was
    built, keeping the ``dataset_info``/``configs`` metadata ``datasets`` wrote. With ``create_pr=True`` both go
    into the same pull request.

    Args:
        dataset_or_path: A ``Dataset``/``DatasetDict``, a ``save_to_disk`` folder or a .json/.jsonl/.csv/.parquet file.
        repo_id: ``"user-or-org/name"``.
        card_info: Dataset facts (a :class:`DatasetCardInfo` or a dict of its fields).
        split: Split name for a single ``Dataset`` (default: its own split or ``"train"``).
        private: Create the repository as private (ignored when it exists).
        revision: Branch to commit to; created from ``main`` when missing.
        commit_message: Summary of the data commit.
        create_pr: Open a pull request instead of committing directly.
        token: Hub token; ``HF_TOKEN`` or the saved login otherwise.

    Returns:
        Where it was published (the card commit).

    Raises:
        PublishError: With the problem and the fix.

    Usage:
        >>> publish_dataset("output/pairs", "alice/xquad-r-pairs",
        ...                 card_info=DatasetCardInfo(license="cc-by-sa-4.0"))  # doctest: +SKIP
    """
    import datasets

    _check_repo_id(repo_id)
    info = (
        DatasetCardInfo.from_dict(card_info)
        if isinstance(card_info, Mapping)
        else card_info or DatasetCardInfo()
    )
    dataset = _load_local_dataset(dataset_or_path, split)
    stats = dataset_statistics(dataset)
    endpoint, token = hub_endpoint(), resolve_token(token)
    api = _api(endpoint, token)
    url = _prepare_repo(
        api, repo_id, "dataset", private=private, revision=revision, endpoint=endpoint, token=token
    )
    push_kwargs: dict[str, Any] = {"private": private, "token": token, "revision": revision, "create_pr": create_pr,
                                   "commit_message": commit_message or "Upload st-hybrid dataset"}  # fmt: skip
    if isinstance(dataset, datasets.Dataset) and split:
        push_kwargs["split"] = split
    logger.info("Publishing dataset %s to %s (%d rows)", repo_id, endpoint, stats["num_rows"])
    with _datasets_endpoint(endpoint), _hub_step("uploading the dataset to", repo_id, endpoint, token):
        data_commit = dataset.push_to_hub(repo_id, **push_kwargs)
    card_revision = data_commit.pr_revision or revision or "main"
    metadata = _pushed_card_metadata(api, repo_id, card_revision, endpoint, token)
    card = render_dataset_card(info, stats, repo_id=repo_id, extra_metadata=metadata)
    card_commit = _commit(api, repo_id, "dataset", {"README.md": card.encode("utf-8")},
                          message="Add st-hybrid dataset card", revision=card_revision, create_pr=False,
                          endpoint=endpoint, token=token)  # fmt: skip
    pr_url = data_commit.pr_url
    logger.info("Published dataset %s: %s", repo_id, pr_url or card_commit.commit_url)
    return PublishResult(repo_id, "dataset", url, card_commit.commit_url, card_commit.oid, revision, pr_url)


# ---------------------------------------------------------------------------------------------------------------
# Metric (evaluate module as a Space)
# ---------------------------------------------------------------------------------------------------------------
def _metric_files(folder: Path, repo_name: str) -> dict[str, Path | bytes]:
    """The folder's files, with the script also under ``{repo_name}.py`` and Space metadata in README.md."""
    from huggingface_hub import SpaceCard

    files: dict[str, Path | bytes] = dict(_folder_files(folder))
    script_name = f"{repo_name}.py"
    if script_name not in files:
        candidates = [f"{folder.name}.py"] + sorted(p for p in files if p.endswith(".py") and "/" not in p)
        source = next((c for c in candidates if c in files and c != "app.py"), None)
        if source is None:
            raise PublishError(
                f"{folder} has no metric script: evaluate.load('user/{repo_name}') needs {script_name} "
                f"(or {folder.name}.py) in the folder."
            )
        files[script_name] = files[source]
    readme = (
        Path(files["README.md"]).read_text(encoding="utf-8") if "README.md" in files else f"# {repo_name}\n"
    )
    card = SpaceCard(readme)
    card.data.sdk = card.data.sdk or "gradio"
    card.data.app_file = card.data.app_file or "app.py"
    card.data.title = card.data.title or repo_name
    tags = list(card.data.tags or [])
    card.data.tags = tags + [t for t in ("evaluate", "metric") if t not in tags]
    files["README.md"] = str(card).encode("utf-8")
    return files


@_reads_env_at_call_time
def publish_metric(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
) -> PublishResult:
    """Publish an ``evaluate`` metric module folder as a Gradio Space, in one commit.

    ``evaluate.load("user/name")`` downloads ``name.py`` from the Space, so the script is also uploaded under the
    repo's name when it differs. Symlinks in the folder are resolved into real files. README.md (the metric card)
    gets the Space metadata it needs (``sdk: gradio``, ``app_file: app.py``) when missing.

    Args:
        folder: The metric folder (script, README.md card, app.py, requirements.txt).
        repo_id: ``"user-or-org/name"``.
        private: Create the Space as private (ignored when it exists).
        revision: Branch to commit to; created from ``main`` when missing.
        commit_message: Commit summary.
        create_pr: Open a pull request instead of committing directly.
        token: Hub token; ``HF_TOKEN`` or the saved login otherwise.

    Returns:
        Where it was published.

    Raises:
        PublishError: With the problem and the fix.

    Usage:
        >>> publish_metric("st_hybrid/evaluate_metric/language_aware_retrieval",
        ...                "alice/language_aware_retrieval")  # doctest: +SKIP
    """
    _check_repo_id(repo_id)
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"Metric folder {folder} does not exist.")
    endpoint, token = hub_endpoint(), resolve_token(token)
    files = _metric_files(folder, repo_id.split("/")[1])
    api = _api(endpoint, token)
    url = _prepare_repo(api, repo_id, "space", private=private, revision=revision, endpoint=endpoint, token=token,
                        space_sdk="gradio")  # fmt: skip
    logger.info("Publishing metric %s to %s (%d files)", repo_id, endpoint, len(files))
    commit = _commit(api, repo_id, "space", files, message=commit_message or "Add st-hybrid evaluate metric",
                     revision=revision, create_pr=create_pr, endpoint=endpoint, token=token)  # fmt: skip
    logger.info("Published metric %s: %s", repo_id, commit.pr_url or commit.commit_url)
    return _result(repo_id, "space", url, commit, revision)
