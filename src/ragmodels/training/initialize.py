"""A trainable RAG checkpoint made offline: the packaged MiniLM question encoder + a generator.

``ragmodels init OUT`` (or :func:`init_checkpoint`) writes an ordinary RAG checkpoint folder
(config.json, model.safetensors, the two tokenizer sub-folders) that ``ragmodels train --model-path OUT``
starts from. The generator is the shipped default's (``"default"``), a fresh random model of the same
architecture and tokenizer (``"fresh"``: to train a reader for your own documents from scratch), or any
local seq2seq folder. The retriever points at a knowledge base (the shipped GeoQA one unless given).
"""

from __future__ import annotations

import os
from pathlib import Path

GENERATORS = ("default", "fresh")


def init_checkpoint(out: str | os.PathLike, generator: str = "default", head: str | None = None,
                    knowledge_base: str | os.PathLike | None = None, n_docs: int | None = None) -> Path:
    """Write a RAG checkpoint into ``out`` (must not exist yet, or be empty); returns its folder.

    ``generator``: "default" (the shipped default's trained generator), "fresh" (same architecture and
    tokenizer, random weights) or a local folder of a seq2seq model with its tokenizer. ``head``: "token"
    or "sequence" (default: the shipped default's, RAG-Sequence). ``knowledge_base``: the folder the
    retriever searches (default: the shipped GeoQA knowledge base).
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from ..default import DEFAULT_DIR, KB_DIR, load_default
    from ..loading import load_pretrained
    from ..retrieval.knowledge_base import KnowledgeBase
    from ..tokenization import RagTokenizer

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty: give a new folder for the checkpoint.")
    if head not in (None, "token", "sequence"):
        raise ValueError(f"head must be 'token' or 'sequence', got {head!r}.")
    if generator not in GENERATORS and not Path(generator).is_dir():
        raise FileNotFoundError(
            f"--generator {generator!r}: not a folder; give one of {GENERATORS} or a local seq2seq model folder.")
    kb = KnowledgeBase.load(Path(knowledge_base) if knowledge_base is not None else DEFAULT_DIR / KB_DIR)
    model, tokenizer = load_default(index=kb, head=head)  # the loaded knowledge base, not opened a second time
    config = model.config
    if generator == "fresh":
        torch.manual_seed(0)
        model.rag.generator = AutoModelForSeq2SeqLM.from_config(config.generator)
    elif generator != "default":
        generator_model = load_pretrained(AutoModelForSeq2SeqLM, generator, "generator", dtype=torch.float32)
        model.rag.generator = generator_model
        config.generator = generator_model.config
        config.copy_from_context = False  # a generator not trained for the copy-restricted softmax
        tokenizer = RagTokenizer(tokenizer.question_encoder, AutoTokenizer.from_pretrained(generator))
    if n_docs is not None:
        config.n_docs = n_docs
    fields = kb.retriever_config()  # absolute paths: the checkpoint may be used from another folder
    config.update({**fields, "passages_path": str(Path(fields["passages_path"]).resolve()),
                   "index_path": str(Path(fields["index_path"]).resolve())})
    config.architectures = [type(model).__name__]
    model.to(torch.float32).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

