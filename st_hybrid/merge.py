"""Weight interpolation between a base model and its fine-tune (WiSE-FT, model soups).

:func:`interpolate` returns ``θ = (1 − r)·θ_base + r·θ_tuned`` as a new ``SentenceTransformer``. Fine-tuning
for cross-lingual alignment costs some monolingual quality; interpolating back towards the zero-shot weights
recovers most of it while keeping most of the alignment (Wortsman et al. 2022, "Robust fine-tuning of
zero-shot models"). A sweep over ``r`` costs no training, only evaluations.

Both models must share one architecture: the same modules (types and configuration), the same tokenizer
vocabulary, the same parameter names and shapes, and the same tied weights. The merge starts from a copy
of the *tuned* model, so its prompts, tokenizer and module settings carry over; floating-point tensors are
interpolated (each tied tensor once, so ties survive), other tensors (integer buffers such as
``position_ids``) are copied from the tuned model. Neither input is modified.

``ratio`` may be any finite number: 0 gives the base weights and 1 the tuned weights exactly; values outside
``[0, 1]`` extrapolate along the fine-tuning direction (allowed, with a warning, since it is a known way to
amplify a fine-tune, but it leaves the segment both models vouch for).

sentence-transformers' own ``SentenceTransformer.merge`` covers many methods through mergekit (an optional
dependency); this module needs nothing beyond torch and validates and names mismatches for the one
two-model linear case the training recipe uses.

Model card: the merged model gets fresh card data tagged ``merge`` (the tuned model's training logs and
scores do not describe it). :func:`save_merged` also writes ``st_hybrid_merge.json`` (method, ratio, both
sources) beside the weights so a card renderer can state that the model is a merge and of what.

Usage:
    >>> from st_hybrid.merge import interpolate, save_merged
    >>> merged = interpolate("intfloat/multilingual-e5-small", "outputs/default/model", 0.5)  # doctest: +SKIP
    >>> merged.encode(["query: Wo liegt Paris?"]).shape  # doctest: +SKIP
    (1, 384)
    >>> save_merged("intfloat/multilingual-e5-small", "outputs/default/model", 0.5, "outputs/merged")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["MERGE_INFO_FILE", "ArchitectureMismatchError", "interpolate", "merge_info", "save_merged"]

#: File written by :func:`save_merged` beside the weights, describing the merge.
MERGE_INFO_FILE = "st_hybrid_merge.json"
# How many mismatches an error message lists before it summarizes the rest.
_MAX_LISTED = 5
# Saved provenance and dtype may differ between a base and its fine-tune without changing the architecture.
_IGNORED_HF_CONFIG_KEYS = {"architectures", "transformers_version", "torch_dtype", "dtype", "name_or_path"}
# Special-token ids are tokenizer bookkeeping, not architecture: transformers' Trainer aligns them with the
# tokenizer when training starts, so a fine-tune can legitimately differ from its base here.
_IGNORED_HF_CONFIG_SUFFIX = "_token_id"


class ArchitectureMismatchError(ValueError):
    """The two models cannot be interpolated: their modules, tokenizers or parameters differ."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def _check_ratio(ratio: Any) -> float:
    """Return ``ratio`` as a float: finite numbers only; warn when it extrapolates beyond [0, 1]."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise TypeError(f"ratio must be a real number (0 = base, 1 = tuned), got {ratio!r}.")
    ratio = float(ratio)
    if not math.isfinite(ratio):
        raise ValueError(f"ratio must be finite (0 = base, 1 = tuned), got {ratio}.")
    if not 0.0 <= ratio <= 1.0:
        warnings.warn(
            f"ratio={ratio} lies outside [0, 1]: the weights are extrapolated beyond "
            f"{'the base' if ratio < 0 else 'the tuned'} model, not interpolated.",
            UserWarning,
            stacklevel=3,
        )
    return ratio


def _load(model: SentenceTransformer | str | Path, role: str, load_kwargs: dict[str, Any]):
    """A ``SentenceTransformer`` from an instance, a local folder or a Hub id."""
    from sentence_transformers import SentenceTransformer

    if isinstance(model, SentenceTransformer):
        return model
    if isinstance(model, (str, Path)):
        return SentenceTransformer(str(model), **{"device": "cpu", **load_kwargs})
    raise TypeError(
        f"The {role} model must be a SentenceTransformer, a local folder or a Hub id, got {type(model).__name__}."
    )


def _describe(model: SentenceTransformer | str | Path) -> str | None:
    """A name for a model in the merge record: its path or id, or an in-memory model's Hub id (if any)."""
    if isinstance(model, (str, Path)):
        return str(model)
    # Not `base_model`: for a fine-tuned model that names its parent, which would mislabel the record.
    return getattr(getattr(model, "model_card_data", None), "model_id", None)


# ---------------------------------------------------------------------------------------------
# Architecture checks
# ---------------------------------------------------------------------------------------------
def _hf_config(module: torch.nn.Module) -> dict[str, Any] | None:
    """The Hugging Face config of a transformers model, minus provenance keys; None for other modules."""
    from transformers import PreTrainedModel

    if not isinstance(module, PreTrainedModel):
        return None  # wrappers and submodules expose the same config object: compare it once
    return {
        key: value
        for key, value in module.config.to_dict().items()
        if key not in _IGNORED_HF_CONFIG_KEYS
        and not key.startswith("_")
        and not key.endswith(_IGNORED_HF_CONFIG_SUFFIX)
    }


def _module_mismatches(base, tuned) -> list[str]:
    """Differences in module structure, types, sentence-transformers configs, HF configs and vocabularies."""
    problems: list[str] = []
    base_modules, tuned_modules = dict(base.named_modules()), dict(tuned.named_modules())
    for name, module in base_modules.items():
        other = tuned_modules.get(name)
        if other is None:
            continue
        label = repr(name or "<root>")
        if type(module) is not type(other):
            problems.append(f"module {label}: {type(module).__name__} vs {type(other).__name__}")
            continue
        if getattr(module, "peft_config", None) or getattr(other, "peft_config", None):
            problems.append(f"module {label} holds PEFT adapters: merge and unload them first")
        if hasattr(module, "get_config_dict") and module.get_config_dict() != other.get_config_dict():
            problems.append(f"module {label} config: {module.get_config_dict()} vs {other.get_config_dict()}")
        base_config, tuned_config = _hf_config(module), _hf_config(other)
        if base_config is not None and base_config != tuned_config:
            differences = [
                f"{key}: {base_config.get(key)!r} vs {tuned_config.get(key)!r}"
                for key in sorted(base_config.keys() | tuned_config.keys())
                if base_config.get(key) != tuned_config.get(key)
            ]
            problems.append(f"transformers config of {label} differs: {', '.join(differences[:_MAX_LISTED])}")
        if not name:
            continue  # the model's own `tokenizer` is its first module's, checked there
        tokenizer, other_tokenizer = getattr(module, "tokenizer", None), getattr(other, "tokenizer", None)
        if hasattr(tokenizer, "get_vocab") and (
            not hasattr(other_tokenizer, "get_vocab") or tokenizer.get_vocab() != other_tokenizer.get_vocab()
        ):
            problems.append(f"tokenizer vocabulary of module {label} differs")
    # Configuration differences explain missing layers: list them first, and only the top missing module.
    for role, modules, others in (
        ("base", base_modules, tuned_modules),
        ("tuned", tuned_modules, base_modules),
    ):
        for name in sorted(modules.keys() - others.keys()):
            if name.rpartition(".")[0] in others:
                problems.append(f"module {name!r} only in the {role} model")
    return problems


def _aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Map every state key to the first key holding the same tensor object (tied weights)."""
    first_key: dict[int, str] = {}
    return {name: first_key.setdefault(id(tensor), name) for name, tensor in state.items()}


def _state_mismatches(base_state: dict, tuned_state: dict) -> list[str]:
    """Differences in parameter/buffer names, shapes and weight tying."""
    problems = [f"{name!r} only in the base model" for name in base_state if name not in tuned_state]
    problems += [f"{name!r} only in the tuned model" for name in tuned_state if name not in base_state]
    for name, tensor in base_state.items():
        other = tuned_state.get(name)
        if other is not None and tensor.shape != other.shape:
            problems.append(f"{name!r} has shape {tuple(tensor.shape)} vs {tuple(other.shape)}")
        elif other is not None and tensor.is_floating_point() != other.is_floating_point():
            problems.append(f"{name!r} has dtype {tensor.dtype} vs {other.dtype}")
    if not problems:
        base_ties, tuned_ties = _aliases(base_state), _aliases(tuned_state)
        problems += [
            f"{name!r} is tied to {base_ties[name]!r} in the base model but to {tuned_ties[name]!r} in the tuned one"
            for name in base_state
            if base_ties[name] != tuned_ties[name]
        ]
    return problems


def _raise_if_any(problems: list[str], what: str) -> None:
    if not problems:
        return
    listed = "\n  - ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise ArchitectureMismatchError(
        f"Cannot interpolate: the base and tuned models differ in {what}:\n  - {listed}{more}\n"
        "Interpolate a fine-tuned model with the exact model it was fine-tuned from."
    )


# ---------------------------------------------------------------------------------------------
# Interpolation
# ---------------------------------------------------------------------------------------------
def _mix(base: torch.Tensor, tuned: torch.Tensor, ratio: float) -> torch.Tensor:
    """(1 − r)·base + r·tuned in at least float32, returned in the tuned tensor's dtype and device."""
    compute_dtype = torch.promote_types(tuned.dtype, torch.float32)
    base_values = base.detach().to(device=tuned.device, dtype=compute_dtype)
    tuned_values = tuned.detach().to(dtype=compute_dtype)
    return ((1.0 - ratio) * base_values + ratio * tuned_values).to(tuned.dtype)


@torch.no_grad()
def interpolate(
    base: SentenceTransformer | str | Path,
    tuned: SentenceTransformer | str | Path,
    ratio: float,
    **load_kwargs: Any,
) -> SentenceTransformer:
    """Interpolate the weights of a base model and its fine-tune: ``(1 − ratio)·base + ratio·tuned``.

    Args:
        base: The model before fine-tuning: an instance, a local folder or a Hub id.
        tuned: The fine-tuned model, same forms. The result copies its prompts, tokenizer and settings.
        ratio: Weight of the tuned model. 0 returns the base weights, 1 the tuned weights (both exactly);
            any other finite value is allowed, with a warning outside ``[0, 1]`` (extrapolation).
        **load_kwargs: Passed to ``SentenceTransformer(...)`` for inputs given as paths or ids
            (``device`` defaults to ``"cpu"``); loaded instances are used as they are.

    Returns:
        A new ``SentenceTransformer`` in eval mode on the tuned model's device, with fresh model card data
        tagged ``merge``. The inputs are not modified.

    Raises:
        ArchitectureMismatchError: The models differ in modules, configuration, vocabulary, parameter names
            or shapes, or tied weights; the message names the first differences.
    """
    ratio = _check_ratio(ratio)
    base_model = _load(base, "base", load_kwargs)
    tuned_model = _load(tuned, "tuned", load_kwargs)
    for role, model in (("base", base_model), ("tuned", tuned_model)):
        if getattr(model, "backend", "torch") != "torch":
            raise ValueError(
                f"The {role} model uses the {model.backend!r} backend; load it with backend='torch'."
            )

    _raise_if_any(_module_mismatches(base_model, tuned_model), "architecture")
    base_state = base_model.state_dict(keep_vars=True)
    tuned_state = tuned_model.state_dict(keep_vars=True)
    _raise_if_any(_state_mismatches(base_state, tuned_state), "parameters")

    # deepcopy looks every object up in `memo` first: pre-seeding it with the merged tensors builds the copy
    # around them without ever copying the tuned weights, and tied modules keep pointing at one tensor.
    memo: dict[int, Any] = {}
    for name, tensor in tuned_state.items():
        if id(tensor) in memo:
            continue  # a tied alias: merged once
        value = (
            _mix(base_state[name], tensor, ratio) if tensor.is_floating_point() else tensor.detach().clone()
        )
        if isinstance(tensor, torch.nn.Parameter):
            value = torch.nn.Parameter(value, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = value
    merged = deepcopy(tuned_model, memo)

    # The tuned model's training logs and scores do not describe the merge: start a fresh card.
    merged._model_card_text = None
    merged.model_card_data = merged.model_card_data_class(local_files_only=True)
    merged.model_card_data.register_model(merged)
    merged.model_card_data.tags = [*merged.model_card_data.tags, "merge"]
    merged.eval()
    return merged


def merge_info(
    base: SentenceTransformer | str | Path,
    tuned: SentenceTransformer | str | Path,
    ratio: float,
    *,
    base_name: str | None = None,
    tuned_name: str | None = None,
) -> dict[str, Any]:
    """The record :func:`save_merged` writes: method, formula, ratio and both sources.

    ``base_name`` / ``tuned_name`` override the recorded names (e.g. the Hub id of a local copy); by default
    a path or id is recorded as given and an in-memory model by its ``model_card_data.model_id`` (or None).
    """
    return {
        "method": "linear",
        "formula": "(1 - ratio) * base + ratio * tuned",
        "ratio": float(ratio),
        "base_model": base_name or _describe(base),
        "tuned_model": tuned_name or _describe(tuned),
    }


def save_merged(
    base: SentenceTransformer | str | Path,
    tuned: SentenceTransformer | str | Path,
    ratio: float,
    output_path: str | Path,
    *,
    base_name: str | None = None,
    tuned_name: str | None = None,
    **load_kwargs: Any,
) -> SentenceTransformer:
    """Interpolate (see :func:`interpolate`), save the result to ``output_path`` and return it.

    Beside the model files it writes :data:`MERGE_INFO_FILE`, a JSON record of the merge (see
    :func:`merge_info`, which also explains ``base_name`` / ``tuned_name``), for model cards and results.
    """
    merged = interpolate(base, tuned, ratio, **load_kwargs)
    output_path = Path(output_path)
    merged.save(str(output_path))
    record = merge_info(base, tuned, ratio, base_name=base_name, tuned_name=tuned_name)
    (output_path / MERGE_INFO_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return merged
