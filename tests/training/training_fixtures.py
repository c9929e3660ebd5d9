"""Tiny RAG components and QA files for the training tests (importable by spawned worker processes)."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import pytest
import torch
from datasets import Dataset

from ragmodels import RagRetriever, RagSequenceForGeneration, RagTokenForGeneration, RagTokenizer
from ragmodels.training import Components

from conftest import PASSAGES, passage_embeddings, tiny_rag_config

CAPITALS = {
    "Mongolia": "Ulaanbaatar", "France": "Paris", "Peru": "Lima", "Japan": "Tokyo", "Kenya": "Nairobi",
    "Norway": "Oslo", "Chile": "Santiago", "Egypt": "Cairo", "Canada": "Ottawa", "Australia": "Canberra",
}
HEADS = {"token": RagTokenForGeneration, "sequence": RagSequenceForGeneration}


def qa_records() -> list[dict]:
    return [{"question": f"What is the capital of {c}?", "answers": [a], "entity": c, "relation": "capital"}
            for c, a in CAPITALS.items()]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def build_components(config, question_tokenizer, generator_tokenizer, dataset, kind: str = "token",
                     dropout: bool = True, seed: int = 0) -> Components:
    """A tiny RAG model of ``kind`` with our retriever over ``dataset`` (title/text/embeddings + FAISS index)."""
    if not dropout:
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            setattr(config.generator, name, 0.0)
        config.question_encoder.hidden_dropout_prob = config.question_encoder.attention_probs_dropout_prob = 0.0
    torch.manual_seed(seed)
    retriever = RagRetriever(config, question_tokenizer, generator_tokenizer, index=dataset)
    model = HEADS[kind](config=config, retriever=retriever)
    return Components(model=model, tokenizer=RagTokenizer(question_tokenizer, generator_tokenizer), retriever=retriever)


def save_components(components: Components, folder: Path) -> Path:
    components.retriever.save_pretrained(folder)
    components.model.save_pretrained(folder)
    components.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def qa_file(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", qa_records())


def indexed_dataset(embeddings):
    ds = Dataset.from_dict({"title": [t for t, _ in PASSAGES], "text": [x for _, x in PASSAGES],
                            "embeddings": embeddings.tolist()})
    ds.add_faiss_index("embeddings", custom_index=faiss.IndexFlatIP(embeddings.shape[1]))
    return ds


@pytest.fixture
def make_components(question_tokenizer, bart_tokenizer):
    """Factory: fresh, identically initialized tiny components (our model + retriever)."""

    def make(kind="token", dropout=True, embeddings=None, **overrides):
        config = tiny_rag_config(bart_tokenizer, **overrides)
        dataset = indexed_dataset(passage_embeddings() if embeddings is None else embeddings)
        return build_components(config, question_tokenizer, bart_tokenizer, dataset, kind=kind, dropout=dropout)

    return make


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
