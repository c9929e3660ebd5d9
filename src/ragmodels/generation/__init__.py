"""RAG decoding: RAG-Token marginal decoding and RAG-Sequence thorough / fast decoding.

``rag_token_generate`` and ``rag_sequence_generate`` are what the heads' ``generate`` call (imported
lazily). Both share one mechanism (``loop``): transformers' decoding loops driving a decoder step over
passages whose encoder and cross-attention states are computed once (``passages``).
"""

from .sequence_decoding import RagSequenceGenerateOutput, rag_sequence_generate
from .token_decoding import rag_token_generate

__all__ = ["RagSequenceGenerateOutput", "rag_sequence_generate", "rag_token_generate"]
