"""``ragmodels data OUT_DIR``: (re)generate the GeoQA benchmark files (registered by ragmodels.cli)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_data_command(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels data OUT_DIR [--seed 0] [--n-cities 300] [--phrasings-per-fact 2]``."""
    from ..argtypes import integer

    parser = subparsers.add_parser("data", help="(re)generate the GeoQA benchmark files (documents, train/dev/test)")
    parser.add_argument("out_dir", type=Path, help="folder to write documents.jsonl, train/dev/test.jsonl, meta.json")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the splits and phrasings (default 0)")
    parser.add_argument("--n-cities", type=integer(1), default=300, help="large cities asked about (default 300)")
    parser.add_argument("--phrasings-per-fact", type=integer(1), default=2,
                        help="questions per fact, each from another template (default 2)")
    parser.set_defaults(func=_data)


def _data(args: argparse.Namespace) -> int:
    from ..data.geo_qa import write_geo_qa

    qa = write_geo_qa(args.out_dir, seed=args.seed, n_cities=args.n_cities, phrasings_per_fact=args.phrasings_per_fact)
    print(json.dumps({k: v for k, v in qa.meta.items() if not k.endswith("_groups")}, indent=2))
    return 0
