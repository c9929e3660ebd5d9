"""``ShardServer``: one shard's index and passages in one process (a Ray actor in practice).

Ray re-runs ``__init__`` when it restarts a dead actor, so a restarted server reloads its shard from
disk (checked against the shard's manifest) before it answers again.
"""

from __future__ import annotations

import os

import numpy as np

from ragmodels.retrieval.knowledge_base import KnowledgeBase

from .layout import ShardSpec


class ShardServer:
    def __init__(self, path: str, spec: ShardSpec):
        self.spec = spec
        self.kb = KnowledgeBase.load(path)
        if len(self.kb) != spec.count:
            raise ValueError(
                f"Shard {spec.number} at {path} holds {len(self.kb)} passages, its layout says {spec.count}."
            )

    def info(self) -> dict[str, int]:
        return {"number": self.spec.number, "count": len(self.kb), "pid": os.getpid()}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(bs, d) -> scores float32 (bs, k), global ids int64 (bs, k); holes keep id -1 (score -inf)."""
        scores, ids = self.kb.search(queries, k)
        return scores, np.where(ids >= 0, ids + self.spec.offset, -1)

    def search_down_to(self, queries: np.ndarray, thresholds: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Like ``search``, with k doubled until every row (bs,) holds all results scoring >= its threshold."""
        while True:
            scores, ids = self.search(queries, k)  # (bs, k)
            if k >= len(self.kb) or (scores[:, -1] < thresholds).all():
                return scores, ids
            k = min(2 * k, len(self.kb))

    def lookup(self, global_ids: np.ndarray) -> tuple[dict[str, list], np.ndarray]:
        """Passages of global ids (m,) -> columns (name -> m values, no embeddings), embeddings float32 (m, d)."""
        doc_dicts, embeds = self.kb.passages.lookup((global_ids - self.spec.offset)[None, :])  # (1, m, d)
        return doc_dicts[0], embeds[0]
