"""One way to load a RAG model with its retriever: ``load_rag(model, index=None, head=None, device=None)``.

``model`` is a checkpoint folder or Hub id, or None / ``"default"`` for the embedded default model
(assembled by ``ragmodels.default.load_default``). ``index`` replaces the knowledge base the checkpoint's
config names: a knowledge-base folder (``ragmodels index build``), a saved retriever's folder, a
(passages_path, index_path) pair, or anything ``RagRetriever.set_index`` accepts; a knowledge-base folder
is also written into the config, so a model saved afterwards points at it. The pipeline (and through it
``ragmodels ask`` and ``serve``), ``ragmodels eval`` and ``ragmodels train`` all load through here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

DEFAULT_MODEL = "default"
HEADS = {"RagTokenForGeneration": "token", "RagSequenceForGeneration": "sequence"}


def load_rag(model: str | os.PathLike | None = None, index: Any = None,
             head: Literal["token", "sequence"] | None = None, device: Any = None) -> tuple[Any, Any]:
    """(RAG model with its retriever, in eval mode, RagTokenizer). ``head`` overrides the checkpoint's own
    (its config's ``architectures``); ``device`` defaults to where transformers puts it (the CPU)."""
    if head not in (None, "token", "sequence"):
        raise ValueError(f"head must be 'token' or 'sequence', got {head!r}.")
    if model is None or model == DEFAULT_MODEL:
        from .default import load_default

        return load_default(index=index, head=head, device=device)
    from .config import RagConfig
    from .modeling import RagSequenceForGeneration, RagTokenForGeneration
    from .retrieval.knowledge_base import KnowledgeBase
    from .retrieval.knowledge_base.manifest import MANIFEST_NAME
    from .retrieval.retriever import RagRetriever, open_knowledge_base
    from .tokenization import RagTokenizer

    config = RagConfig.from_pretrained(model)
    head = head or head_of(config, model)
    tokenizer = RagTokenizer.from_pretrained(model, config=config)
    if index is None:
        retriever = RagRetriever.from_pretrained(model, config=config)
    else:
        if isinstance(index, (str, os.PathLike)) and (Path(index) / MANIFEST_NAME).is_file():
            index = KnowledgeBase.load(index)
            config.update(index.retriever_config())
        retriever = RagRetriever(config, tokenizer.question_encoder, tokenizer.generator,
                                 index=open_knowledge_base(index))
    model_class = RagTokenForGeneration if head == "token" else RagSequenceForGeneration
    rag = model_class.from_pretrained(model, config=config, retriever=retriever).eval()
    if device is not None:
        rag.to(device)
    return rag, tokenizer


def head_of(config: Any, model: str | os.PathLike) -> str:
    """"token" or "sequence", from a RAG config's ``architectures``."""
    heads = {HEADS[a] for a in config.architectures or () if a in HEADS}
    if len(heads) != 1:
        raise ValueError(
            f"Cannot tell the RAG head of {model} from its config's architectures ({config.architectures}); "
            "pass head='token' or head='sequence'."
        )
    return heads.pop()
