"""The ``st-hybrid`` command line.

Subcommands:
    ``st-hybrid publish model PATH REPO_ID``   push a saved model with an st-hybrid model card
    ``st-hybrid publish dataset PATH REPO_ID`` push a training-pairs/parallel dataset with a dataset card
    ``st-hybrid publish metric FOLDER REPO_ID`` publish the ``evaluate`` metric folder as a Space
    ``st-hybrid card model PATH``              write README.md (+ assets/, eval/) into a model folder, no upload

Authentication comes from ``HF_TOKEN`` or ``hf auth login`` (``huggingface-cli login``); there is deliberately no
``--token`` flag, so tokens never end up in shell history or process lists. ``HF_ENDPOINT`` selects the Hub.

Usage:
    $ st-hybrid publish model output/model alice/hybrid-e5 --card-info card.yaml \\
          --report output/eval/xquad-r_metrics.json --private
    $ st-hybrid publish dataset output/pairs alice/xquad-r-pairs --card-info dataset_card.yaml
    $ st-hybrid publish metric st_hybrid/evaluate_metric/language_aware_retrieval alice/language_aware_retrieval
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _add_common_publish_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo_id", help="Target repository, 'user-or-org/name'.")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument(
        "--revision", default=None, help="Branch to commit to (created from main when missing)."
    )
    parser.add_argument("--commit-message", default=None, help="Commit summary.")
    parser.add_argument("--create-pr", action="store_true", help="Open a pull request instead of committing.")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``st-hybrid``.

    Usage:
        >>> build_parser().parse_args(["publish", "metric", "folder", "user/metric"]).kind
        'metric'
    """
    parser = argparse.ArgumentParser(
        prog="st-hybrid",
        description="Hybrid mono/cross-lingual batch training for sentence-transformers: publishing tools.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log progress (INFO).")
    commands = parser.add_subparsers(dest="command", required=True)

    publish = commands.add_parser(
        "publish", help="Publish to the Hugging Face Hub (HF_TOKEN / hf auth login)."
    )
    kinds = publish.add_subparsers(dest="kind", required=True)

    model = kinds.add_parser(
        "model", help="A saved sentence-transformers model with an st-hybrid model card."
    )
    model.add_argument("path", help="Saved model folder (model.save(...)).")
    _add_common_publish_options(model)
    _add_model_card_options(model)

    dataset = kinds.add_parser("dataset", help="A training-pairs or parallel dataset with a dataset card.")
    dataset.add_argument("path", help="Dataset.save_to_disk folder or a .json/.jsonl/.csv/.parquet file.")
    _add_common_publish_options(dataset)
    dataset.add_argument("--card-info", default=None, help="YAML/JSON file with DatasetCardInfo fields.")
    dataset.add_argument("--split", default=None, help="Split name for a single dataset (default: train).")

    metric = kinds.add_parser("metric", help="An evaluate metric folder, published as a Gradio Space.")
    metric.add_argument("path", help="Metric folder (script, README.md, app.py, requirements.txt).")
    _add_common_publish_options(metric)

    card = commands.add_parser("card", help="Write cards locally without uploading.")
    card_kinds = card.add_subparsers(dest="kind", required=True)
    card_model = card_kinds.add_parser(
        "model", help="Write README.md (+ assets/, eval/) into a model folder."
    )
    card_model.add_argument("path", help="Saved model folder.")
    card_model.add_argument("--repo-id", default=None, help="Repo id used in the usage snippet.")
    _add_model_card_options(card_model)
    return parser


def _add_model_card_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--card-info", default=None, help="YAML/JSON file with ModelCardInfo fields.")
    parser.add_argument(
        "--report",
        action="append",
        default=[],
        help="Evaluation report {name}_metrics.json (repeatable); a sibling {name}_pair_map.png is shipped too.",
    )


def _run(args: argparse.Namespace) -> str:
    from st_hybrid import hub
    from st_hybrid.dataset_card import DatasetCardInfo
    from st_hybrid.model_card import ModelCardInfo, write_model_card

    if args.command == "card":
        # Without --card-info, the facts saved beside the model (st_hybrid_card.json) are used.
        info = ModelCardInfo.from_file(args.card_info) if args.card_info else None
        return f"Wrote {write_model_card(args.path, info, args.report, repo_id=args.repo_id)}"

    common = {"private": args.private, "revision": args.revision, "commit_message": args.commit_message,
              "create_pr": args.create_pr}  # fmt: skip
    if args.kind == "model":
        info = ModelCardInfo.from_file(args.card_info) if args.card_info else None
        result = hub.publish_model(args.path, args.repo_id, card_info=info, reports=args.report, **common)
    elif args.kind == "dataset":
        info = DatasetCardInfo.from_file(args.card_info) if args.card_info else None
        result = hub.publish_dataset(args.path, args.repo_id, card_info=info, split=args.split, **common)
    else:
        result = hub.publish_metric(args.path, args.repo_id, **common)
    where = f"pull request {result.pr_url}" if result.pr_url else result.commit_url
    return f"Published {result.repo_type} {result.repo_id}: {where}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``st-hybrid``; returns the exit status (0 on success, 1 on a publishing error).

    Usage:
        >>> main(["publish", "model", "output/model", "alice/hybrid-e5", "--private"])  # doctest: +SKIP
        0
    """
    from st_hybrid.hub import PublishError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        print(_run(args))
    except (PublishError, FileNotFoundError, ValueError) as err:
        print(f"st-hybrid: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
