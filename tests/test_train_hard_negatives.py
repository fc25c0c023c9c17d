"""examples/train.py with ``--hard_negatives N``: negatives mined with the base model reach the loss as extra
columns, never come from the anchor's positive group, are cached under the run's output folder (a rerun or a
resume does not mine again) and are recorded; bad values are refused before any model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import train  # noqa: E402  (examples/train.py)

LANGUAGES = ["en", "de", "es"]


def _flags(model: str, output_dir: Path, shared_data: Path, **overrides) -> list[str]:
    settings = {
        "model": model,
        "train_data": str(shared_data / "mlqa-r"),
        "train_languages": ",".join(LANGUAGES),
        "max_train_pairs": 400,
        "batch_size": 8,
        "max_steps": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "eval_data": "null",
        "evaluate_before": "false",
        "max_seq_length": 32,
        "output_dir": str(output_dir),
        "seed": 3,
        "hard_negatives": 2,
    }
    settings.update(overrides)
    return [token for key, value in settings.items() for token in (f"--{key}", str(value))]


class _Recorder:
    """Counts mining calls and records what the trainer and its loss received."""

    def __init__(self, monkeypatch):
        import st_hybrid
        from st_hybrid import mining

        self.mining_calls = 0
        self.loss_inputs: list[int] = []
        self.train_columns: list[str] = []
        real_mine, real_build_loss, real_trainer = (
            mining.mine_hard_negatives,
            train.build_loss,
            st_hybrid.HybridTrainer,
        )

        def mine(*args, **kwargs):
            self.mining_calls += 1
            return real_mine(*args, **kwargs)

        def build_loss(arguments, model):
            loss = real_build_loss(arguments, model)
            loss.register_forward_pre_hook(lambda module, args: self.loss_inputs.append(len(args[0])))
            return loss

        def trainer(*args, **kwargs):
            self.train_columns = list(kwargs["train_dataset"].column_names)
            return real_trainer(*args, **kwargs)

        monkeypatch.setattr(mining, "mine_hard_negatives", mine)
        monkeypatch.setattr(train, "build_loss", build_loss)
        monkeypatch.setattr(st_hybrid, "HybridTrainer", trainer)


def _group_texts(table) -> dict[str, set[str]]:
    """Texts relevant to each parallel id, by an independent union-find: ids linked by a shared answer
    sentence or question are one group; a group's texts are all its questions and answers, in every language."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for pid, question, answer in zip(table["parallel_id"], table["question"], table["answer"], strict=True):
        for text in (question, answer):
            parent[find("t:" + text)] = find("p:" + str(pid))
    texts: dict[str, set[str]] = defaultdict(set)
    for question, answer in zip(table["question"], table["answer"], strict=True):
        texts[find("t:" + answer)] |= {question, answer}
    return {str(pid): texts[find("p:" + str(pid))] for pid in table["parallel_id"]}


def test_mined_negatives_reach_the_loss_outside_the_positive_group_and_are_cached(
    tiny_model_path, shared_data, tmp_path, monkeypatch
):
    from datasets import load_from_disk

    from st_hybrid.data import load_parallel
    from st_hybrid.mining import lareqa_corpus

    recorder = _Recorder(monkeypatch)
    out = tmp_path / "run"
    results = train.main(_flags(tiny_model_path, out, shared_data))

    # Mined once, with the base model; the columns went to the trainer and the loss got four inputs per row.
    assert recorder.mining_calls == 1
    assert recorder.train_columns[:4] == ["query", "passage", "negative_1", "negative_2"]
    assert recorder.loss_inputs and set(recorder.loss_inputs) == {4}
    mined = load_from_disk(str(out / "hard_negatives" / "pairs"))
    assert len(mined) == results["train_pairs"] > 0 and results["global_step"] == 2
    # Mined negatives are passages: their columns get the passage prompt, like the passage column.
    prompts = results["training_arguments"]["prompts"]
    assert prompts["negative_1"] == prompts["negative_2"] == prompts["passage"] == "passage: "

    # No negative is relevant to its anchor: no text of its parallel id's group (translations of its
    # answer included, in every language, also those max_train_pairs left out), no training text at all
    # (negatives come from the paragraph sentences), and each is in its passage's language.
    table = load_parallel(shared_data / "mlqa-r", languages=LANGUAGES)
    relevant = _group_texts(table)
    training_texts = set(mined["query"]) | set(mined["passage"])
    corpus = lareqa_corpus(shared_data / "mlqa-r", languages=LANGUAGES)
    languages_of = defaultdict(set)
    for text, language in zip(corpus["text"], corpus["language"], strict=True):
        languages_of[text].add(language)
    for row in mined:
        for negative in (row["negative_1"], row["negative_2"]):
            assert negative not in relevant[str(row["parallel_id"])]
            assert negative not in training_texts
            assert row["passage_language"] in languages_of[negative]
        assert row["negative_1"] != row["negative_2"]

    # Recorded in results.json and in the model card.
    summary = results["hard_negatives"]
    assert summary["num_negatives"] == 2 and summary["reused"] is False
    assert summary["options"]["language"] == "passage" and summary["pairs"] == len(mined)
    # Paragraph sentences are nobody's positive: the sampler's positive groups are those of the plain pairs.
    assert summary["positive_groups"]["after"] == summary["positive_groups"]["before"] > 8
    assert json.loads((out / "results.json").read_text())["hard_negatives"]["pairs"] == len(mined)
    card = (out / "model" / "README.md").read_text()
    assert "Hard negatives" in card and "st_hybrid.mining.mine_hard_negatives" in card

    # A rerun (start over in the same folder) and a resume reuse the mined pairs: no mining.
    rerun = train.main([*_flags(tiny_model_path, out, shared_data), "--overwrite"])
    assert recorder.mining_calls == 1 and rerun["hard_negatives"]["reused"] is True
    resumed = train.main([*_flags(tiny_model_path, out, shared_data, max_steps=3), "--resume"])
    assert recorder.mining_calls == 1 and resumed["hard_negatives"]["reused"] is True
    assert resumed["global_step"] == 3

    # Another mining option is another input: mined again.
    other = train.main(
        [*_flags(tiny_model_path, out, shared_data, hard_negatives_language="any"), "--overwrite"]
    )
    assert recorder.mining_calls == 2 and other["hard_negatives"]["reused"] is False


def test_a_separate_mining_model_mines_with_its_own_prompts_and_is_recorded(
    tiny_model_path, shared_data, tmp_path, monkeypatch
):
    """--hard_negatives_model: another model mines (e.g. a small one for a large base), with its stored
    prompts; the base model trains. The miner is part of the cache key and named in results and card."""
    from st_hybrid import mining
    from st_hybrid.testing import build_tiny_model

    miner = build_tiny_model(
        tmp_path / "miner", seed=7, prompts={"query": "ask: ", "document": "doc: "}, hidden_size=16
    )
    calls = []
    real_mine = mining.mine_hard_negatives

    def mine(pairs, model, **kwargs):
        calls.append(
            (model.get_sentence_embedding_dimension(), kwargs["query_prompt"], kwargs["passage_prompt"])
        )
        return real_mine(pairs, model, **kwargs)

    monkeypatch.setattr(mining, "mine_hard_negatives", mine)
    out = tmp_path / "run"
    results = train.main(
        _flags(tiny_model_path, out, shared_data, hard_negatives=1, hard_negatives_model=miner)
    )

    # The 16-dimensional miner mined, with its stored prompts (None: mine_hard_negatives picks them); the
    # 32-dimensional base model trained, with the run's prompts on the mined column.
    assert calls == [(16, None, None)]
    assert results["global_step"] == 2
    assert results["training_arguments"]["prompts"]["negative"] == "passage: "
    summary = results["hard_negatives"]
    assert summary["mined_with"] == miner and summary["mined_with_base_model"] is False
    card = (out / "model" / "README.md").read_text()
    assert f"mined with `{miner}` (not the base model)" in card

    # Another miner is another input: the base model's own mining does not reuse the miner's negatives.
    again = train.main([*_flags(tiny_model_path, out, shared_data, hard_negatives=1), "--overwrite"])
    assert len(calls) == 2 and calls[1] == (32, "query: ", "passage: ")
    assert again["hard_negatives"]["reused"] is False and again["hard_negatives"]["mined_with_base_model"]
    assert "mined with the base model before training" in (out / "model" / "README.md").read_text()


def test_paragraph_candidates_exclude_every_answer_of_the_training_data(shared_data, tmp_path):
    """max_train_pairs keeps a subset; the answers it left out (translations of kept answers) stay out of the
    candidates, so language 'any' cannot mine a kept pair's translated answer as its negative."""
    from st_hybrid.data import load_parallel

    arguments = train.parse_args(
        _flags(
            "unused-model", tmp_path / "run", shared_data, max_train_pairs=50, hard_negatives_language="any"
        )
    )
    pairs = train.build_pairs(arguments)
    corpus = train.hard_negative_corpus(arguments)
    answers = set(load_parallel(shared_data / "mlqa-r", languages=LANGUAGES)["answer"])
    assert len(answers - set(pairs["passage"])) > 1000  # most answers are in no kept pair
    assert len(corpus["text"]) > 1000 and not answers & set(corpus["text"])
    assert set(corpus["language"]) == set(LANGUAGES)


def test_evaluation_texts_are_never_hard_negative_candidates(shared_data, tmp_path):
    """MLQA-R and XQuAD-R paragraphs share boilerplate sentences (e.g. Hindi "[citation needed]"): mined as a
    negative, such a sentence would be a training text in the evaluation pool. The run's evaluation texts are
    left out of the candidates."""
    arguments = train.parse_args(
        _flags(
            "unused-model",
            tmp_path / "run",
            shared_data,
            train_languages="en,de,es,hi",
            eval_data=shared_data / "xquad-r",
        )
    )
    evaluator = train.build_evaluator(arguments)
    evaluation_texts = {*evaluator.candidate_texts, *evaluator.query_texts}
    everything = set(train.hard_negative_corpus(arguments)["text"])
    shared = everything & evaluation_texts
    assert shared  # real data: the check below has something to remove
    kept = set(train.hard_negative_corpus(arguments, evaluation_texts)["text"])
    assert kept == everything - shared


def test_the_run_mines_outside_its_evaluation_texts(tiny_model_path, shared_data, tmp_path, monkeypatch):
    excluded = []
    real_corpus = train.hard_negative_corpus

    def corpus(arguments, exclude=frozenset()):
        excluded.append(set(exclude))
        return real_corpus(arguments, exclude)

    monkeypatch.setattr(train, "hard_negative_corpus", corpus)
    flags = _flags(
        tiny_model_path,
        tmp_path / "run",
        shared_data,
        hard_negatives=1,
        eval_data=shared_data / "xquad-r",
        eval_max_articles=1,
    )
    train.main(flags)
    evaluator = train.build_evaluator(train.parse_args(flags))
    assert excluded == [{*evaluator.candidate_texts, *evaluator.query_texts}]


def test_bitext_beside_lareqa_data_gets_negatives_from_its_paragraphs(
    tiny_model_path, shared_data, tmp_path, monkeypatch
):
    """MLQA-R with Tatoeba bitext: every row, bitext included, gets paragraph-sentence negatives that are no
    training text; the sampler's positive groups are those of the plain pairs."""
    from datasets import load_from_disk

    from st_hybrid.mining import lareqa_corpus

    recorder = _Recorder(monkeypatch)
    out = tmp_path / "run"
    flags = _flags(
        tiny_model_path,
        out,
        shared_data,
        train_data=f"[{shared_data / 'mlqa-r'},{shared_data / 'tatoeba'}]",
        train_languages="en,de,ell,tha,eng",
        max_train_pairs=300,
        hard_negatives=1,
        hard_negatives_language="any",
    )
    results = train.main(flags)

    assert recorder.mining_calls == 1 and set(recorder.loss_inputs) == {3}
    mined = load_from_disk(str(out / "hard_negatives" / "pairs"))
    assert len(mined) == results["train_pairs"]  # no row dropped
    bitext = [row for row in mined if row["passage_language"] in {"ell", "tha", "eng"}]
    assert 0 < len(bitext) < len(mined)  # both sources trained
    paragraphs = set(lareqa_corpus(shared_data / "mlqa-r", languages=["en", "de"])["text"])
    training_texts = set(mined["query"]) | set(mined["passage"])
    assert all(row["negative"] in paragraphs and row["negative"] not in training_texts for row in mined)
    groups = results["hard_negatives"]["positive_groups"]
    assert groups["after"] == groups["before"]


def test_negatives_from_the_training_passages_that_chain_every_pair_are_refused(
    tiny_model_path, shared_data, tmp_path
):
    """Mined from the training passages, each negative is another pair's positive: on MLQA-R they join the
    pairs into fewer positive groups than one batch needs. The run stops with the fix before training."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="Set hard_negatives_from: paragraphs") as refused:
        train.main(_flags(tiny_model_path, out, shared_data, hard_negatives_from="passages"))
    assert "positive group(s) (before mining:" in str(refused.value)
    assert not (out / "model").exists() and not (out / "checkpoints").exists()


def test_runs_without_hard_negatives_keep_their_cache_keys(tmp_path):
    """The new options are not inputs of a run that does not mine: cached results of older runs stay valid."""
    base = ["--eval_data", "null", "--output_dir", str(tmp_path)]
    plain = train.parse_args(base)
    off = train.parse_args([*base, "--hard_negatives", "0", "--hard_negatives_language", "any"])
    assert train.run_inputs(plain) == train.run_inputs(off)
    assert not any(key.startswith("hard_negatives") for key in train.run_inputs(plain)["options"])
    assert plain.training.prompts == {"query": "query: ", "passage": "passage: "}
    on = train.parse_args([*base, "--hard_negatives", "1"])
    assert train.run_inputs(on)["options"]["hard_negatives"] == 1
    # At its default the miner is left out of the inputs: caches of older mining runs stay valid.
    assert "hard_negatives_model" not in train.run_inputs(on)["options"]
    miner = train.parse_args([*base, "--hard_negatives", "1", "--hard_negatives_model", "some/miner"])
    assert train.run_inputs(miner)["options"]["hard_negatives_model"] == "some/miner"
    assert on.training.prompts["negative"] == "passage: "


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--hard_negatives", "-1"], "hard_negatives must be >= 0"),
        (
            ["--hard_negatives", "1", "--hard_negatives_language", "target"],
            "hard_negatives_language must be one of",
        ),
        (["--hard_negatives", "1", "--hard_negatives_from", "wiki"], "hard_negatives_from must be one of"),
        (
            ["--hard_negatives", "3", "--hard_negatives_range_min", "2", "--hard_negatives_range_max", "4"],
            "set it to at least 5",
        ),
        (["--hard_negatives", "1", "--hard_negatives_relative_margin", "1.5"], "must be below 1"),
        (["--hard_negatives", "1", "--train_data", "{tatoeba}"], "set hard_negatives_from: passages"),
        (
            ["--hard_negatives", "1", "--train_data", "[{mlqa},{tatoeba}]"],
            "Set hard_negatives_language: any",
        ),
    ],
)
def test_bad_hard_negative_options_are_refused_before_anything_loads(
    flags, message, shared_data, tmp_path, capsys
):
    out = tmp_path / "run"
    flags = [flag.format(tatoeba=shared_data / "tatoeba", mlqa=shared_data / "mlqa-r") for flag in flags]
    with pytest.raises(SystemExit):
        train.main(["--model", "no/such-model", "--eval_data", "null", "--output_dir", str(out), *flags])
    assert message in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


@pytest.mark.slow
def test_two_processes_mine_once_and_train_on_the_negatives(tiny_model_path, shared_data, tmp_path):
    """Under accelerate launch the main process mines; the other waits and loads the same mined pairs."""
    out = tmp_path / "ddp"
    accelerate = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
    ]
    flags = _flags(tiny_model_path, out, shared_data, hard_negatives=1, batch_size=4)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*accelerate, str(ROOT / "examples" / "train.py"), *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 2 and results["global_step"] == 2
    assert results["hard_negatives"]["columns"] == ["negative"]
    assert log.count("st_hybrid.mining: Pool en:") == 1  # one process mined
    assert log.count("Hard negatives: 1 per pair") == 2  # both trained on the mined pairs
