"""Every knowledge-base kind answers the one KnowledgeBaseIndex protocol; the reference's indexes only its API part."""

from __future__ import annotations

import numpy as np
import pytest

from ragmodels.retrieval.distributed.sharded import ShardedKnowledgeBase
from ragmodels.retrieval.hf_index import CustomHFIndex, IndexedPassages
from ragmodels.retrieval.hub import CanonicalHFIndex
from ragmodels.retrieval.legacy import LegacyIndex
from ragmodels.retrieval.protocol import KnowledgeBaseIndex
from ragmodels.retrieval.retriever import open_knowledge_base


@pytest.mark.parametrize("kind", [IndexedPassages, CustomHFIndex, CanonicalHFIndex, LegacyIndex, ShardedKnowledgeBase])
def test_every_kind_implements_the_protocol(kind):
    assert issubclass(kind, KnowledgeBaseIndex)


def test_the_references_index_has_only_the_api_part():
    """transformers' index objects have get_top_docs/get_doc_dicts but no one-call retrieve: the retriever
    searches them chunk by chunk, as transformers does."""
    from transformers.models.rag.retrieval_rag import CustomHFIndex as ReferenceIndex

    assert not issubclass(ReferenceIndex, KnowledgeBaseIndex)
    assert callable(getattr(ReferenceIndex, "get_top_docs")) and callable(getattr(ReferenceIndex, "get_doc_dicts"))


def test_open_knowledge_base_gives_a_protocol_object(tiny_knowledge_base):
    kb = open_knowledge_base(tiny_knowledge_base)
    assert isinstance(kb, KnowledgeBaseIndex)
    kb.init_index()
    embeds, ids, docs = kb.retrieve(np.ones((1, kb.dimension), np.float32), 2)
    assert ids.shape == (1, 2) and embeds.shape == (1, 2, kb.dimension) and len(docs) == 1
