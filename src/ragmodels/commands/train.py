"""``ragmodels init`` and ``ragmodels train``: the recipe's flags as CLI subcommands (registered by ragmodels.cli)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..training.config import FIELD_HELP, TrainConfig


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels train --train-file ... --model-path ... --output-dir ...``: fine-tune a RAG model."""
    parser = subparsers.add_parser("train", help="fine-tune RAG-Token / RAG-Sequence on question/answer JSONL")
    parser.add_argument("--config", help="JSON file with TrainConfig fields (flags override it)")
    add_config_arguments(parser)
    parser.set_defaults(func=_train)


def add_init_command(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels init OUT``: a trainable RAG checkpoint, offline (training/initialize.py)."""
    from ..training.initialize import GENERATORS

    parser = subparsers.add_parser(
        "init", help="make a trainable RAG checkpoint offline: the packaged MiniLM question encoder + a generator")
    parser.add_argument("output", help="new folder for the checkpoint")
    parser.add_argument("--generator", default="default",
                        help=f"{' or '.join(GENERATORS)} (the shipped default's trained generator, or the same "
                             "architecture with random weights), or a local seq2seq model folder (default: default)")
    parser.add_argument("--head", choices=["token", "sequence"], help="RAG head (default: the shipped default's, sequence)")
    parser.add_argument("--knowledge-base", help="knowledge-base folder the retriever searches (default: the shipped GeoQA one)")
    parser.add_argument("--n-docs", type=int, help="passages retrieved per question (default: the default model's, 3)")
    parser.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    from ..training.initialize import init_checkpoint

    if args.n_docs is not None and args.n_docs < 1:
        raise ValueError(f"--n-docs must be at least 1, got {args.n_docs}.")
    folder = init_checkpoint(args.output, generator=args.generator, head=args.head,
                             knowledge_base=args.knowledge_base, n_docs=args.n_docs)
    print(f"wrote a trainable RAG checkpoint to {folder}; train it with: ragmodels train --model-path {folder} ...",
          file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..argtypes import checkpoint_source
    from ..training import train

    config = config_from_flags(vars(args))
    if config.model_path is not None:
        checkpoint_source(config.model_path, "--model-path")
    result = train(config)
    print(json.dumps({"step": result.step, "loss": result.loss, "dev": result.dev_metrics,
                      "model": str(result.output_dir / "model")}, default=str))
    return 0


def config_from_flags(args: dict[str, Any]) -> TrainConfig:
    """Merge ``--config`` JSON with the flags that were given (argparse namespace as a dict)."""
    config_file = args.get("config")
    values = json.loads(Path(config_file).read_text()) if config_file else {}
    names = {f.name for f in fields(TrainConfig)}
    values.update({k: v for k, v in args.items() if k in names and v is not None})
    return TrainConfig.from_dict(values)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, with its help line (default None: the dataclass default applies)."""
    for f in fields(TrainConfig):
        flag, help_text = "--" + f.name.replace("_", "-"), FIELD_HELP[f.name]
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action="store_true", default=None, help=help_text)
        elif f.type == "bool | None":  # --optimizer-in-backward true|false (unset: automatic)
            parser.add_argument(flag, dest=f.name, type=_yes_no, metavar="{true,false}", help=help_text)
        elif f.name == "eval_ks":
            parser.add_argument(flag, dest=f.name, type=int, nargs="+", help=help_text)
        else:
            kind = {"int": int, "float": float}.get(f.type.split(" |")[0], str)
            parser.add_argument(flag, dest=f.name, type=kind, help=help_text)


def _yes_no(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() in ("true", "1", "yes")
