"""The context encoder of a build: any transformers encoder (DPRContextEncoder, BERT, MiniLM, ...)
turned into one vector per (title, text) passage with the pooling rules of ``ragmodels.encoding``.

Passages are fed as (title, text) text pairs, as the reference's ``use_own_knowledge_dataset`` does
with DPR's context tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ragmodels.encoding import pool, resolve_pooling


class ContextEncoder:
    """Wraps a model and its tokenizer; ``encode`` returns float32 (n, dim) embeddings."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pooling: str | None = None,
        name: str | None = None,
        max_length: int = 256,
        device: str | torch.device = "cpu",
    ):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.pooling = resolve_pooling(pooling, model.config.model_type)
        self.name = name or getattr(model.config, "_name_or_path", "") or model.config.model_type
        self.max_length = max_length
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(cls, name_or_path: str, pooling: str | None = None, **kwargs) -> "ContextEncoder":
        """Load any transformers encoder folder or hub name (DPR context encoders load as DPRContextEncoder)."""
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = _load_model(name_or_path)
        return cls(model, tokenizer, pooling=pooling, name=str(name_or_path), **kwargs)

    @property
    def dim(self) -> int:
        """Size of the pooled vectors."""
        config = self.model.config
        if self.pooling == "pooler" and getattr(config, "projection_dim", 0):
            return config.projection_dim
        return config.hidden_size

    @torch.inference_mode()
    def encode(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Embed one batch of passages: float32 (len(texts), dim)."""
        batch = self.tokenizer(
            list(titles), list(texts), truncation="longest_first", max_length=self.max_length,
            padding="longest", return_tensors="pt",
        ).to(self.device)
        outputs = self.model(**batch, return_dict=True)
        return pool(outputs, batch["attention_mask"], self.pooling).float().cpu().numpy()


def _load_model(name_or_path: str) -> PreTrainedModel:
    from transformers import AutoConfig, DPRContextEncoder

    if AutoConfig.from_pretrained(name_or_path).model_type == "dpr":
        return DPRContextEncoder.from_pretrained(name_or_path)
    return AutoModel.from_pretrained(name_or_path)
