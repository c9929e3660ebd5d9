"""TensorFlow RAG models (optional extra: ``pip install "ragmodels[tf]"``), mirroring ragmodels.modeling.

Importing this package needs no TensorFlow; touching a TF class without it raises an ImportError
that says how to install it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TFRagModel": "rag_model",
    "TFRagPreTrainedModel": "rag_model",
    "TFRagSequenceForGeneration": "rag_sequence",
    "TFRagTokenForGeneration": "rag_token",
    "TFRetrievAugLMOutput": "outputs",
    "TFRetrievAugLMMarginOutput": "outputs",
}

__all__ = sorted(_EXPORTS)

INSTALL_HINT = 'The TensorFlow RAG models need TensorFlow: pip install "ragmodels[tf]"'


def require_tensorflow() -> None:
    """Raise an ImportError with the install command when TensorFlow is missing."""
    try:
        import tensorflow  # noqa: F401
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ragmodels.tf' has no attribute {name!r}")
    require_tensorflow()
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
