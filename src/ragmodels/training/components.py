"""What a training run works on: the model, tokenizer, retriever and (end-to-end) the context encoder,
loaded from folders, plus the knowledge-base hooks end-to-end training needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..retrieval.index import build_index
from ..retrieval.passages import PassageStore



@dataclass
class Components:
    model: torch.nn.Module
    tokenizer: Any  # RagTokenizer
    retriever: Any  # RagRetriever
    ctx_encoder: torch.nn.Module | None = None
    ctx_tokenizer: Any = None


def load_components(config) -> Components:
    """Load from ``config.model_path`` (a checkpoint, or "default": the shipped default model; + ``knowledge_base``
    and ``ctx_encoder_path``) through ``ragmodels.loader.load_rag``."""
    from ragmodels.loader import DEFAULT_MODEL, load_rag
    from ragmodels.retrieval.knowledge_base import ContextEncoder

    if config.model_path is None:
        raise ValueError("TrainConfig.model_path is needed to load the model (or pass ready Components).")
    if config.model_path == DEFAULT_MODEL and config.ctx_encoder_path is not None:
        raise ValueError("End-to-end training (ctx_encoder_path) needs a checkpoint folder: make one with "
                         "`ragmodels init DIR` and pass --model-path DIR.")
    model, tokenizer = load_rag(config.model_path, index=config.knowledge_base, head=config.rag_kind)
    components = Components(model=model, tokenizer=tokenizer, retriever=model.rag.retriever)
    if config.ctx_encoder_path is not None:
        encoder = ContextEncoder.from_pretrained(config.ctx_encoder_path)
        components.ctx_encoder, components.ctx_tokenizer = encoder.model.train(), encoder.tokenizer
    return components


def kb_passages(retriever) -> tuple[dict[str, list], np.ndarray]:
    """Every passage of the retriever's knowledge base: its columns (title, text, ...) and embeddings (n, d)."""
    store = _store(retriever)
    columns = store.fetch(np.arange(len(store))[None])[0]
    return columns, store.all_embeddings()


def install_embeddings(retriever, columns: dict[str, list], embeddings: np.ndarray) -> None:
    """Swap in the passages ``columns`` with new ``embeddings`` (n, d) and an exact (flat) index over them."""
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()), embeddings.shape[1])
    table = pa.table({**columns, "embeddings": vectors})
    retriever.set_index(build_index(embeddings, kind="flat"), passages=PassageStore(table, source="<re-encoded>"))


def _store(retriever) -> PassageStore:
    passages = getattr(retriever.index, "passages", None)
    if not isinstance(passages, PassageStore):
        raise ValueError(
            "End-to-end training re-indexes the knowledge base, which needs a custom knowledge base "
            f"(passages with embeddings); this retriever uses a {type(retriever.index).__name__}."
        )
    return passages
