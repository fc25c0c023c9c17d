"""Average the weights of a run's last checkpoints (a uniform "checkpoint soup"), saved as a plain model folder.

An experiment for issue 10's rank-distance gap (result in docs/results.md). The average is built in memory from
pairwise :func:`st_hybrid.merge.interpolate` steps, each giving the next model its share (1/2, 1/3, ...), so
the architecture and parameter-name checks of the merge apply; only the result is saved. The last model given (the run's final model)
comes last: the soup keeps its configuration (trainer checkpoints store the training truncation, 64 tokens,
and the final model the full length). Merge the soup with the base model as usual, e.g. with
``evaluate_model.py --merge-base``.

Usage:
    .venv/bin/python examples/experiments/checkpoint_soup.py --output outputs/run/model-soup \\
        outputs/run/checkpoints/checkpoint-300 outputs/run/checkpoints/checkpoint-400 outputs/run/model
    .venv/bin/python examples/evaluate_model.py --model outputs/run/model-soup --merge-base $BASE_MODEL \\
        --merge-ratios 0.5 --output outputs/run/eval-soup
"""

from __future__ import annotations

import argparse
from pathlib import Path

from st_hybrid.merge import interpolate, save_merged


def checkpoint_soup(models: list[Path], output: Path) -> None:
    """Save the uniform weight average of ``models`` (at least two) to ``output``."""
    if len(models) < 2:
        raise SystemExit(
            f"A soup needs at least two models, got {len(models)}: give checkpoints and the final model."
        )
    running = models[0]
    # In memory; running holds the mean of the first count - 1 models, so the next one weighs 1 / count.
    for count, model in enumerate(models[1:-1], start=2):
        running = interpolate(running, model, 1 / count)
    names = ", ".join(str(model) for model in models[:-1])
    save_merged(
        running, models[-1], 1 / len(models), output, base_name=f"mean of {names}", tuned_name=str(models[-1])
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "models", nargs="+", type=Path, help="Model folders; the last one's configuration is kept."
    )
    parser.add_argument("--output", type=Path, required=True, help="Folder for the averaged model.")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_soup(args.models, args.output)
    print(f"Averaged {len(args.models)} models into {args.output}")


if __name__ == "__main__":
    main()
