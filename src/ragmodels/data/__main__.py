"""Script: (re)generate the GeoQA benchmark files, ``python -m ragmodels.data OUT_DIR [--seed 0]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .geo_qa import write_geo_qa


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="(Re)generate the GeoQA benchmark files.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-cities", type=int, default=300)
    parser.add_argument("--phrasings-per-fact", type=int, default=2)
    args = parser.parse_args(argv)
    qa = write_geo_qa(args.out_dir, seed=args.seed, n_cities=args.n_cities, phrasings_per_fact=args.phrasings_per_fact)
    print(json.dumps({k: v for k, v in qa.meta.items() if not k.endswith("_groups")}, indent=2))


if __name__ == "__main__":
    main()
