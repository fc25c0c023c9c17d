"""A small Hugging Face Hub-compatible HTTP server for offline tests (stdlib only).

It implements the part of the Hub API that ``huggingface_hub`` (with ``HF_HUB_DISABLE_XET=1``), ``datasets``,
``evaluate`` and ``sentence-transformers`` use to publish and load models, datasets and Spaces:

- ``POST /api/repos/create`` and ``POST /api/validate-yaml``
- ``POST /api/{type}s/{id}/preupload/{rev}`` and ``POST /api/{type}s/{id}/commit/{rev}`` (NDJSON body,
  ``create_pr=1`` opens a pull request ref ``refs/pr/N``)
- ``POST /{prefix}{id}.git/info/lfs/objects/batch`` and ``PUT /_lfs/{sha256}`` (basic LFS transfer)
- ``POST /api/{type}s/{id}/branch/{name}``, ``GET /api/{type}s/{id}/refs``
- ``GET /api/{type}s/{id}[/revision/{rev}]``, ``GET /api/{type}s/{id}/tree/{rev}[/{path}]``,
  ``POST /api/{type}s/{id}/paths-info/{rev}``, ``GET /api/whoami-v2``
- ``GET|HEAD /{prefix}{id}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` and ``Range`` support

State lives in memory (repos, commits, branches, pull requests, LFS objects). Every request is logged with a
``kind`` so tests can check what reached the server, and faults can be injected: answer a given status on the
Nth request of a kind.

Usage:
    >>> from tests.hub_server import HubServer
    >>> with HubServer(tokens={"hf_test"}) as hub:  # doctest: +SKIP
    ...     hub.add_fault("commit", status=500)      # the next commit fails
    ...     os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = ["Commit", "Fault", "HubServer", "Repo", "RequestRecord", "StoredFile"]

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".parquet",
    ".arrow",
    ".png",
    ".jpg",
    ".onnx",
    ".npy",
    ".gz",
    ".zip",
)
LFS_MIN_SIZE = 1_000_000


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit: its bytes and whether it is stored through LFS."""

    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.content) + self.content).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Commit:
    """A commit: full snapshot of the files, its parent and message."""

    oid: str
    parent: str | None
    summary: str
    description: str
    files: dict[str, StoredFile]
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    """A repository with its refs (branches and pull requests) and commits."""

    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None = None
    branches: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, dict] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """Commit oid of a branch, ``refs/pr/N`` or (a prefix of) a commit oid; None when unknown."""
        if revision in self.branches:
            return self.branches[revision]
        if revision.startswith("refs/pr/") and revision[8:].isdigit():
            pr = self.pull_requests.get(int(revision[8:]))
            return pr["head"] if pr else None
        if len(revision) >= 7:
            matches = [oid for oid in self.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        return None


@dataclass(frozen=True)
class RequestRecord:
    """What the server saw: method, path, query, kind, status, headers (lower-case names) and body."""

    method: str
    path: str
    query: dict[str, list[str]]
    kind: str
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Fault:
    """Answer ``status`` to requests of ``kind`` number ``nth``, ``nth + 1``, ... (``times`` of them)."""

    kind: str
    status: int
    nth: int = 1
    times: int = 1
    seen: int = 0

    def hit(self) -> bool:
        self.seen += 1
        return self.nth <= self.seen < self.nth + self.times


class HubError(Exception):
    """An HTTP error answer with the Hub's error headers."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


class HubServer:
    """In-memory Hub on 127.0.0.1 (a random free port), served from a background thread.

    Args:
        tokens: Tokens accepted for writes and private reads. Requests with another bearer token get 401.
        user: The user name ``whoami`` reports.
    """

    def __init__(self, tokens: set[str] | None = None, user: str = "user"):
        self.tokens = set(tokens or ())
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        handler = type("BoundHubHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- test helpers ----------------------------------------------------------------------------------------
    def add_fault(self, kind: str, status: int, nth: int = 1, times: int = 1) -> Fault:
        """Answer ``status`` to the ``nth`` (counted from now) request of ``kind``, ``times`` times in a row."""
        fault = Fault(kind=kind, status=status, nth=nth, times=times)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a revision, as ``{path: bytes}``."""
        repo = self.repo(repo_id, repo_type)
        oid = repo.resolve(revision)
        if oid is None:
            raise KeyError(f"unknown revision {revision!r} of {repo_type} {repo_id}")
        return {path: stored.content for path, stored in repo.commits[oid].files.items()}

    def head_commit(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> Commit:
        repo = self.repo(repo_id, repo_type)
        return repo.commits[repo.resolve(revision)]

    def requests_of(self, kind: str) -> list[RequestRecord]:
        return [record for record in self.requests if record.kind == kind]

    def all_stored_bytes(self) -> list[bytes]:
        """Every file content ever committed and every LFS object (for leak checks)."""
        with self.lock:
            blobs = list(self.lfs_objects.values())
            for repo in self.repos.values():
                for commit in repo.commits.values():
                    blobs.extend(stored.content for stored in commit.files.values())
                    blobs.append((commit.summary + commit.description).encode())
            return blobs

    # -- internals -------------------------------------------------------------------------------------------
    def _new_oid(self, seed: str) -> str:
        self._counter += 1
        return hashlib.sha1(f"{seed}:{self._counter}:{time.time_ns()}".encode()).hexdigest()

    def _create_repo(self, repo_type: str, repo_id: str, private: bool, sdk: str | None) -> Repo:
        repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, sdk=sdk)
        files = {
            ".gitattributes": StoredFile(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n", lfs=False)
        }
        oid = self._new_oid(repo_id)
        repo.commits[oid] = Commit(oid, None, "initial commit", "", files)
        repo.branches["main"] = oid
        self.repos[(repo_type, repo_id)] = repo
        return repo


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    if path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return b"\0" in sample
    return False


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "LocalHub/1.0"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    # -- plumbing ----------------------------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        query = parse_qs(split.query)
        body = self._read_body() if method in ("POST", "PUT") else b""
        self._method, self._segments, self._query, self._body = method, segments, query, body
        kind, route = self._route(method, segments)
        status = 500
        try:
            with self.hub.lock:
                fault = next((f for f in self.hub.faults if f.kind == kind and f.hit()), None)
            if fault is not None:
                raise HubError(fault.status, f"Injected fault: {fault.status} on {kind}")
            if route is None:
                raise HubError(404, f"No route for {method} {split.path}")
            self._check_token(kind)
            with self.hub.lock:  # one request at a time mutates the state (LFS uploads come in parallel)
                status, headers, payload = route()
        except HubError as err:
            status = err.status
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            payload = json.dumps({"error": err.message, **err.extra}).encode()
            headers["Content-Type"] = "application/json"
        except Exception as err:  # a bug in the server: answer 500 and keep serving
            status, headers = 500, {"Content-Type": "application/json"}
            payload = json.dumps({"error": f"server bug: {err!r}"}).encode()
        finally:
            with self.hub.lock:
                self.hub.requests.append(
                    RequestRecord(
                        method,
                        split.path,
                        query,
                        kind,
                        status,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
        self._send(status, headers, payload, head=(method == "HEAD"))

    def _send(self, status: int, headers: dict[str, str], payload: bytes, head: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(payload))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def _json(self, data, status: int = 200, headers: dict | None = None):
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode()

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _check_token(self, kind: str) -> None:
        token = self._token()
        if token is not None and token not in self.hub.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        write_kinds = {
            "create_repo",
            "preupload",
            "commit",
            "lfs_batch",
            "branch",
            "whoami",
        }  # LFS PUTs are pre-signed
        if kind in write_kinds and token is None:
            raise HubError(401, "You must be authenticated to do this")

    # -- routing -----------------------------------------------------------------------------------------------
    def _route(self, method: str, seg: list[str]):
        if seg[:1] == ["_lfs"] and len(seg) == 2 and method == "PUT":
            return "lfs_upload", lambda: self._lfs_put(seg[1])
        if seg[:1] == ["api"]:
            return self._route_api(method, seg[1:])
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
        if len(seg) >= 2 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            return "lfs_batch", lambda: self._lfs_batch(repo_type, f"{seg[0]}/{seg[1][:-4]}")
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return "resolve", lambda: self._resolve(
                repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:])
            )
        return "unknown", None

    def _route_api(self, method: str, seg: list[str]):
        if seg == ["repos", "create"] and method == "POST":
            return "create_repo", self._create_repo
        if seg == ["validate-yaml"] and method == "POST":
            return "validate_yaml", self._validate_yaml
        if seg[:1] == ["whoami-v2"]:
            return "whoami", self._whoami
        if len(seg) < 3 or seg[0] not in REPO_TYPES:
            return "unknown", None
        repo_type, repo_id, rest = REPO_TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:]
        if not rest and method == "GET":
            return "info", lambda: self._info(repo_type, repo_id, "main")
        action = rest[0]
        if action == "revision" and len(rest) == 2 and method == "GET":
            return "info", lambda: self._info(repo_type, repo_id, rest[1])
        if action == "preupload" and len(rest) == 2 and method == "POST":
            return "preupload", lambda: self._preupload(repo_type, repo_id, rest[1])
        if action == "commit" and len(rest) == 2 and method == "POST":
            return "commit", lambda: self._commit(repo_type, repo_id, rest[1])
        if action == "branch" and len(rest) == 2 and method == "POST":
            return "branch", lambda: self._branch(repo_type, repo_id, rest[1])
        if action == "refs" and method == "GET":
            return "refs", lambda: self._refs(repo_type, repo_id)
        if action == "tree" and len(rest) >= 2 and method == "GET":
            return "tree", lambda: self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]))
        if action == "paths-info" and len(rest) == 2 and method == "POST":
            return "paths_info", lambda: self._paths_info(repo_type, repo_id, rest[1])
        return "unknown", None

    # -- helpers -----------------------------------------------------------------------------------------------
    def _get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self._token() is None):
            raise HubError(404, f"Repository {repo_id} not found", code="RepoNotFound")
        return repo

    def _get_commit(self, repo: Repo, revision: str) -> Commit:
        oid = repo.resolve(revision)
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo.commits[oid]

    def _body_json(self):
        try:
            return json.loads(self._body or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"Invalid JSON body: {err}") from err

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _repo_url(self, repo: Repo) -> str:
        return f"{self._base()}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"

    # -- endpoints ---------------------------------------------------------------------------------------------
    def _whoami(self):
        return self._json({"type": "user", "name": self.hub.user, "auth": {"type": "access_token"}})

    def _validate_yaml(self):
        content = self._body_json().get("content", "")
        if content.startswith("---"):
            end = content.find("\n---", 3)
            try:
                data = yaml.safe_load(content[3:end] if end > 0 else "")
            except yaml.YAMLError as err:
                return self._json({"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []}, 400)
            if data is not None and not isinstance(data, dict):
                return self._json(
                    {"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, 400
                )
        return self._json({"errors": [], "warnings": []})

    def _create_repo(self):
        payload = self._body_json()
        repo_type = payload.get("type") or "model"
        if payload.get("organization"):
            repo_id = f"{payload['organization']}/{payload['name']}"
        else:
            repo_id = f"{self.hub.user}/{payload['name']}"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo type {repo_type}")
        if repo_type == "space" and not payload.get("sdk"):
            raise HubError(400, "A Space needs an sdk")
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        if (repo_type, repo_id) in self.hub.repos:
            url = self._repo_url(self.hub.repos[(repo_type, repo_id)])
            raise HubError(409, "You already created this repo", extra={"url": url})
        repo = self.hub._create_repo(repo_type, repo_id, private, payload.get("sdk"))
        return self._json({"url": self._repo_url(repo), "name": repo_id})

    def _info(self, repo_type: str, repo_id: str, revision: str):
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        data = {
            "id": repo_id,
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "sha": commit.oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date)),
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            "tags": [],
        }
        if repo.sdk:
            data["sdk"] = repo.sdk
        return self._json(data)

    def _refs(self, repo_type: str, repo_id: str):
        repo = self._get_repo(repo_type, repo_id)
        branches = [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in repo.branches.items()
        ]
        prs = [
            {"name": f"refs/pr/{num}", "ref": f"refs/pr/{num}", "targetCommit": pr["head"]}
            for num, pr in repo.pull_requests.items()
        ]
        return self._json({"branches": branches, "tags": [], "converts": [], "pullRequests": prs})

    def _branch(self, repo_type: str, repo_id: str, branch: str):
        repo = self._get_repo(repo_type, repo_id)
        if branch in repo.branches:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        start = self._body_json().get("startingPoint") or "main"
        repo.branches[branch] = self._get_commit(repo, start).oid
        return self._json({})

    def _preupload(self, repo_type: str, repo_id: str, revision: str):
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        answers = []
        for item in self._body_json().get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = _is_lfs(path, size, base64.b64decode(item.get("sample", "")))
            existing = commit.files.get(path)
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid)
            answers.append(
                {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        return self._json({"files": answers, "commitOid": commit.oid})

    def _lfs_batch(self, repo_type: str, repo_id: str):
        self._get_repo(repo_type, repo_id)
        payload = self._body_json()
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self._base()}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(entry)
        return self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, sha: str):
        if hashlib.sha256(self._body).hexdigest() != sha:
            raise HubError(400, "LFS object content does not match its sha256")
        self.hub.lfs_objects[sha] = self._body
        return self._json({})

    def _commit(self, repo_type: str, repo_id: str, revision: str):
        repo = self._get_repo(repo_type, repo_id)
        base = self._get_commit(repo, revision)
        lines = [json.loads(line) for line in self._body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = self._query.get("create_pr") == ["1"]
        parent = header.get("parentCommit")
        if parent and not create_pr and not base.oid.startswith(parent):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(base.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                content = self.hub.lfs_objects.get(value["oid"])
                if content is None:
                    raise HubError(422, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = StoredFile(content, lfs=True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: f for p, f in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        oid = self.hub._new_oid(repo_id)
        repo.commits[oid] = Commit(
            oid, base.oid, header.get("summary", ""), header.get("description", ""), files
        )
        prefix = f"{self._base()}/{URL_PREFIXES[repo.repo_type]}{repo_id}"
        pr_url = None
        if create_pr:
            num = max(repo.pull_requests, default=0) + 1
            repo.pull_requests[num] = {"head": oid, "target": revision, "title": header.get("summary", "")}
            pr_url = f"{prefix}/discussions/{num}"
        elif revision.startswith("refs/pr/"):
            repo.pull_requests[int(revision[8:])]["head"] = oid
        else:
            if revision not in repo.branches:
                raise HubError(400, f"Cannot commit to {revision}: not a branch", code="RevisionNotFound")
            repo.branches[revision] = oid
        return self._json({"commitUrl": f"{prefix}/commit/{oid}", "commitOid": oid, "pullRequestUrl": pr_url})

    def _entry(self, path: str, stored: StoredFile) -> dict:
        entry = {"type": "file", "oid": stored.git_oid, "size": len(stored.content), "path": path}
        if stored.lfs:
            entry["lfs"] = {"oid": stored.sha256, "size": len(stored.content), "pointerSize": 134}
        return entry

    def _folders(self, files: dict[str, StoredFile]) -> set[str]:
        folders = set()
        for path in files:
            parts = path.split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return folders

    def _folder_entry(self, path: str) -> dict:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str):
        commit = self._get_commit(self._get_repo(repo_type, repo_id), revision)
        recursive = self._query.get("recursive", ["false"])[0].lower() == "true"
        folders = self._folders(commit.files)
        if path and path not in folders:
            raise HubError(404, f"{path} does not exist on {revision}", code="EntryNotFound")
        prefix = f"{path}/" if path else ""

        def wanted(item: str) -> bool:
            return item.startswith(prefix) and (recursive or "/" not in item[len(prefix) :])

        entries = [self._folder_entry(f) for f in sorted(folders) if wanted(f)]
        entries += [self._entry(p, s) for p, s in sorted(commit.files.items()) if wanted(p)]
        return self._json(entries)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str):
        commit = self._get_commit(self._get_repo(repo_type, repo_id), revision)
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            paths = self._body_json().get("paths", [])
        else:
            paths = parse_qs(self._body.decode()).get("paths", [])
        folders = self._folders(commit.files)
        entries = []
        for path in paths:
            if path in commit.files:
                entries.append(self._entry(path, commit.files[path]))
            elif path in folders:
                entries.append(self._folder_entry(path))
        return self._json(entries)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str):
        repo = self._get_repo(repo_type, repo_id)
        commit = self._get_commit(repo, revision)
        stored = commit.files.get(path)
        if stored is None:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound")
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.etag}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Last-Modified": email.utils.formatdate(commit.date, usegmt=True),
        }
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(len(stored.content))
        content = stored.content
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes=") and self._method == "GET":
            start_text, _, end_text = range_header[6:].partition("-")
            start = int(start_text or 0)
            end = min(int(end_text) if end_text else len(content) - 1, len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            return 206, headers, content[start : end + 1]
        return 200, headers, content
