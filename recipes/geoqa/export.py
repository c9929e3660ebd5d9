"""The default model's export recipe: write a trained GeoQA RAG model in the layout ``ragmodels.default`` loads,
and install such a folder into the package (``recipes/train_default.py --export``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ragmodels.abstention import FILE_NAME as ABSTENTION_FILE
from ragmodels.default import (
    DEFAULT_DIR,
    GENERATOR_DIR,
    GENERATOR_TOKENIZER_DIR,
    KB_DIR,
    MINILM_PACKAGE,
    QUESTION_LAYERS_FILE,
)


def save_question_layers(question_encoder, layers: int, path: Path) -> None:
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
        save_question_layers(model.rag.question_encoder, question_layers, out / QUESTION_LAYERS_FILE)
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
