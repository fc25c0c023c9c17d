"""Project the language subspace out of a model's embeddings: a fixed Dense layer before Normalize.

An experiment for issue 10's rank-distance gap (result in docs/results.md: it did not help). The subspace is
spanned by the top ``k`` right singular vectors of the centered per-language mean embeddings (pooled, before
Normalize) of Tatoeba sentences, encoded once with the model's query prompt and once with its document prompt.
The saved model still loads with plain ``SentenceTransformer(path)``.

Usage:
    .venv/bin/python examples/experiments/remove_language_subspace.py \\
        --model outputs/recipe_sym_seed42/model-merged --output outputs/recipe_sym_seed42/model-merged-lir10 --k 10
    .venv/bin/python examples/evaluate_model.py --model outputs/recipe_sym_seed42/model-merged-lir10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense

# XQuAD-R's languages and their Tatoeba codes; English comes from the English side of the German file.
TATOEBA_CODES = {
    "ar": "ara", "de": "deu", "el": "ell", "es": "spa", "hi": "hin", "ru": "rus",
    "th": "tha", "tr": "tur", "vi": "vie", "zh": "cmn",
}  # fmt: skip


def tatoeba_texts(folder: Path, lines: int) -> dict[str, list[str]]:
    """The first ``lines`` sentences per language."""
    texts = {
        lang: (folder / f"tatoeba.{code}-eng.{code}").read_text().splitlines()
        for lang, code in TATOEBA_CODES.items()
    }
    texts["en"] = (folder / "tatoeba.deu-eng.eng").read_text().splitlines()
    return {lang: sentences[:lines] for lang, sentences in texts.items()}


def language_basis(model: SentenceTransformer, texts: dict[str, list[str]], k: int) -> torch.Tensor:
    """(k, dim): the top directions of the centered language means, for each prompt of the model."""
    pooled = SentenceTransformer(modules=[model[0], model[1]], device="cpu")  # no Normalize
    deltas = []
    for prompt in model.prompts.values():
        means = np.stack(
            [pooled.encode(sentences, prompt=prompt, batch_size=64).mean(0) for sentences in texts.values()]
        )
        deltas.append(means - means.mean(0))
    _, singular_values, vt = np.linalg.svd(np.concatenate(deltas), full_matrices=False)
    print("singular values:", np.round(singular_values[: k + 3], 3))
    return torch.tensor(vt[:k], dtype=torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", required=True, help="A model with Transformer, Pooling and Normalize modules."
    )
    parser.add_argument("--output", required=True)
    parser.add_argument("--k", type=int, default=10, help="Directions removed (default: languages - 1).")
    parser.add_argument("--tatoeba", type=Path, default=Path("../shared/data/tatoeba"))
    parser.add_argument("--lines", type=int, default=1000, help="Sentences per language.")
    args = parser.parse_args()

    model = SentenceTransformer(args.model, device="cpu")
    if len(model) != 3 or type(model[2]).__name__ != "Normalize":
        raise SystemExit(
            f"{args.model}: expected Transformer, Pooling, Normalize modules; got {list(model.named_children())}"
        )
    basis = language_basis(model, tatoeba_texts(args.tatoeba, args.lines), args.k)
    projection = (
        torch.eye(basis.shape[1]) - basis.T @ basis
    )  # symmetric: Linear's (out, in) layout is the same
    dense = Dense(
        basis.shape[1],
        basis.shape[1],
        bias=False,
        activation_function=torch.nn.Identity(),
        init_weight=projection,
    )
    projected = SentenceTransformer(modules=[model[0], model[1], dense, model[2]], device="cpu")
    projected.prompts = model.prompts
    projected.save(args.output)
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
