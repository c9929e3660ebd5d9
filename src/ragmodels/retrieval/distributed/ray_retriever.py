"""``RayRagRetriever``: a RagRetriever whose knowledge base is sharded across Ray actors.

It is a ``RagRetriever`` in every other respect (``retrieve``, ``__call__``, contextualization,
``save_pretrained``), so it goes wherever one goes: ``model.set_retriever``, ``generate``, training.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import PreTrainedTokenizerBase

from ragmodels.config import RagConfig
from ragmodels.retrieval.retriever import RagRetriever

from .sharded import RaySettings, ShardedKnowledgeBase, require_ray


class RayRagRetriever(RagRetriever):
    """Retriever over a shard folder (``ragmodels index shard``) served by named Ray actors.

    ``index`` is the shard folder (default ``config.index_path``) or a ``ShardedKnowledgeBase``;
    ``address`` and ``settings`` (``RaySettings`` fields: namespace, name, max_restarts, detached,
    timeout_s, actor_options) say where the actors live and how they are started. Processes that open
    the same folder with the same settings share the same actors.
    """

    def __init__(self, config: RagConfig, question_encoder_tokenizer: PreTrainedTokenizerBase,
                 generator_tokenizer: PreTrainedTokenizerBase, index: Any = None, init_retrieval: bool = True,
                 *, address: str | None = None, **settings: Any):
        require_ray()
        self.ray_settings = RaySettings(address=address, **settings)
        super().__init__(config, question_encoder_tokenizer, generator_tokenizer,
                         index=config.index_path if index is None else index, init_retrieval=init_retrieval)
        self._point_config_at(self.index)

    @staticmethod
    def _build_index(config: RagConfig) -> ShardedKnowledgeBase:
        """``from_pretrained``: the shard folder of ``config.index_path``, default Ray settings (RAY_ADDRESS)."""
        return ShardedKnowledgeBase(config.index_path)

    def _knowledge_base(self, obj: Any, passages: Any = None) -> ShardedKnowledgeBase:
        if passages is not None:
            raise ValueError("A sharded knowledge base holds its own passages; give only the shard folder.")
        if isinstance(obj, ShardedKnowledgeBase):
            return obj
        if not isinstance(obj, (str, os.PathLike)):
            raise TypeError(
                f"RayRagRetriever serves a shard folder (ragmodels index shard KB --shards N --out DIR), "
                f"not a {type(obj).__name__}; use RagRetriever for an unsharded knowledge base."
            )
        return ShardedKnowledgeBase(obj, self.ray_settings)

    def set_index(self, index_or_dataset_or_path: Any, passages: Any = None) -> None:
        """Switch to another shard folder (or ``ShardedKnowledgeBase``); its actors are found or started."""
        new_index = self._knowledge_base(index_or_dataset_or_path, passages)
        new_index.init_index()
        self.index = new_index
        self._point_config_at(new_index)

    def _point_config_at(self, kb: ShardedKnowledgeBase) -> None:
        self.config.index_name, self.config.index_path, self.config.passages_path = "custom", str(kb.path), None
