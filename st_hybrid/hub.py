"""Publishing to the Hugging Face Hub: models with st-hybrid cards, datasets with dataset cards, the metric Space.

Every upload is one ``HfApi.upload_folder`` commit (with ``revision``, ``create_pr``, ``commit_message`` and ignore
patterns for trainer checkpoints and lock files). What is uploaded is assembled in a temporary folder of links to
the local files plus the generated card, so a local folder is only ever read. What gets published loads back with
plain ``SentenceTransformer("user/model")``, ``load_dataset("user/data")`` and ``evaluate.load("user/metric")``:
st-hybrid is not needed on the reading side.

Endpoint: the ``endpoint`` argument, else ``HF_ENDPOINT`` (read when a function is called), else huggingface_hub's
default; it is passed to ``HfApi(endpoint=...)``, never patched into library globals. Other settings of
huggingface_hub (``HF_HUB_DISABLE_XET``, ``HF_HUB_OFFLINE``) and the endpoint used by ``datasets``, ``evaluate``
and sentence-transformers on the *reading* side are read when those libraries are imported: set them before.

Authentication: the ``token`` argument, else ``huggingface_hub.get_token()`` (``HF_TOKEN``, then the token saved by
``hf auth login``). The token is only sent in the Authorization header: never printed, logged or written into a card.

A failed publish (network error, 401, 5xx) leaves the local files untouched, and running the same call again
resumes (files already on the Hub are skipped by huggingface_hub).

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
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from st_hybrid.card_templates import st_hybrid_version
from st_hybrid.dataset_card import DatasetCardInfo, dataset_statistics, render_dataset_card
from st_hybrid.model_card import EvaluationReport, ModelCardInfo, hub_asset_base_url, write_model_card

__all__ = [
    "IGNORE_PATTERNS",
    "PublishError",
    "PublishResult",
    "hub_endpoint",
    "publish_dataset",
    "publish_metric",
    "publish_model",
    "resolve_token",
]

logger = logging.getLogger(__name__)

#: Never uploaded: trainer checkpoints, lock files, caches and version-control folders.
IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "*.lock", "**/*.lock", ".git/**", "**/__pycache__/**",
                   "*.pyc", "**/*.pyc", ".cache/**", ".huggingface/**", ".ipynb_checkpoints/**"]  # fmt: skip
_SKIP_DIRS = {".git", "__pycache__", ".cache", ".huggingface"}  # not even linked into the upload folder
_MAX_SHARD_BYTES = 500 * 1024 * 1024  # as Dataset.push_to_hub
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
        commit_url: URL of the commit.
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
def hub_endpoint(endpoint: str | None = None) -> str:
    """The Hub endpoint: ``endpoint``, else ``$HF_ENDPOINT`` (read now), else huggingface_hub's default.

    Usage:
        >>> hub_endpoint("https://hub.example.com/")
        'https://hub.example.com'
    """
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def resolve_token(token: str | None = None) -> str:
    """The token to publish with: ``token``, else ``huggingface_hub.get_token()`` (``HF_TOKEN``, saved login).

    Raises:
        PublishError: When there is none (the message says how to log in).

    Usage:
        >>> resolve_token("hf_xxx")
        'hf_xxx'
    """
    import huggingface_hub

    found = token or huggingface_hub.get_token()
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


def _check_repo_id(repo_id: str) -> None:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(
            f"Invalid repo id {repo_id!r}: expected 'user-or-org/name', e.g. 'alice/hybrid-e5'."
        )


# ---------------------------------------------------------------------------------------------------------------
# One upload: create the repo (and branch), then upload_folder
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _Target:
    repo_id: str
    repo_type: str
    endpoint: str
    token: str
    private: bool
    revision: str | None
    create_pr: bool

    def api(self):
        from huggingface_hub import HfApi

        return HfApi(
            endpoint=self.endpoint,
            token=self.token,
            library_name="st-hybrid",
            library_version=st_hybrid_version(),
        )

    def step(self, action: str):
        return _hub_step(action, self.repo_id, self.endpoint, self.token)


def _target(repo_id, repo_type, *, endpoint, token, private, revision, create_pr) -> _Target:
    _check_repo_id(repo_id)
    return _Target(
        repo_id, repo_type, hub_endpoint(endpoint), resolve_token(token), private, revision, create_pr
    )


def _upload(target: _Target, folder: Path, message: str, space_sdk: str | None = None) -> PublishResult:
    """Create the repository (no-op when it exists) and the branch, then commit ``folder`` in one commit."""
    api = target.api()
    with target.step("creating the repository"):
        kwargs = {"space_sdk": space_sdk} if space_sdk else {}
        url = api.create_repo(target.repo_id, repo_type=target.repo_type, private=target.private, exist_ok=True,
                              **kwargs)  # fmt: skip
    if target.revision and not target.revision.startswith("refs/pr/"):
        with target.step(f"creating the branch '{target.revision}' of"):
            api.create_branch(
                target.repo_id, branch=target.revision, repo_type=target.repo_type, exist_ok=True
            )
    logger.info("Uploading %s to %s/%s", folder, target.endpoint, target.repo_id)
    with target.step("uploading files to"):
        commit = api.upload_folder(
            repo_id=target.repo_id,
            repo_type=target.repo_type,
            folder_path=folder,
            revision=target.revision,
            commit_message=message,
            create_pr=target.create_pr,
            ignore_patterns=IGNORE_PATTERNS,
        )
    logger.info("Published %s %s: %s", target.repo_type, target.repo_id, commit.pr_url or commit.commit_url)
    return PublishResult(target.repo_id, target.repo_type, str(url), commit.commit_url, commit.oid,
                         target.revision, commit.pr_url)  # fmt: skip


def _link_tree(source: Path, staging: Path, skip: set[str] = frozenset()) -> None:
    """Mirror ``source`` into ``staging`` as real folders of symlinks to the (resolved) files."""
    for root, dirs, names in os.walk(source, followlinks=True):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in names:
            path = Path(root) / name
            rel = path.relative_to(source)
            if rel.as_posix() in skip:
                continue
            real = path.resolve()
            if not real.is_file():
                raise PublishError(f"{path} is a broken symlink or not a regular file; fix or remove it.")
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).symlink_to(real)


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _model_folder(model_or_path) -> Iterator[tuple[Path, Any]]:
    """(saved folder, model in memory or None): the given folder, or a temporary save of an in-memory model."""
    if isinstance(model_or_path, str | os.PathLike):
        folder = Path(model_or_path)
        if not (folder / "modules.json").is_file():
            raise PublishError(
                f"{folder} is not a saved sentence-transformers model (no modules.json). Fix: pass the folder "
                "written by model.save(...) or the SentenceTransformer object itself."
            )
        yield folder, None
        return
    if not hasattr(model_or_path, "save_pretrained"):
        raise PublishError(
            f"Expected a model folder or a SentenceTransformer, got {type(model_or_path).__name__}."
        )
    with tempfile.TemporaryDirectory(prefix="st-hybrid-model-") as tmp:
        model_or_path.save_pretrained(tmp, create_model_card=False)
        yield Path(tmp), model_or_path


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
    endpoint: str | None = None,
) -> PublishResult:
    """Publish a sentence-transformers model with its st-hybrid model card, in one ``upload_folder`` commit.

    The commit holds the model files (trainer checkpoints and lock files are ignored) and, when ``card_info`` or
    ``reports`` are given, a freshly rendered ``README.md`` (sentence-transformers' card with st-hybrid's sections,
    :func:`~st_hybrid.model_card.write_model_card`), the reports under ``eval/`` and their heatmaps under
    ``assets/``. Otherwise the folder's own ``README.md`` is uploaded as is.

    Args:
        model_or_path: A saved model folder or a ``SentenceTransformer`` (saved with ``save_pretrained``).
        repo_id: ``"user-or-org/name"``.
        card_info: Training facts (a :class:`ModelCardInfo` or a dict of its fields).
        reports: Evaluation reports: ``{name}_metrics.json`` paths (a sibling ``{name}_pair_map.png`` is picked up),
            dicts or :class:`EvaluationReport`.
        private: Create the repository as private (ignored when it exists).
        revision: Branch to commit to; created from ``main`` when missing.
        commit_message: Commit summary; a default names the strategy.
        create_pr: Open a pull request (against ``revision`` or ``main``) instead of committing directly.
        token: Hub token; ``huggingface_hub.get_token()`` otherwise.
        endpoint: Hub URL; ``HF_ENDPOINT`` or huggingface_hub's default otherwise.

    Returns:
        Where it was published.

    Raises:
        PublishError: With the problem and the fix (401, 403, 5xx, network, bad folder).

    Usage:
        >>> publish_model("output/model", "alice/hybrid-e5", card_info=ModelCardInfo(languages=["en", "de"]),
        ...               reports=["output/eval/xquad-r_metrics.json"], private=True)  # doctest: +SKIP
    """
    info = ModelCardInfo.from_dict(card_info) if isinstance(card_info, Mapping) else card_info
    _check_repo_id(repo_id)
    with (
        _model_folder(model_or_path) as (folder, model),
        tempfile.TemporaryDirectory(prefix="st-hybrid-up-") as tmp,
    ):
        target = _target(repo_id, "model", endpoint=endpoint, token=token, private=private, revision=revision,
                         create_pr=create_pr)  # fmt: skip
        staging = Path(tmp)
        render = info is not None or bool(reports)
        _link_tree(folder, staging, skip={"README.md"} if render else set())
        if render:
            write_model_card(staging, info or ModelCardInfo(), reports, repo_id=repo_id, model=model,
                             asset_base_url=hub_asset_base_url(repo_id, revision, target.endpoint))  # fmt: skip
        strategy = info.strategy if info else "sentence-transformers"
        return _upload(target, staging, commit_message or f"Add st-hybrid model ({strategy})")


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


def _write_parquet_splits(splits: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """``data/{split}-NNNNN-of-NNNNN.parquet`` shards (the Hub's layout) and their ``configs``/``dataset_info``."""
    import copy

    from datasets.splits import SplitDict, SplitInfo

    (folder / "data").mkdir(parents=True)
    split_infos = SplitDict()
    for name, split in splits.items():
        num_bytes = split.data.nbytes
        shards = max(1, math.ceil(num_bytes / _MAX_SHARD_BYTES))
        for index in range(shards):
            shard = split.shard(num_shards=shards, index=index, contiguous=True)
            shard.to_parquet(str(folder / "data" / f"{name}-{index:05d}-of-{shards:05d}.parquet"))
        split_infos.add(SplitInfo(name=name, num_bytes=num_bytes, num_examples=len(split)))
    info = copy.deepcopy(next(iter(splits.values())).info)
    info.splits = split_infos
    info.dataset_size = sum(s.num_bytes for s in split_infos.values())
    configs = [
        {"config_name": "default", "data_files": [{"split": n, "path": f"data/{n}-*"} for n in splits]}
    ]
    return {"dataset_info": info._to_yaml_dict(), "configs": configs}


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
    endpoint: str | None = None,
) -> PublishResult:
    """Publish a training-pairs or parallel dataset as Parquet with an st-hybrid dataset card, in one commit.

    The data is written in the Hub's layout (``data/{split}-*.parquet``, ``configs`` and ``dataset_info`` in the
    card metadata, as ``Dataset.push_to_hub`` does) next to ``README.md`` rendered from
    ``model_cards/dataset_card.md`` (languages, sizes per language / language pair / source, source, license, how
    it was built); both go up in one ``upload_folder`` commit (or one pull request).

    Args:
        dataset_or_path: A ``Dataset``/``DatasetDict``, a ``save_to_disk`` folder or a .json/.jsonl/.csv/.parquet file.
        repo_id: ``"user-or-org/name"``.
        card_info: Dataset facts (a :class:`DatasetCardInfo` or a dict of its fields).
        split: Split name for a single ``Dataset`` (default: its own split or ``"train"``).
        private: Create the repository as private (ignored when it exists).
        revision: Branch to commit to; created from ``main`` when missing.
        commit_message: Commit summary.
        create_pr: Open a pull request instead of committing directly.
        token: Hub token; ``huggingface_hub.get_token()`` otherwise.
        endpoint: Hub URL; ``HF_ENDPOINT`` or huggingface_hub's default otherwise.

    Returns:
        Where it was published.

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
    if isinstance(dataset, datasets.DatasetDict):
        splits = dict(dataset)
    else:
        splits = {split or (str(dataset.split) if dataset.split else "train"): dataset}
    stats = dataset_statistics(dataset)
    target = _target(repo_id, "dataset", endpoint=endpoint, token=token, private=private, revision=revision,
                     create_pr=create_pr)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="st-hybrid-up-") as tmp:
        staging = Path(tmp)
        metadata = _write_parquet_splits(splits, staging)
        card = render_dataset_card(info, stats, repo_id=repo_id, extra_metadata=metadata)
        (staging / "README.md").write_text(card, encoding="utf-8")
        logger.info("Publishing dataset %s (%d rows)", repo_id, stats["num_rows"])
        return _upload(target, staging, commit_message or "Upload st-hybrid dataset")


# ---------------------------------------------------------------------------------------------------------------
# Metric (evaluate module as a Space)
# ---------------------------------------------------------------------------------------------------------------
def _stage_metric(folder: Path, repo_name: str, staging: Path) -> None:
    """The folder's files, the script also under ``{repo_name}.py``, and Space metadata in README.md."""
    from huggingface_hub import SpaceCard

    _link_tree(folder, staging, skip={"README.md"})
    script = staging / f"{repo_name}.py"
    if not script.exists():
        scripts = [f"{folder.name}.py"] + sorted(p.name for p in staging.glob("*.py"))
        source = next((name for name in scripts if (staging / name).is_file() and name != "app.py"), None)
        if source is None:
            raise PublishError(
                f"{folder} has no metric script: evaluate.load('user/{repo_name}') needs {repo_name}.py "
                f"(or {folder.name}.py) in the folder."
            )
        script.symlink_to((staging / source).resolve())
    readme = folder / "README.md"
    card = SpaceCard(readme.read_text(encoding="utf-8") if readme.is_file() else f"# {repo_name}\n")
    card.data.sdk = card.data.sdk or "gradio"
    card.data.app_file = card.data.app_file or "app.py"
    card.data.title = card.data.title or repo_name
    tags = list(card.data.tags or [])
    card.data.tags = tags + [t for t in ("evaluate", "metric") if t not in tags]
    (staging / "README.md").write_text(str(card), encoding="utf-8")


def publish_metric(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> PublishResult:
    """Publish an ``evaluate`` metric module folder as a Gradio Space, in one ``upload_folder`` commit.

    ``evaluate.load("user/name")`` downloads ``name.py`` from the Space, so the script is also uploaded under the
    repo's name when it differs. Symlinks in the folder are uploaded as the files they point to. README.md (the
    metric card) gets the Space metadata it needs (``sdk: gradio``, ``app_file: app.py``) when missing.

    Args:
        folder: The metric folder (script, README.md card, app.py, requirements.txt).
        repo_id: ``"user-or-org/name"``.
        private: Create the Space as private (ignored when it exists).
        revision: Branch to commit to; created from ``main`` when missing.
        commit_message: Commit summary.
        create_pr: Open a pull request instead of committing directly.
        token: Hub token; ``huggingface_hub.get_token()`` otherwise.
        endpoint: Hub URL; ``HF_ENDPOINT`` or huggingface_hub's default otherwise.

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
    target = _target(repo_id, "space", endpoint=endpoint, token=token, private=private, revision=revision,
                     create_pr=create_pr)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="st-hybrid-up-") as tmp:
        _stage_metric(folder, repo_id.split("/")[1], Path(tmp))
        return _upload(
            target, Path(tmp), commit_message or "Add st-hybrid evaluate metric", space_sdk="gradio"
        )
