"""PyTorch RAG models: RagModel and the RAG-Sequence / RAG-Token heads (see docs/architecture.md)."""

from .outputs import RetrievAugLMMarginOutput, RetrievAugLMOutput
from .rag_model import RagModel, RagPreTrainedModel, RetrievedContexts
from .rag_sequence import RagSequenceForGeneration
from .rag_token import RagTokenForGeneration

__all__ = [
    "RagModel",
    "RagPreTrainedModel",
    "RagSequenceForGeneration",
    "RagTokenForGeneration",
    "RetrievAugLMMarginOutput",
    "RetrievAugLMOutput",
    "RetrievedContexts",
]
