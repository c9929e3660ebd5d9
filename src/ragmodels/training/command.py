"""``ragmodels train``: the recipe's flags as a CLI subcommand (registered by ragmodels.cli)."""

from __future__ import annotations

import argparse
import json


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels train --train-file ... --model-path ... --output-dir ...``: fine-tune a RAG model."""
    from .recipe import add_config_arguments

    parser = subparsers.add_parser("train", help="fine-tune RAG-Token / RAG-Sequence on question/answer JSONL")
    parser.add_argument("--config", help="JSON file with TrainConfig fields (flags override it)")
    add_config_arguments(parser)
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from ..argtypes import checkpoint_source
    from .recipe import config_from_flags, train

    config = config_from_flags(vars(args))
    if config.model_path is not None:
        checkpoint_source(config.model_path, "--model-path")
    result = train(config)
    print(json.dumps({"step": result.step, "loss": result.loss, "dev": result.dev_metrics,
                      "model": str(result.output_dir / "model")}, default=str))
    return 0
