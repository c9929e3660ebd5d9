"""ragmodels: Retrieval-Augmented Generation models with the public API of transformers' RAG.

Names are imported lazily, so ``import ragmodels`` stays fast and the optional extras (TensorFlow,
Ray, FastAPI) are only needed by the classes that use them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RagConfig": "ragmodels.config",
    "RagTokenizer": "ragmodels.tokenization",
    "RagRetriever": "ragmodels.retrieval.retriever",
    "CustomHFIndex": "ragmodels.retrieval.hf_index",
    "CanonicalHFIndex": "ragmodels.retrieval.hub",
    "LegacyIndex": "ragmodels.retrieval.legacy",
    "RagInputError": "ragmodels.errors",
    "RetrievAugLMOutput": "ragmodels.modeling.outputs",
    "RetrievAugLMMarginOutput": "ragmodels.modeling.outputs",
    "RagPreTrainedModel": "ragmodels.modeling.rag_model",
    "RagModel": "ragmodels.modeling.rag_model",
    "RagSequenceForGeneration": "ragmodels.modeling.rag_sequence",
    "RagTokenForGeneration": "ragmodels.modeling.rag_token",
    "RayRagRetriever": "ragmodels.retrieval.distributed",
    "TFRagModel": "ragmodels.tf",
    "TFRagSequenceForGeneration": "ragmodels.tf",
    "TFRagTokenForGeneration": "ragmodels.tf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ragmodels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
