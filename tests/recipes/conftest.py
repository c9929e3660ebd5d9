"""The recipes (recipes/, plain scripts outside the package) import their GeoQA helpers as ``geoqa``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))
