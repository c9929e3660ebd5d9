"""Distributed retrieval: a knowledge base cut into shards, served by Ray actors (``pip install "ragmodels[ray]"``).

    ragmodels index shard my_kb --shards 4 --out my_kb_shards
    retriever = RayRagRetriever(config, question_tokenizer, generator_tokenizer, index="my_kb_shards")

Importing this package never needs Ray; opening a sharded knowledge base does.
"""

from .layout import ShardLayout, ShardSpec, is_sharded, read_layout
from .merge import merge_topk
from .ray_retriever import RayRagRetriever
from .sharded import RaySettings, ShardedKnowledgeBase, ShardError
from .sharding import shard_knowledge_base

__all__ = ["RayRagRetriever", "RaySettings", "ShardError", "ShardLayout", "ShardSpec", "ShardedKnowledgeBase",
           "is_sharded", "merge_topk", "read_layout", "shard_knowledge_base"]
