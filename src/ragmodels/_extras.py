"""Importing a package of an optional extra, with an error that says which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``; without it, an ImportError naming ``pip install "ragmodels[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f'{purpose} needs {module.split(".")[0]}: pip install "ragmodels[{extra}]"') from error
