"""Weight interpolation: endpoints exact, midpoint, ties and integer buffers, clear mismatch errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

from st_hybrid.merge import MERGE_INFO_FILE, ArchitectureMismatchError, interpolate, save_merged
from st_hybrid.testing import build_tiny_model

TEXTS = ["What is the capital of France?", "Paris ist die Hauptstadt Frankreichs."]


@pytest.fixture(scope="module")
def tuned_path(tiny_model_path, tmp_path_factory) -> str:
    """The tiny base model with every weight moved (a stand-in fine-tune: same architecture and vocabulary)."""
    model = SentenceTransformer(tiny_model_path, device="cpu")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    path = tmp_path_factory.mktemp("models") / "tiny-tuned"
    model.save(str(path))
    return str(path)


def _load(path: str) -> SentenceTransformer:
    return SentenceTransformer(path, device="cpu")


def _snapshot(model: SentenceTransformer) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _assert_state_equal(model: SentenceTransformer, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for name, tensor in state.items():
        assert torch.equal(tensor, expected[name]), name


def _tie_and_add_buffer(model: SentenceTransformer, counts: torch.Tensor) -> SentenceTransformer:
    """Tie the pooler weight to a same-shape attention weight; add a persistent integer buffer."""
    bert = model[0].model
    bert.pooler.dense.weight = bert.encoder.layer[0].attention.self.query.weight
    model[1].register_buffer("counts", counts)
    return model


def test_ratio_zero_and_one_give_the_exact_endpoints(tiny_model_path, tuned_path):
    base, tuned = _load(tiny_model_path), _load(tuned_path)
    base_state, tuned_state = _snapshot(base), _snapshot(tuned)
    assert any(not torch.equal(base_state[k], tuned_state[k]) for k in base_state)  # the test can fail

    _assert_state_equal(interpolate(base, tuned, 0), base_state)
    at_one = interpolate(base, tuned, 1.0)
    _assert_state_equal(at_one, tuned_state)
    assert torch.equal(torch.as_tensor(at_one.encode(TEXTS)), torch.as_tensor(tuned.encode(TEXTS)))


def test_midpoint_and_other_ratios(tiny_model_path, tuned_path):
    base, tuned = _load(tiny_model_path), _load(tuned_path)
    base_state, tuned_state = _snapshot(base), _snapshot(tuned)
    for ratio in (0.5, 0.3):
        merged = interpolate(base, tuned, ratio).state_dict()
        for name, tensor in merged.items():
            torch.testing.assert_close(tensor, (1 - ratio) * base_state[name] + ratio * tuned_state[name])
    # A merge is a different model from both parents.
    midpoint = interpolate(base, tuned, 0.5).encode(TEXTS)
    assert not torch.allclose(torch.as_tensor(midpoint), torch.as_tensor(base.encode(TEXTS)))


def test_inputs_are_not_modified_and_share_no_storage(tiny_model_path, tuned_path):
    base, tuned = _load(tiny_model_path), _load(tuned_path)
    base_state, tuned_state = _snapshot(base), _snapshot(tuned)
    base_prompts, tuned_training = dict(base.prompts), tuned.training

    merged = interpolate(base, tuned, 1.0)  # at 1 the merge equals tuned: it must still be a copy
    with torch.no_grad():
        for parameter in merged.parameters():
            parameter.add_(1.0)

    _assert_state_equal(base, base_state)
    _assert_state_equal(tuned, tuned_state)
    assert base.prompts == base_prompts and tuned.training == tuned_training
    assert merged[0] is not tuned[0] and merged.tokenizer is not None


def test_tied_weights_stay_tied_and_integer_buffers_come_from_tuned(tiny_model_path, tuned_path):
    base = _tie_and_add_buffer(_load(tiny_model_path), torch.arange(4))
    tuned = _tie_and_add_buffer(_load(tuned_path), torch.arange(4) * 10)
    query_name = "0.model.encoder.layer.0.attention.self.query.weight"
    expected = 0.5 * base.state_dict()[query_name] + 0.5 * tuned.state_dict()[query_name]

    merged = interpolate(base, tuned, 0.5)
    bert = merged[0].model
    assert bert.pooler.dense.weight is bert.encoder.layer[0].attention.self.query.weight
    torch.testing.assert_close(bert.pooler.dense.weight.detach(), expected)
    assert torch.equal(merged[1].counts, torch.arange(4) * 10)
    assert merged[1].counts.dtype == torch.int64


def test_tied_in_one_model_only_is_refused(tiny_model_path, tuned_path):
    base = _tie_and_add_buffer(_load(tiny_model_path), torch.arange(4))
    tuned = _load(tuned_path)
    tuned[1].register_buffer("counts", torch.arange(4))
    with pytest.raises(ArchitectureMismatchError, match="pooler.dense.weight.*tied"):
        interpolate(base, tuned, 0.5)


def test_mismatched_architecture_names_the_difference(tiny_model_path, tmp_path):
    wider = build_tiny_model(tmp_path / "wider", hidden_size=48)
    with pytest.raises(ArchitectureMismatchError, match="hidden_size") as error:
        interpolate(tiny_model_path, wider, 0.5)
    assert "fine-tuned from" in str(error.value)

    shallower = build_tiny_model(tmp_path / "shallower", num_layers=1)
    with pytest.raises(ArchitectureMismatchError, match="num_hidden_layers"):
        interpolate(tiny_model_path, shallower, 0.5)


def test_special_token_ids_aligned_by_the_trainer_are_not_architecture(tiny_model_path, tuned_path):
    """transformers' Trainer aligns the config's special-token ids with the tokenizer when training starts
    (the offline multilingual-e5-small: pad_token_id 0 -> 1): the fine-tune must still merge with its base."""
    tuned = _load(tuned_path)
    config = tuned[0].auto_model.config
    config.pad_token_id, config.bos_token_id, config.eos_token_id = 7, 8, 9
    merged = interpolate(tiny_model_path, tuned, 1.0)
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(tensor, tuned.state_dict()[name], atol=0, rtol=0)


def test_mismatched_module_config_and_stack(tiny_model_path):
    base = _load(tiny_model_path)
    cls_pooled = SentenceTransformer(
        modules=[_load(tiny_model_path)[0], Pooling(32, pooling_mode="cls"), Normalize()], device="cpu"
    )
    with pytest.raises(ArchitectureMismatchError, match="module '1' config.*cls"):
        interpolate(base, cls_pooled, 0.5)

    no_normalize = SentenceTransformer(modules=[_load(tiny_model_path)[0], Pooling(32)], device="cpu")
    with pytest.raises(ArchitectureMismatchError, match="module '2' only in the base model"):
        interpolate(base, no_normalize, 0.5)


def test_parameter_shape_mismatch_is_listed(tiny_model_path, tuned_path):
    base, tuned = _load(tiny_model_path), _load(tuned_path)
    tuned[1].register_buffer("extra", torch.zeros(3))
    base[1].register_buffer("extra", torch.zeros(2))
    with pytest.raises(ArchitectureMismatchError, match=r"'1.extra' has shape \(2,\) vs \(3,\)"):
        interpolate(base, tuned, 0.5)


@pytest.mark.parametrize("ratio", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_ratio_is_refused(tiny_model_path, tuned_path, ratio):
    with pytest.raises(ValueError, match="ratio must be finite"):
        interpolate(tiny_model_path, tuned_path, ratio)


@pytest.mark.parametrize("ratio", ["0.5", None, True])
def test_non_numeric_ratio_is_refused(tiny_model_path, tuned_path, ratio):
    with pytest.raises(TypeError, match="ratio must be a real number"):
        interpolate(tiny_model_path, tuned_path, ratio)


def test_extrapolation_warns_and_follows_the_formula(tiny_model_path, tuned_path):
    base, tuned = _load(tiny_model_path), _load(tuned_path)
    with pytest.warns(UserWarning, match="outside \\[0, 1\\]"):
        merged = interpolate(base, tuned, 1.5)
    name = "0.model.embeddings.word_embeddings.weight"
    torch.testing.assert_close(
        merged.state_dict()[name], -0.5 * base.state_dict()[name] + 1.5 * tuned.state_dict()[name]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        interpolate(base, tuned, 0.7)  # no warning inside [0, 1]


def test_save_merged_from_folders_round_trips(tiny_model_path, tuned_path, tmp_path):
    output = tmp_path / "merged"
    merged = save_merged(tiny_model_path, tuned_path, 0.25, output)
    info = json.loads((output / MERGE_INFO_FILE).read_text())
    assert info["ratio"] == 0.25 and info["method"] == "linear"
    assert info["base_model"] == tiny_model_path and info["tuned_model"] == tuned_path
    assert "merge" in merged.model_card_data.tags

    # An in-memory fine-tune is recorded by its Hub id (none here), never by the parent it names.
    tuned = _load(tuned_path)
    tuned.model_card_data.base_model = "parent/model"
    save_merged(tiny_model_path, tuned, 0.5, tmp_path / "named", base_name="org/base")
    info = json.loads((tmp_path / "named" / MERGE_INFO_FILE).read_text())
    assert (info["base_model"], info["tuned_model"]) == ("org/base", None)

    reloaded = _load(str(output))
    _assert_state_equal(reloaded, _snapshot(merged))
    torch.testing.assert_close(torch.as_tensor(reloaded.encode(TEXTS)), torch.as_tensor(merged.encode(TEXTS)))


def test_evaluate_model_merge_sweep_matches_the_endpoints(
    tiny_model_path, tuned_path, shared_data, tmp_path, capsys, example_script
):
    """`--merge-ratios 0 1` must score exactly what the base and the tuned model score on their own."""
    script = example_script("evaluate_model.py")
    pool = ["--data", str(shared_data / "xquad-r"), "--languages", "en", "de", "--max-articles", "1"]
    base = script.main(["--model", tiny_model_path, *pool, "--output", str(tmp_path / "base")])
    tuned = script.main(["--model", tuned_path, *pool, "--output", str(tmp_path / "tuned")])
    assert base["metrics"]["multi_map"] != tuned["metrics"]["multi_map"]  # the endpoints can be told apart

    sweep = script.main(
        ["--model", tuned_path, "--merge-base", tiny_model_path, "--merge-ratios", "0", "0.5", "1", *pool]
        + ["--output", str(tmp_path / "sweep")]
    )
    assert list(sweep) == [0.0, 0.5, 1.0]
    for ratio, alone in ((0.0, base), (1.0, tuned)):
        for name in script.MAIN_METRICS:
            assert sweep[ratio]["metrics"][name] == pytest.approx(alone["metrics"][name], abs=1e-6), (
                ratio,
                name,
            )
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["r0", "r0.5", "r1"]
    printed = capsys.readouterr().out
    assert (
        "subset: first 1 articles per language, languages en de" in printed
    )  # never passes for the full pool
    assert "| 0.5 | " in printed

    with pytest.raises(SystemExit):  # a ratio without the base it merges with
        script.parse_args(["--model", tuned_path, "--merge-ratios", "0.5"])


def test_checkpoint_soup_is_the_uniform_mean_and_keeps_the_last_models_config(
    tiny_model_path, tuned_path, tmp_path, example_script
):
    soup_script = example_script("experiments/checkpoint_soup.py")
    third = _load(tuned_path)
    with torch.no_grad():
        for parameter in third.parameters():
            parameter.mul_(-2.0)
    third.max_seq_length = 17  # the last model's configuration wins
    third_path = tmp_path / "third"
    third.save(str(third_path))

    paths = [tiny_model_path, tuned_path, str(third_path)]
    soup_script.main(["--output", str(tmp_path / "soup"), *paths])
    soup = _load(str(tmp_path / "soup"))
    states = [_snapshot(_load(path)) for path in paths]
    for name, tensor in soup.state_dict().items():
        if tensor.is_floating_point():
            expected = sum(state[name] for state in states) / 3
            assert torch.allclose(tensor, expected, atol=1e-6), name
    assert soup.max_seq_length == 17
    assert sorted(p.name for p in tmp_path.iterdir()) == ["soup", "third"]  # no scratch folders left
