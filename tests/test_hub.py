"""Publishing round trips through the real client libraries against a local Hub-compatible server.

Publishing runs in-process (``st_hybrid.hub`` reads ``HF_ENDPOINT`` at call time and passes it to
``HfApi(endpoint=...)``); loading runs in a subprocess where ``HF_ENDPOINT`` is set before sentence-transformers /
datasets / evaluate are imported and ``st_hybrid`` is made unimportable, as for a user who only has the public
libraries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer  # tests/ is on sys.path (pytest rootdir-less "prepend" import mode)

TOKEN = "hf_stHybridTestToken0123456789abcdef"
REAL_METRIC = (
    Path(__file__).resolve().parents[1] / "st_hybrid" / "evaluate_metric" / "language_aware_retrieval"
)

METRIC_SCRIPT = '''\
"""Mean average precision over the full ranking (a small test metric)."""
import datasets
import evaluate
import numpy as np


class TinyMap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="mAP",
            citation="",
            inputs_description="predictions: scores per candidate; references: 0/1 relevance per candidate",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references):
        aps = []
        for scores, relevant in zip(predictions, references):
            order = np.argsort(-np.asarray(scores), kind="stable")
            rel = np.asarray(relevant)[order]
            precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
            aps.append(float(precision[rel == 1].mean()) if rel.sum() else 0.0)
        return {"map": float(np.mean(aps))}
'''
METRIC_INPUTS = {"predictions": [[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]], "references": [[0, 1, 1], [1, 0, 0]]}
# The example of the real metric's docstring (multi_map 0.875, rank_distance 2.0).
REAL_METRIC_INPUTS = {
    "predictions": [[0.9, 0.1, 0.8, 0.2], [0.3, 0.7, 0.6, 0.1]],
    "references": [[0, 2], [1, 3]],
    "query_languages": ["en", "de"],
    "candidate_languages": ["en", "en", "de", "de"],
}
METRIC_EXPECTED = ((1 / 2 + 2 / 3) / 2 + 1 / 3) / 2  # AP(query 1) = mean(P@2, P@3); AP(query 2) = P@3

READER = """\
import json, os, sys
sys.modules["st_hybrid"] = None  # the reading side must not need st-hybrid
args = json.loads(sys.argv[1])
out = {}
if "model" in args:
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(args["model"])
    out["embeddings"] = model.encode(args["texts"]).tolist()
if "dataset" in args:
    from datasets import load_dataset
    out["rows"] = load_dataset(args["dataset"], split="train").to_list()
if "metric" in args:
    import evaluate
    module = evaluate.load(args["metric"])
    out["metric"] = module.compute(**args["metric_inputs"])
if "real_metric" in args:
    import evaluate
    out["real_metric"] = evaluate.load(args["real_metric"]).compute(**args["real_metric_inputs"])
print("RESULT" + json.dumps(out, default=float))
"""


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub():
    with HubServer(tokens={TOKEN}) as server:
        yield server


@pytest.fixture
def hub_env(hub, monkeypatch, tmp_path):
    """Point the in-process clients at the server.

    st_hybrid.hub reads ``HF_ENDPOINT`` at call time. ``HF_HUB_DISABLE_XET`` is read by huggingface_hub once, at
    import (docs/hub.md: set it before importing); this process imported it already, so the test sets the
    constant the variable would have set (the local server speaks the git-LFS protocol, not Xet).
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.clear_faults()
    return hub


def _reader_env(hub: HubServer, tmp_path: Path, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "reader-hf-home"),
               HF_UPDATE_DOWNLOAD_COUNTS="0", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
               TMPDIR=str(tmp_path))  # fmt: skip
    if token:
        env["HF_TOKEN"] = token
    return env


def _read_back(hub: HubServer, tmp_path: Path, token: str | None = None, **request) -> dict:
    script = tmp_path / "reader.py"
    script.write_text(READER)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(request)],
        cwd=tmp_path,
        env=_reader_env(hub, tmp_path, token),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def _make_report(folder: Path, name: str = "xquad-r", languages=("ar", "de", "en", "el")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    per_language = {
        lang: {
            "mono_map": 0.71 + i / 100,
            "cross_map": 0.52 + i / 100,
            "multi_map": 0.43 + i / 100,
            "rank_distance": 210.0 + i,
            "multi_ndcg@10": 0.64 + i / 100,
        }  # fmt: skip
        for i, lang in enumerate(languages)
    }
    report = {
        "name": name, "languages": list(languages), "num_queries": 40, "num_candidates": 52,
        "metrics": {"mono_map": 0.7345, "cross_map": 0.5456, "multi_map": 0.4567, "rank_distance": 212.5,
                    "multi_ndcg@10": 0.6678},
        "per_language": per_language,
        "pair_map": {a: {b: 0.7 if a == b else 0.5 for b in languages} for a in languages},
    }  # fmt: skip
    path = folder / f"{name}_metrics.json"
    path.write_text(json.dumps(report))
    _tiny_png(folder / f"{name}_pair_map.png")
    return path


def _tiny_png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
    ax.imshow([[0.7, 0.5], [0.5, 0.7]])
    fig.savefig(path)
    plt.close(fig)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _card_info():
    from st_hybrid.model_card import ModelCardInfo

    return ModelCardInfo(
        base_model="intfloat/multilingual-e5-small",
        languages=["ar", "de", "en"],
        language_weighting="uniform",
        hyperparameters={"learning_rate": 3e-5, "batch_size": 100},
    )


def _metric_folder(root: Path, name: str = "tiny_map") -> Path:
    """A metric folder whose script is a symlink (publishing must upload the real file)."""
    outside = root / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "script.py").write_text(METRIC_SCRIPT)
    folder = root / name
    folder.mkdir()
    (folder / f"{name}.py").symlink_to(outside / "script.py")
    (folder / "README.md").write_text(
        "---\ntitle: Tiny mAP\nsdk: gradio\napp_file: app.py\n---\n\n# Tiny mAP\n"
    )
    (folder / "app.py").write_text("import evaluate\n")
    (folder / "requirements.txt").write_text("evaluate\nnumpy\n")
    return folder


def _pairs_dataset():
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "query": ["Where is Paris?", "Wo ist Berlin?", "Where is Rome?", "ما هي عاصمة فرنسا؟"],
            "passage": ["Paris ist in Frankreich.", "Berlin is in Germany.", "Rome is in Italy.", "Paris."],
            "query_language": ["en", "de", "en", "ar"],
            "passage_language": ["de", "en", "en", "en"],
            "parallel_id": ["0", "1", "2", "0"],
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_round_trips_model_dataset_metric(hub_env, tiny_model_path, tmp_path):
    """Publish all three artifacts, then load them with the public libraries only (one subprocess)."""
    from sentence_transformers import SentenceTransformer

    from st_hybrid.hub import publish_dataset, publish_metric, publish_model

    report = _make_report(tmp_path / "eval")
    model_result = publish_model(tiny_model_path, "user/rt-model", card_info=_card_info(), reports=[report])
    dataset = _pairs_dataset()
    publish_dataset(dataset, "user/rt-data")
    publish_metric(_metric_folder(tmp_path), "user/tiny_map")

    request = {"model": "user/rt-model", "texts": ["Query: Wo ist Paris?", "Passage: Paris est en France."],
               "dataset": "user/rt-data", "metric": "user/tiny_map", "metric_inputs": METRIC_INPUTS}  # fmt: skip
    if REAL_METRIC.is_dir():
        publish_metric(REAL_METRIC, "user/language_aware_retrieval")
        request.update(real_metric="user/language_aware_retrieval", real_metric_inputs=REAL_METRIC_INPUTS)
    out = _read_back(hub_env, tmp_path, **request)

    import numpy as np

    local = SentenceTransformer(tiny_model_path).encode(request["texts"])
    np.testing.assert_allclose(np.asarray(out["embeddings"]), local, atol=1e-6)
    assert out["rows"] == dataset.to_list()
    assert out["metric"]["map"] == pytest.approx(METRIC_EXPECTED)
    if REAL_METRIC.is_dir():  # the Hub copy computes what the local folder computes
        import evaluate

        local_numbers = evaluate.load(str(REAL_METRIC)).compute(**REAL_METRIC_INPUTS)
        assert out["real_metric"] == json.loads(json.dumps(local_numbers, default=float))
        assert out["real_metric"]["multi_map"] == pytest.approx(0.875)

    files = hub_env.files("user/rt-model")
    assert model_result.commit_oid == hub_env.head_commit("user/rt-model").oid
    assert files["assets/xquad-r_pair_map.png"] == (tmp_path / "eval" / "xquad-r_pair_map.png").read_bytes()
    assert json.loads(files["eval/xquad-r_metrics.json"])["metrics"]["mono_map"] == 0.7345
    image_url = f"{hub_env.url}/user/rt-model/resolve/main/assets/xquad-r_pair_map.png"
    assert f"![xquad-r language-pair mAP]({image_url})" in files["README.md"].decode()
    import httpx2

    assert (
        httpx2.get(image_url).content == files["assets/xquad-r_pair_map.png"]
    )  # the card's image link works
    space = hub_env.files("user/tiny_map", "space")
    assert space["tiny_map.py"].decode() == METRIC_SCRIPT  # the symlink was resolved into a real file
    assert hub_env.repo("user/tiny_map", "space").sdk == "gradio"
    card = hub_env.files("user/rt-data", "dataset")["README.md"].decode()
    assert "| en-de | 1 |" in card and "dataset_info:" in card and "configs:" in card


def test_in_memory_model_is_saved_with_save_pretrained(hub_env, tiny_model_path):
    from sentence_transformers import SentenceTransformer

    from st_hybrid.hub import publish_model

    model = SentenceTransformer(tiny_model_path)
    publish_model(model, "user/in-memory", card_info=_card_info())
    files = hub_env.files("user/in-memory")
    assert {"modules.json", "config_sentence_transformers.json", "README.md"} <= set(files)
    assert any(name.endswith(".safetensors") for name in files)
    assert 'SentenceTransformer("user/in-memory")' in files["README.md"].decode()


def test_endpoint_is_passed_to_hfapi_not_patched_into_libraries(hub_env, tiny_model_path):
    """The import-time endpoint of huggingface_hub and datasets stays what it was; the upload still lands."""
    import datasets
    from huggingface_hub import constants

    from st_hybrid.hub import publish_dataset, publish_model

    before = (constants.ENDPOINT, datasets.config.HF_ENDPOINT, constants.HF_HUB_DISABLE_XET)
    assert hub_env.url != constants.ENDPOINT  # set after import: only st_hybrid.hub follows it
    publish_model(tiny_model_path, "user/endpoint-model")
    publish_dataset(_pairs_dataset(), "user/endpoint-data")
    assert before == (constants.ENDPOINT, datasets.config.HF_ENDPOINT, constants.HF_HUB_DISABLE_XET)
    assert "modules.json" in hub_env.files("user/endpoint-model")
    assert any(p.startswith("data/train-") for p in hub_env.files("user/endpoint-data", "dataset"))


# ---------------------------------------------------------------------------------------------------------------
# Options reach the server
# ---------------------------------------------------------------------------------------------------------------
def test_private_revision_and_commit_message(hub_env, tiny_model_path, tmp_path):
    import shutil

    from st_hybrid.hub import publish_model

    model = tmp_path / "output"
    shutil.copytree(tiny_model_path, model)
    (model / "checkpoint-10").mkdir()
    (model / "checkpoint-10" / "optimizer.pt").write_bytes(b"trainer state")
    (model / "tokenizer.json.lock").write_text("")
    result = publish_model(model, "user/opts", card_info=_card_info(), private=True, revision="exp-1",
                           commit_message="Hybrid alpha=0.5 run")  # fmt: skip
    uploaded = hub_env.files("user/opts", revision="exp-1")
    assert not any(path.startswith("checkpoint-") or path.endswith(".lock") for path in uploaded)
    repo = hub_env.repo("user/opts")
    assert repo.private is True
    assert "modules.json" in hub_env.files("user/opts", revision="exp-1")
    assert "modules.json" not in hub_env.files("user/opts", revision="main")
    assert hub_env.head_commit("user/opts", revision="exp-1").summary == "Hybrid alpha=0.5 run"
    assert result.revision == "exp-1" and result.commit_oid == repo.branches["exp-1"]
    # Private means private: an anonymous request does not see it.
    import httpx2

    assert httpx2.get(f"{hub_env.url}/api/models/user/opts").status_code == 404


def test_create_pr_leaves_main_untouched(hub_env, tiny_model_path, tmp_path):
    from st_hybrid.hub import publish_dataset, publish_model

    publish_model(tiny_model_path, "user/pr-model", card_info=_card_info())
    main_before = hub_env.head_commit("user/pr-model").oid
    result = publish_model(tiny_model_path, "user/pr-model", card_info=_card_info(), reports=[_make_report(tmp_path)],
                           create_pr=True, commit_message="Add evaluation")  # fmt: skip
    repo = hub_env.repo("user/pr-model")
    assert repo.branches["main"] == main_before
    assert result.pr_url and result.pr_url.endswith("/discussions/1")
    pr_files = hub_env.files("user/pr-model", revision="refs/pr/1")
    assert "assets/xquad-r_pair_map.png" in pr_files
    assert "assets/xquad-r_pair_map.png" not in hub_env.files("user/pr-model")
    assert any(r.query.get("create_pr") == ["1"] for r in hub_env.requests_of("commit"))

    # A dataset PR holds both the data and the card; main stays empty.
    data = publish_dataset(_pairs_dataset(), "user/pr-data", create_pr=True)
    assert data.pr_url
    pr = hub_env.files("user/pr-data", "dataset", revision="refs/pr/1")
    assert "| en-de | 1 |" in pr["README.md"].decode()
    assert any(p.startswith("data/train-") for p in pr)
    assert not any(p.startswith("data/") for p in hub_env.files("user/pr-data", "dataset"))


# ---------------------------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("commit", 500, ["500", "rerun the same command"]),
        ("preupload", 401, ["401", "hf auth login", "HF_TOKEN"]),
    ],
)
def test_model_failure_is_clear_local_intact_and_retry_succeeds(
    hub_env, tiny_model_path, tmp_path, kind, status, expected
):
    from st_hybrid.hub import PublishError, publish_model

    report = _make_report(tmp_path / "eval")
    repo_id = f"user/fail-{kind}"
    before = _tree_digest(Path(tiny_model_path)) | {"eval": _tree_digest(report.parent)}
    hub_env.add_fault(kind, status=status)
    with pytest.raises(PublishError) as info:
        publish_model(tiny_model_path, repo_id, card_info=_card_info(), reports=[report])
    message = str(info.value)
    assert all(part in message for part in expected), message
    assert repo_id in message and TOKEN not in message
    assert _tree_digest(Path(tiny_model_path)) | {"eval": _tree_digest(report.parent)} == before
    assert "modules.json" not in hub_env.files(repo_id)  # nothing half-committed

    publish_model(tiny_model_path, repo_id, card_info=_card_info(), reports=[report])  # the retry
    assert hub_env.files(repo_id)["modules.json"] == (Path(tiny_model_path) / "modules.json").read_bytes()


@pytest.mark.parametrize(("kind", "status"), [("commit", 503), ("preupload", 401)])
def test_dataset_failure_then_retry(hub_env, tmp_path, kind, status):
    from datasets import load_from_disk

    from st_hybrid.hub import PublishError, publish_dataset

    folder = tmp_path / "pairs"
    _pairs_dataset().save_to_disk(str(folder))
    before = _tree_digest(folder)
    repo_id = f"user/fail-data-{kind}"
    hub_env.add_fault(kind, status=status)
    with pytest.raises(PublishError, match=str(status)):
        publish_dataset(folder, repo_id)
    assert _tree_digest(folder) == before
    assert load_from_disk(str(folder)).to_list() == _pairs_dataset().to_list()

    assert not any(p.startswith("data/") for p in hub_env.files(repo_id, "dataset"))  # nothing half-committed
    publish_dataset(folder, repo_id)
    files = hub_env.files(repo_id, "dataset")
    assert any(p.startswith("data/train-") for p in files) and "st-hybrid" in files["README.md"].decode()


def test_metric_failure_then_retry(hub_env, tmp_path):
    from st_hybrid.hub import PublishError, publish_metric

    folder = _metric_folder(tmp_path, "retry_map")
    hub_env.add_fault("commit", status=401)
    with pytest.raises(PublishError, match="401"):
        publish_metric(folder, "user/retry_map")
    assert (folder / "retry_map.py").read_text() == METRIC_SCRIPT
    publish_metric(folder, "user/retry_map")
    assert "retry_map.py" in hub_env.files("user/retry_map", "space")


def test_missing_token_names_the_fix(hub_env, monkeypatch, tiny_model_path):
    import huggingface_hub

    from st_hybrid.hub import PublishError, publish_model

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(PublishError, match="hf auth login"):
        publish_model(tiny_model_path, "user/no-token")
    assert ("model", "user/no-token") not in hub_env.repos


def test_unreachable_hub_names_hf_endpoint(hub_env, monkeypatch, tiny_model_path):
    import socket

    from st_hybrid.hub import PublishError, publish_model

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(PublishError, match="Could not reach the Hub.*HF_ENDPOINT"):
        publish_model(tiny_model_path, "user/unreachable")


def test_bad_inputs_are_rejected_before_any_request(hub_env, tmp_path):
    from st_hybrid.hub import PublishError, publish_model

    count = len(hub_env.requests)
    with pytest.raises(PublishError, match="modules.json"):
        publish_model(tmp_path, "user/x")
    with pytest.raises(PublishError, match="user-or-org/name"):
        publish_model(tmp_path, "no-namespace")
    assert len(hub_env.requests) == count


# ---------------------------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------------------------
def test_token_never_in_uploaded_files_or_logs(hub_env, tiny_model_path, tmp_path, caplog, capfd):
    from huggingface_hub.utils import logging as hf_logging

    from st_hybrid.cli import main

    caplog.set_level(logging.DEBUG)
    hf_logging.set_verbosity_debug()
    try:
        report = _make_report(tmp_path / "eval")
        assert (
            main(["-v", "publish", "model", tiny_model_path, "user/secret-model", "--report", str(report)])
            == 0
        )
        folder = tmp_path / "pairs"
        _pairs_dataset().save_to_disk(str(folder))
        assert main(["-v", "publish", "dataset", str(folder), "user/secret-data"]) == 0
        assert main(["-v", "publish", "metric", str(_metric_folder(tmp_path)), "user/tiny_map2"]) == 0
        hub_env.add_fault("commit", status=401)
        assert main(["-v", "publish", "model", tiny_model_path, "user/secret-model"]) == 1
    finally:
        hf_logging.set_verbosity_warning()
    captured = capfd.readouterr()
    secret = TOKEN.encode()
    assert all(secret not in blob for blob in hub_env.all_stored_bytes())
    assert TOKEN not in caplog.text and TOKEN not in captured.out and TOKEN not in captured.err
    assert "Published model user/secret-model" in captured.out  # the logs were really captured
    assert "401" in captured.err
    # ... and the token was really used, in the Authorization header only.
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub_env.requests_of("commit"))


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
def test_cli_publish_model_with_options(hub_env, tiny_model_path, tmp_path, capsys):
    from st_hybrid.cli import main

    card_info = tmp_path / "card.yaml"
    card_info.write_text("base_model: intfloat/multilingual-e5-small\nstrategy: hybrid\nalpha: 0.4\n"
                         "languages: [en, de]\nlanguage_weighting: uniform\n")  # fmt: skip
    report = _make_report(tmp_path / "eval")
    code = main(["publish", "model", tiny_model_path, "user/cli-model", "--card-info", str(card_info),
                 "--report", str(report), "--private", "--revision", "v1", "--commit-message", "From the CLI"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "Published model user/cli-model" in capsys.readouterr().out
    assert hub_env.repo("user/cli-model").private
    commit = hub_env.head_commit("user/cli-model", revision="v1")
    assert commit.summary == "From the CLI"
    readme = commit.files["README.md"].content.decode()
    assert "| alpha (probability of a monolingual batch) | 0.4 |" in readme
    assert "| xquad-r | subset | 4 | 40 | 52 | 0.7345 | 0.5456 | 0.4567 | 212.5 | 0.6678 |" in readme


def test_cli_reports_errors_with_exit_code(hub_env, tmp_path, capsys):
    from st_hybrid.cli import main

    assert main(["publish", "model", str(tmp_path), "user/not-a-model"]) == 1
    assert "modules.json" in capsys.readouterr().err
