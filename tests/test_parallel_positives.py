"""Several positives per query: ``st_hybrid.data.add_parallel_positives`` (a pair's answer in more languages),
``st_hybrid.losses.MultiPositiveRankingLoss`` (hand-computed values, MNRL as its one-positive case) and
``examples/train.py --parallel_positives N`` end to end."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from st_hybrid.data import add_parallel_positives, build_training_pairs, load_parallel
from st_hybrid.losses import MultiPositiveRankingLoss
from st_hybrid.sampler import HybridBatchSampler, PairMetadata

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import train  # noqa: E402  (examples/train.py)


# ---------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------
def _identity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dot product: scores are readable from the toy embeddings."""
    return a @ b.T


def test_loss_matches_a_hand_computation():
    # Two rows, two positives each, one negative each. 1-d embeddings: score = query * candidate.
    queries = torch.tensor([[1.0], [2.0]])
    passage = torch.tensor([[3.0], [0.5]])
    passage_2 = torch.tensor([[1.0], [-1.0]])
    negative = torch.tensor([[2.0], [0.0]])
    loss = MultiPositiveRankingLoss(None, num_positives=2, scale=1.0, similarity_fct=_identity)
    value = loss.compute_loss_from_embeddings([queries, passage, passage_2, negative])

    def term(positive: float, negatives: list[float]) -> float:
        return -math.log(math.exp(positive) / (math.exp(positive) + sum(math.exp(n) for n in negatives)))

    # Row 0 (q=1): candidates 3, .5 | 1, -1 | 2, 0; its positives are 3 and 1, never in each other's softmax.
    row_0 = [term(3.0, [0.5, -1.0, 2.0, 0.0]), term(1.0, [0.5, -1.0, 2.0, 0.0])]
    # Row 1 (q=2): candidates 6, 1 | 2, -2 | 4, 0; its positives are 1 and -2.
    row_1 = [term(1.0, [6.0, 2.0, 4.0, 0.0]), term(-2.0, [6.0, 2.0, 4.0, 0.0])]
    assert value.item() == pytest.approx(sum(row_0 + row_1) / 4, rel=1e-6)


def test_hardest_positive_reduction_matches_a_hand_computation():
    # The rows of the test above; "hardest" keeps each query's larger term: row 0's positive 1 (score 1 < 3),
    # row 1's positive -2 (score -2 < 1).
    queries = torch.tensor([[1.0], [2.0]])
    columns = [torch.tensor([[3.0], [0.5]]), torch.tensor([[1.0], [-1.0]]), torch.tensor([[2.0], [0.0]])]
    hardest = MultiPositiveRankingLoss(
        None, num_positives=2, scale=1.0, similarity_fct=_identity, positive_reduction="hardest"
    )

    def term(positive: float, negatives: list[float]) -> float:
        return math.log(math.exp(positive) + sum(math.exp(n) for n in negatives)) - positive

    expected = (term(1.0, [0.5, -1.0, 2.0, 0.0]) + term(-2.0, [6.0, 2.0, 4.0, 0.0])) / 2
    value = hardest.compute_loss_from_embeddings([queries, *columns])
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert hardest.get_config_dict()["positive_reduction"] == "hardest"


def test_hardest_positive_gets_the_whole_gradient():
    # The row's better-scored positive is left alone; the mean moves both.
    queries = torch.tensor([[1.0, 0.0]])
    columns = [torch.tensor([[0.9, 0.1]]), torch.tensor([[0.1, 0.9]]), torch.tensor([[0.5, 0.5]])]

    def gradients(reduction: str) -> list[torch.Tensor]:
        leaves = [column.clone().requires_grad_(True) for column in columns]
        loss = MultiPositiveRankingLoss(None, num_positives=2, positive_reduction=reduction)
        loss.compute_loss_from_embeddings([queries, *leaves]).backward()
        return [leaf.grad.norm().item() for leaf in leaves[:2]]

    assert gradients("hardest")[0] == 0.0 < gradients("hardest")[1]
    assert min(gradients("mean")) > 0.0


def test_positive_reduction_is_checked():
    with pytest.raises(ValueError, match="positive_reduction must be one of"):
        MultiPositiveRankingLoss(None, num_positives=2, positive_reduction="max")
    with pytest.raises(ValueError, match="needs num_positives >= 2"):
        MultiPositiveRankingLoss(None, num_positives=1, positive_reduction="hardest")


def test_alignment_term_matches_a_hand_computation():
    # The rows of the test above. Each positive is an anchor that must retrieve its row's other positive among the
    # candidates that are none of the row's positives; score = anchor * candidate.
    queries = torch.tensor([[1.0], [2.0]])
    columns = [torch.tensor([[3.0], [0.5]]), torch.tensor([[1.0], [-1.0]]), torch.tensor([[2.0], [0.0]])]
    plain = MultiPositiveRankingLoss(None, num_positives=2, scale=1.0, similarity_fct=_identity)
    aligned = MultiPositiveRankingLoss(
        None, num_positives=2, scale=1.0, similarity_fct=_identity, alignment_weight=0.5
    )

    def term(positive: float, negatives: list[float]) -> float:
        return math.log(math.exp(positive) + sum(math.exp(n) for n in negatives)) - positive

    # Candidates 3, .5 | 1, -1 | 2, 0. Row 0's positives 3 and 1; row 1's .5 and -1.
    alignment = [
        term(3.0 * 1.0, [3.0 * x for x in (0.5, -1.0, 2.0, 0.0)]),  # anchor 3 -> target 1
        term(1.0 * 3.0, [1.0 * x for x in (0.5, -1.0, 2.0, 0.0)]),  # anchor 1 -> target 3
        term(0.5 * -1.0, [0.5 * x for x in (3.0, 1.0, 2.0, 0.0)]),  # anchor .5 -> target -1
        term(-1.0 * 0.5, [-1.0 * x for x in (3.0, 1.0, 2.0, 0.0)]),  # anchor -1 -> target .5
    ]
    expected = plain.compute_loss_from_embeddings([queries, *columns]).item() + 0.5 * sum(alignment) / 4
    value = aligned.compute_loss_from_embeddings([queries, *columns])
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_alignment_term_pulls_translations_together():
    # One gradient step on the positives alone: the alignment term raises the similarity of each row's two
    # positives, which the query term alone leaves where it is (queries frozen, positives never compete).
    torch.manual_seed(3)
    queries = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    start = [torch.nn.functional.normalize(torch.randn(8, 16), dim=-1) for _ in range(3)]

    def translation_similarity(weight: float) -> float:
        columns = [column.clone().requires_grad_(True) for column in start]
        loss = MultiPositiveRankingLoss(None, num_positives=2, alignment_weight=weight)
        loss.compute_loss_from_embeddings([queries, *columns]).backward()
        moved = [torch.nn.functional.normalize(c - 0.05 * c.grad, dim=-1) for c in columns[:2]]
        return (moved[0] * moved[1]).sum(dim=1).mean().item()

    assert translation_similarity(1.0) > translation_similarity(0.0) + 0.01


def test_alignment_options_are_checked():
    with pytest.raises(ValueError, match="alignment_weight must be >= 0"):
        MultiPositiveRankingLoss(None, num_positives=2, alignment_weight=-1.0)
    with pytest.raises(ValueError, match="needs num_positives >= 2"):
        MultiPositiveRankingLoss(None, num_positives=1, alignment_weight=1.0)
    assert MultiPositiveRankingLoss(None, alignment_weight=0.5).get_config_dict()["alignment_weight"] == 0.5


def test_one_positive_is_sentence_transformers_mnrl():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.manual_seed(1)
    embeddings = [torch.nn.functional.normalize(torch.randn(6, 16), dim=-1) for _ in range(3)]
    ours = MultiPositiveRankingLoss(None, num_positives=1).compute_loss_from_embeddings(embeddings)

    class _Model(torch.nn.Module):
        pass

    theirs = MultipleNegativesRankingLoss(_Model()).compute_loss_from_embeddings(embeddings, None)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_too_few_columns_is_a_clear_error():
    loss = MultiPositiveRankingLoss(None, num_positives=3)
    with pytest.raises(ValueError, match="needs a query column and 3 positive column"):
        loss.compute_loss_from_embeddings([torch.ones(2, 4), torch.ones(2, 4)])
    with pytest.raises(ValueError, match="num_positives must be >= 1"):
        MultiPositiveRankingLoss(None, num_positives=0)


# ---------------------------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlqa_pairs(shared_data):
    table = load_parallel(shared_data / "mlqa-r", languages=["en", "de", "es", "ar"])
    return table, build_training_pairs(table, cross_partners=2, seed=0)


def test_extra_positives_are_answers_of_the_same_id_in_other_languages(mlqa_pairs):
    table, pairs = mlqa_pairs
    extended = add_parallel_positives(pairs, num_positives=1, seed=0)
    assert extended.column_names[:3] == ["query", "passage", "passage_2"]
    answers = {
        (str(pid), language): answer
        for pid, language, answer in zip(
            table["parallel_id"], table["language"], table["answer"], strict=True
        )
    }
    languages_of = {}
    for pid, language in zip(table["parallel_id"], table["language"], strict=True):
        languages_of.setdefault(str(pid), set()).add(language)
    third_language = 0
    for row in extended:
        pid = str(row["parallel_id"])
        owners = [
            language for (p, language), text in answers.items() if p == pid and text == row["passage_2"]
        ]
        assert owners and row["passage_language"] not in owners and row["passage_2"] != row["passage"]
        others = {
            language
            for language in languages_of[pid] - {row["query_language"], row["passage_language"]}
            if answers[(pid, language)] != row["passage"]  # (an answer may read the same in two languages)
        }
        if others:  # a third language is preferred to the query's own
            assert set(owners) & others
            third_language += 1
        else:
            assert row["query_language"] in owners
    assert third_language > len(extended) / 2
    # Only rows whose id has no second answer are dropped (ids in one language); the seed fixes the choice.
    has_second = [
        any(
            answers[(str(pid), language)] != passage
            for language in languages_of[str(pid)] - {passage_language}
        )
        for pid, passage, passage_language in zip(
            pairs["parallel_id"], pairs["passage"], pairs["passage_language"], strict=True
        )
    ]
    assert len(pairs) > len(extended) == sum(has_second)
    assert add_parallel_positives(pairs, num_positives=1, seed=0)["passage_2"] == extended["passage_2"]
    assert add_parallel_positives(pairs, num_positives=1, seed=1)["passage_2"] != extended["passage_2"]


def test_rows_without_enough_languages_are_dropped_and_answers_from_keeps_the_others():
    pairs = Dataset.from_dict(
        {
            "query": ["q1-en", "q1-en", "q2-en"],
            "passage": ["a1-de", "a1-en", "a2-de"],
            "query_language": ["en", "en", "en"],
            "passage_language": ["de", "en", "de"],
            "parallel_id": ["1", "1", "2"],
        }
    )
    extended = add_parallel_positives(pairs, num_positives=1)
    # Id 1 has answers in de and en: (q1-en, a1-de) gets a1-en and (q1-en, a1-en) gets a1-de; id 2 has one.
    assert extended["passage_2"] == ["a1-en", "a1-de"]
    # A row's answers may come from rows that a previous step dropped.
    only_first = add_parallel_positives(pairs.select([0]), num_positives=1, answers_from=pairs)
    assert only_first["passage_2"] == ["a1-en"]
    with pytest.raises(ValueError, match="lower num_positives"):
        add_parallel_positives(pairs, num_positives=2)
    with pytest.raises(ValueError, match="add parallel positives once"):
        add_parallel_positives(extended, num_positives=1)
    with pytest.raises(ValueError, match="num_positives must be >= 1"):
        add_parallel_positives(pairs, num_positives=0)


def test_a_lone_mined_negative_is_renamed_so_the_collator_does_not_warn(caplog):
    from sentence_transformers.sentence_transformer import SentenceTransformerDataCollator

    pairs = Dataset.from_dict(
        {
            "query": ["q1-en", "q2-en"],
            "passage": ["a1-de", "a2-de"],
            "negative": ["n1", "n2"],
            "query_language": ["en", "en"],
            "passage_language": ["de", "de"],
            "parallel_id": ["1", "2"],
        }
    )
    answers = pairs.add_item({**pairs[0], "passage": "a1-fr", "passage_language": "fr"})
    answers = answers.add_item({**pairs[1], "passage": "a2-fr", "passage_language": "fr"})
    extended = add_parallel_positives(pairs, num_positives=1, answers_from=answers)
    assert extended.column_names[:4] == ["query", "passage", "passage_2", "negative_1"]
    assert extended["negative_1"] == ["n1", "n2"]
    # sentence-transformers warns when a column named `negative` is not at index 2.
    collator = SentenceTransformerDataCollator(preprocess_fn=lambda texts, **_: {})
    with caplog.at_level("WARNING", logger="sentence_transformers.base.data_collator"):
        collator.maybe_warn_about_column_order(extended.column_names[:4])
        assert not caplog.records
        collator.maybe_warn_about_column_order(["query", "passage", "passage_2", "negative"])
        assert "is at index 3" in caplog.text


def test_the_sampler_never_puts_an_extra_positive_beside_its_owner(mlqa_pairs):
    _, pairs = mlqa_pairs
    extended = add_parallel_positives(pairs, num_positives=2, seed=0)
    metadata = PairMetadata.from_dataset(extended)
    sampler = HybridBatchSampler(extended, batch_size=16, strategy="cross", seed=0, metadata=metadata)
    batches = list(sampler)
    assert len(sampler) == len(batches) > 0
    texts = [(row["query"], row["passage"], row["passage_2"], row["passage_3"]) for row in extended]
    for batch in batches:
        # No text of one row (query or any positive) is a text of another row of the batch.
        for position, row in enumerate(batch):
            others = {text for other in batch[:position] + batch[position + 1 :] for text in texts[other]}
            assert not set(texts[row]) & others


# ---------------------------------------------------------------------------------------------
# examples/train.py
# ---------------------------------------------------------------------------------------------
def test_train_script_trains_on_parallel_positives(
    tiny_model_path, shared_data, tmp_path, monkeypatch, caplog
):
    import st_hybrid

    seen = {}
    real_trainer, real_build_loss = st_hybrid.HybridTrainer, train.build_loss

    def trainer(*args, **kwargs):
        seen["columns"] = list(kwargs["train_dataset"].column_names)
        return real_trainer(*args, **kwargs)

    def build_loss(arguments, model):
        loss = real_build_loss(arguments, model)
        loss.register_forward_pre_hook(lambda module, args: seen.update(inputs=len(args[0])))
        seen["loss"] = loss
        return loss

    monkeypatch.setattr(st_hybrid, "HybridTrainer", trainer)
    monkeypatch.setattr(train, "build_loss", build_loss)
    flags = {
        "model": tiny_model_path,
        "train_data": str(shared_data / "mlqa-r"),
        "train_languages": "en,de,es",
        "max_train_pairs": 400,
        "strategy": "cross",
        "batch_size": 8,
        "max_steps": 2,
        "eval_data": "null",
        "max_seq_length": 32,
        "output_dir": str(tmp_path / "run"),
        "hard_negatives": 1,
        "parallel_positives": 1,
        "positive_alignment": 0.5,
        "positive_reduction": "hardest",
    }
    results = train.main([token for key, value in flags.items() for token in (f"--{key}", str(value))])
    assert results["global_step"] == 2
    assert seen["columns"][:4] == ["query", "passage", "passage_2", "negative_1"]
    assert "is usually expected at index" not in caplog.text  # sentence-transformers' column-order warning
    assert isinstance(seen["loss"], MultiPositiveRankingLoss) and seen["loss"].num_positives == 2
    assert seen["inputs"] == 4  # query, two positives, one negative
    prompts = results["training_arguments"]["prompts"]
    assert prompts["passage_2"] == prompts["negative_1"] == "passage: "
    assert results["config"]["parallel_positives"] == 1
    assert seen["loss"].alignment_weight == results["config"]["positive_alignment"] == 0.5
    assert seen["loss"].positive_reduction == results["config"]["positive_reduction"] == "hardest"
    assert "MultiPositiveRankingLoss" in (tmp_path / "run" / "model" / "README.md").read_text()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--parallel_positives", "-1"], "parallel_positives must be >= 0"),
        (["--parallel_positives", "1", "--loss", "cached_mnrl"], "set loss: mnrl"),
        (["--positive_alignment", "1"], "set parallel_positives >= 1, or positive_alignment 0"),
        (["--parallel_positives", "1", "--positive_alignment", "-0.5"], "positive_alignment must be >= 0"),
        (["--positive_reduction", "hardest"], "set parallel_positives >= 1, or positive_reduction mean"),
        (["--parallel_positives", "1", "--positive_reduction", "max"], "Unknown positive_reduction 'max'"),
        (
            ["--parallel_positives", "1", "--loss_directions", "query_to_doc,doc_to_query"],
            "set loss: mnrl and loss_directions: query_to_doc",
        ),
    ],
)
def test_bad_parallel_positive_options_are_refused(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        train.main(["--model", "no/such-model", "--eval_data", "null", "--output_dir", str(out), *flags])
    assert message in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Across processes
# ---------------------------------------------------------------------------------------------
def _full_batch() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return [torch.nn.functional.normalize(torch.randn(8, 16, generator=generator), dim=-1) for _ in range(4)]


def _gathered_loss(rank: int, world_size: int, init_file: str, results: str, options: dict) -> None:
    """One process: its half of the rows, scored against every process' candidates."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        rows = slice(rank * 4, (rank + 1) * 4)
        local = [column[rows] for column in _full_batch()]
        loss = MultiPositiveRankingLoss(None, num_positives=2, gather_across_devices=True, **options)
        Path(results, f"{rank}.txt").write_text(repr(loss.compute_loss_from_embeddings(local).item()))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize(
    "options",
    [{}, {"alignment_weight": 1.0}, {"positive_reduction": "hardest"}],
    ids=["plain", "alignment", "hardest"],
)
def test_two_processes_with_gathered_candidates_compute_the_full_batch_loss(tmp_path, options):
    # Each process' loss is the mean over its rows, against the whole global batch: their mean is the
    # loss of one process holding every row.
    torch.multiprocessing.spawn(
        _gathered_loss, args=(2, str(tmp_path / "init"), str(tmp_path), options), nprocs=2, join=True
    )
    per_process = [float((tmp_path / f"{rank}.txt").read_text()) for rank in range(2)]
    whole = MultiPositiveRankingLoss(None, num_positives=2, **options)
    whole = whole.compute_loss_from_embeddings(_full_batch())
    assert sum(per_process) / 2 == pytest.approx(whole.item(), rel=1e-6)
    assert per_process[0] != pytest.approx(per_process[1])  # each process scored its own rows
