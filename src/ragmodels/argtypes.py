"""Command-line values checked up front: number types with a range (argparse ``type=``), checkpoint paths.

``parser.add_argument("--num-beams", type=integer(1))``: ``--num-beams 0`` stops at parsing with
"argument --num-beams: must be an integer >= 1, got '0'" (argparse names the flag), before anything loads.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def _ranged(kind: type, name: str, low: float | None, high: float | None, low_open: bool) -> Callable[[str], float]:
    if low is not None and high is not None:
        allowed = f"{name} from {low} to {high}"
    elif low is not None:
        allowed = f"{name} {'>' if low_open else '>='} {low}"
    else:
        allowed = f"{name} <= {high}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or (kind is float and not math.isfinite(value)) or (
                low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    parse.__name__ = name  # what argparse calls the type in its own messages
    return parse


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An int flag within [low, high] (either bound optional)."""
    return _ranged(int, "an integer", low, high, low_open=False)


def number(low: float | None = None, high: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """A finite float flag >= low (> low with ``above``) and <= high."""
    return _ranged(float, "a number", low, high, low_open=above)


def checkpoint_source(model: str, flag: str = "--model") -> str:
    """``model`` as given, or FileNotFoundError when it names a local folder (a path) that does not exist."""
    path = Path(model).expanduser()
    if (path.is_absolute() or model.startswith((".", "~")) or path.exists()) and not path.is_dir():
        raise FileNotFoundError(
            f"{flag} {model}: no such checkpoint folder. Give a folder written by save_pretrained or a Hub id "
            "such as facebook/rag-token-nq."
        )
    return str(path) if path.is_dir() else model
