#!/usr/bin/env bash
# A cheap second environment for the compatibility tests: a venv holding only transformers==VERSION
# and what it needs that the base venv lacks (its tokenizers / huggingface_hub); everything else
# (torch, datasets, faiss, ...) comes from the base venv, whose site-packages a .pth file appends to
# sys.path (so the venv's own transformers wins). A second run with the same version returns at once (a stamp).
#
#   bash scripts/compat_env.sh VERSION DEST [BASE_VENV]     (BASE_VENV: default .venv)
#
# Prints DEST/bin/python on success; exits non-zero (with the reason on stderr) when it cannot be
# made, e.g. without a package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
version="$1"
dest="$2"
base="$(cd "${3:-.venv}" && pwd)"
say() { echo "compat_env: $*" >&2; }

mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
stamp="$dest/.stamp"
if [ -x "$dest/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version $base" ]; then
    echo "$dest/bin/python"
    exit 0
fi
rm -f "$stamp"
[ -x "$dest/bin/python" ] || "$base/bin/python" -m venv --without-pip "$dest"
base_site=$("$base/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
site=$("$dest/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$base_site" > "$site/_compat_base.pth"
# pip resolves against the base's packages too (they are on the venv's sys.path) and installs into
# the venv only what they do not satisfy: transformers, its tokenizers / huggingface_hub, and the like.
# datasets is named too: it also bounds huggingface_hub, so a release fitting that one is chosen.
say "transformers==$version into $dest"
"$base/bin/python" -m pip --python "$dest/bin/python" --disable-pip-version-check -q install \
    "transformers==$version" datasets
found=$("$dest/bin/python" -c "import transformers; print(transformers.__version__, transformers.__file__)")
case "$found" in
    "$version $site"/*) ;;
    *) say "transformers resolves to $found, not $version under $site"; exit 1 ;;
esac
echo "$version $base" > "$stamp"
echo "$dest/bin/python"
