"""Reader pre-training: teach a generator trained from scratch to copy answers out of the passage it reads.

Trained on a few thousand question/answer pairs alone, a small generator memorizes answers: it outputs
names it saw as training answers and never one it did not, which is every answer of GeoQA's held-out
entities. Pre-training on *made-up worlds* removes the shortcut: GeoQA's own passage and question
templates (``ragmodels.data.geo_qa.write_entries``) filled with made-up countries, capitals, cities,
currencies, numbers and borders. Names are drawn from the generator's vocabulary, so that every token is,
at some point, an answer that has to be copied; nothing there can be memorized, the only way to the answer
is reading the passage. No fact of any split is used by the made-up worlds.

Examples are ``(source, target, kind)`` with the source as the retriever builds it
(``title / text // question``):

- ``copy``: a made-up passage in, the same text out (dense supervision for the copy mechanism; first epochs);
- ``read``: made-up QA on its passage, and the training split's QA on counterfactual gold passages
  (``real_examples``);
- ``distractor``: a question with a passage that does not state its answer (another passage of the same
  entity, or any passage). Its target tokens are scored against the uniform distribution: the generator
  learns to be unsure when the passage does not answer, so that in RAG's marginal over passages the one
  that does answer carries the prediction.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ragmodels.data.geo_qa import CONTINENTS, TEMPLATES, write_entries
from ragmodels.data.jsonl import read_jsonl

Example = tuple[str, str, str]  # (generator input, target text, kind)


def name_sampler(tokenizer, rng: random.Random, words: tuple[int, ...] = (1, 1, 1, 2, 2, 3),
                 pieces: tuple[int, ...] = (0, 0, 1, 1, 2)) -> Callable[[], str]:
    """A function returning made-up names: ``rng.choice(words)`` words, each a word-initial vocabulary token
    (capitalized for the first word, mostly) plus ``rng.choice(pieces)`` continuation tokens."""
    vocab = sorted(tokenizer.get_vocab())
    upper = [t for t in vocab if t.startswith("Ġ") and t[1:].isalpha() and t[1].isupper()]
    lower = [t for t in vocab if t.startswith("Ġ") and t[1:].isalpha() and t[1].islower()]
    continuations = [t for t in vocab if t.isalpha()]
    if not upper or not continuations:
        raise ValueError("name_sampler needs a byte-level BPE vocabulary (word-initial tokens start with 'Ġ').")

    def name() -> str:
        out = []
        for w in range(rng.choice(words)):
            first = rng.choice(upper) if w == 0 or rng.random() < 0.8 else rng.choice(lower or upper)
            tokens = [first] + [rng.choice(continuations) for _ in range(rng.choice(pieces))]
            out.append(tokenizer.convert_tokens_to_string(tokens).strip())
        return " ".join(out)

    return name


def made_up_world(rng: random.Random, name: Callable[[], str], n_countries: int = 60, n_cities: int = 60):
    """(documents, facts) of made-up countries and cities, written by GeoQA's templates."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    countries = {
        f"Z{i:03d}": {
            "name": name(), "continentcode": rng.choice(sorted(CONTINENTS)), "capital": name(),
            "currencyname": name(), "currencycode": "".join(rng.choice(letters) for _ in range(3)),
            "population": rng.randint(1_000, 1_500_000_000), "areakm2": rng.randint(1, 17_000_000),
        }
        for i in range(n_countries)
    }
    codes = list(countries)
    for code in codes:
        countries[code]["neighbours"] = ",".join(n for n in rng.sample(codes, rng.choice((0, 1, 1, 2, 3, 4))) if n != code)
    cities = sorted(
        ({"name": name(), "countrycode": rng.choice(codes), "population": rng.randint(50_000, 30_000_000), "geonameid": i}
         for i in range(n_cities)),
        key=lambda c: -c["population"],
    )
    return write_entries(countries, cities)


def made_up_examples(rng: random.Random, name: Callable[[], str], distract: float = 0.0) -> list[Example]:
    """``read`` examples of one made-up world (one random phrasing per fact) and, for a share ``distract`` of
    the facts, a ``distractor`` example with a passage that does not contain the answer."""
    documents, facts = made_up_world(rng, name)
    by_id = {d["id"]: d for d in documents}
    by_title: dict[str, list[dict]] = defaultdict(list)
    for d in documents:
        by_title[d["title"]].append(d)
    examples: list[Example] = []
    for fact in facts:
        question = rng.choice(TEMPLATES[fact.relation]).format(e=fact.entity).lower()
        answer = fact.answers[0]
        examples.append((_source(by_id[fact.passage_id], question), answer, "read"))
        if rng.random() < distract:
            same_entity = [d for d in by_title[fact.entity] if answer not in d["text"]]
            other = rng.choice(same_entity) if same_entity and rng.random() < 0.5 else rng.choice(documents)
            if answer not in other["text"]:
                examples.append((_source(other, question), answer, "distractor"))
    return examples


def copy_examples(rng: random.Random, name: Callable[[], str]) -> list[Example]:
    """``copy`` examples: each passage of a made-up world in, its text out."""
    documents, _ = made_up_world(rng, name, n_countries=20, n_cities=20)
    return [(_source(d, "repeat"), d["text"], "copy") for d in documents]


@dataclass
class RealQA:
    """The training split's QA with its gold passages, read once per run (``load_real``)."""

    records: list[dict]
    questions: list[str]  # as the generator sees them: the question-encoder tokenizer's decoding
    passages: dict[str, dict]  # gold passage id -> document
    answers_by_relation: dict[str, list[str]]


def load_real(data: Path, question_tokenizer) -> RealQA:
    """GeoQA's training split and documents under ``data``."""
    train = read_jsonl(data / "train.jsonl").records
    by_relation: dict[str, list[str]] = defaultdict(list)
    for r in train:
        by_relation[r["relation"]].append(r["answers"][0])
    decoded = question_tokenizer.batch_decode(question_tokenizer([r["question"] for r in train])["input_ids"],
                                              skip_special_tokens=True)
    return RealQA(train, decoded, {d["id"]: d for d in read_jsonl(data / "documents.jsonl").records}, by_relation)


def real_examples(real: RealQA, rng: random.Random, counterfactual: float = 0.8) -> list[Example]:
    """``read`` examples from the training split's gold passages.

    The question is what the retriever puts in the generator input (the uncased question-encoder tokenizer's
    decoding). With probability ``counterfactual`` the answer is replaced, in the passage and the target, by
    the answer of another training fact of the same relation, so that entity -> answer cannot be memorized.
    """
    examples = []
    for r, question in zip(real.records, real.questions):
        doc, answer = dict(real.passages[r["gold_passage_id"]]), r["answers"][0]
        if rng.random() < counterfactual and answer in doc["text"]:
            other = rng.choice(real.answers_by_relation[r["relation"]])
            doc["text"], answer = doc["text"].replace(answer, other), other
        examples.append((_source(doc, question), answer, "read"))
    return examples


def _source(doc: dict, question: str) -> str:
    return f"{doc['title']} / {doc['text']} // {question}"


def copy_mask(batch: dict[str, torch.Tensor], vocab: int, eos_token_id: int, bos_token_id: int | None) -> torch.Tensor:
    """(b, t, V) the tokens copy-constrained decoding (``ragmodels.generation.context_copy``) allows at each
    target position of ``batch`` (``encode_examples``), given the target tokens before it."""
    from ragmodels.generation.context_copy import ContextCopy

    copy = ContextCopy(batch["input_ids"], batch["attention_mask"], [eos_token_id], bos_token_id=bos_token_id)
    rows = torch.arange(batch["input_ids"].shape[0])
    return copy.allowed_teacher_forced(batch["decoder_input_ids"], rows, vocab)


def reader_loss(logits: torch.Tensor, labels: torch.Tensor, distractor: torch.Tensor,
                uniform_weight: float, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-token loss: negative log-likelihood of the target, or for distractor rows ``uniform_weight``
    times the cross-entropy to the uniform distribution over the vocabulary.

    logits (b, t, V), labels (b, t) with -100 for padding, distractor (b,) bool. ``allowed`` (b, t, V): the
    softmax runs over these tokens only (``copy_mask``), at positions whose target is one of them.
    """
    if allowed is not None:
        usable = allowed.gather(-1, labels.clamp(min=0).unsqueeze(-1))  # (b, t, 1): the target is allowed
        logits = logits.masked_fill(usable & ~allowed, float("-inf"))
    logprobs = logits.log_softmax(-1)  # (b, t, V)
    mask = labels != -100  # (b, t)
    nll = -logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (b, t)
    uniform = -logprobs.mean(-1)  # (b, t)
    per_token = torch.where(distractor[:, None], uniform_weight * uniform, nll)
    return (per_token * mask).sum() / mask.sum()


def teacher_forcing(tokenizer, targets: list[str], decoder_start: int, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs ([start] + target[:-1], padded) and labels (target, -100 padding) of ``targets``: (b, t) each."""
    ids = [[decoder_start, *t] for t in tokenizer(targets, truncation=True, max_length=max_length)["input_ids"]]
    labels = torch.full((len(ids), max(map(len, ids))), -100, dtype=torch.long)  # (b, t+1)
    for row, target in enumerate(ids):
        labels[row, : len(target)] = torch.tensor(target)
    decoder_input_ids = labels[:, :-1].clone()
    decoder_input_ids[decoder_input_ids == -100] = tokenizer.pad_token_id
    return decoder_input_ids, labels[:, 1:].contiguous()


def encode_examples(tokenizer, examples: list[Example], decoder_start: int, max_source: int = 96,
                    max_target: int = 64) -> dict[str, torch.Tensor]:
    """Source ids/mask, decoder inputs ([start] + target[:-1]), labels and the distractor flags of a batch."""
    enc = tokenizer([e[0] for e in examples], padding=True, truncation=True, max_length=max_source, return_tensors="pt")
    decoder_input_ids, labels = teacher_forcing(tokenizer, [e[1] for e in examples], decoder_start, max_target)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "decoder_input_ids": decoder_input_ids, "labels": labels,
            "distractor": torch.tensor([e[2] == "distractor" for e in examples])}


def epoch_examples(epoch: int, rng: random.Random, name: Callable[[], str], real: RealQA, copy_epochs: int,
                   made_up: int, distract: float) -> list[Example]:
    """One epoch's shuffled examples: ``made_up`` copy examples in the first ``copy_epochs`` epochs; from the
    last copy epoch on, ``made_up`` made-up read/distractor examples plus the real training examples."""
    examples: list[Example] = []
    if epoch < copy_epochs:
        while len(examples) < made_up:
            examples += copy_examples(rng, name)
        examples = examples[:made_up]
    if epoch >= copy_epochs - 1:
        start = len(examples)
        while len(examples) - start < made_up:
            examples += made_up_examples(rng, name, distract)
        examples += real_examples(real, rng)
    rng.shuffle(examples)
    return examples


def pretrain_reader(generator, tokenizer, data: Path, question_tokenizer, epochs: int, copy_epochs: int = 3,
                    made_up: int = 4000, distract: float = 0.0, uniform_weight: float = 0.3, lr: float = 2e-3,
                    batch_size: int = 32, warmup_steps: int = 100, seed: int = 0, copy_softmax: bool = False, log=print):
    """Seq2seq pre-training of ``generator`` on copy, made-up and real reading examples (see the module doc).

    ``copy_softmax``: the softmax of each target token runs over the tokens copy-constrained decoding allows there
    (``copy_mask``): the generator learns to choose among spans of its input, for use with that decoding.
    """
    from tqdm.auto import tqdm

    from ragmodels.training.optim import build_optimizer, build_scheduler

    if copy_softmax and distract:
        raise ValueError("copy_softmax and distract cannot be combined: a distractor's uniform target needs every token.")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    name = name_sampler(tokenizer, rng)
    real = load_real(data, question_tokenizer)
    n_real = len(real.records)
    per_epoch = [made_up * (e < copy_epochs) + (made_up + n_real) * (e >= copy_epochs - 1) for e in range(epochs)]
    optimizer = build_optimizer(generator, lr, 0.01)
    scheduler = build_scheduler(optimizer, warmup_steps, sum(math.ceil(n / batch_size) for n in per_epoch))
    decoder_start = generator.config.decoder_start_token_id
    generator.train()
    for epoch in range(epochs):
        examples = epoch_examples(epoch, rng, name, real, copy_epochs, made_up, distract)
        total = 0.0
        for i in tqdm(range(0, len(examples), batch_size), desc=f"reader epoch {epoch + 1}/{epochs}", unit="batch",
                      leave=False):
            batch = encode_examples(tokenizer, examples[i : i + batch_size], decoder_start)
            logits = generator(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               decoder_input_ids=batch["decoder_input_ids"]).logits
            allowed = copy_mask(batch, logits.shape[-1], tokenizer.eos_token_id, tokenizer.bos_token_id) if copy_softmax else None
            loss = reader_loss(logits, batch["labels"], batch["distractor"], uniform_weight, allowed)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total += loss.item() * len(batch["distractor"])
        log(f"reader pre-training epoch {epoch + 1}/{epochs}: {len(examples)} examples, loss {total / len(examples):.4f}")
    generator.eval()
    return generator


@torch.no_grad()
def gold_passage_accuracy(generator, tokenizer, data: Path, question_tokenizer, split: str = "dev",
                          copy: bool = False) -> dict[str, float]:
    """Exact match of the generator alone on ``split``'s questions with their gold passage, per relation: the
    reader's ceiling, independent of retrieval. ``copy``: with copy-constrained decoding."""
    from transformers import LogitsProcessorList

    from ragmodels.evaluation.metrics import exact_match, max_over_answers
    from ragmodels.generation.context_copy import ContextCopy, ContextCopyLogitsProcessor
    docs = {d["id"]: d for d in read_jsonl(data / "documents.jsonl").records}
    records = read_jsonl(data / f"{split}.jsonl").records
    decoded = question_tokenizer.batch_decode(question_tokenizer([r["question"] for r in records])["input_ids"],
                                              skip_special_tokens=True)
    scores: dict[str, list[float]] = defaultdict(list)
    generator.eval()
    for i in range(0, len(records), 128):
        chunk = records[i : i + 128]
        enc = tokenizer([_source(docs[r["gold_passage_id"]], q) for r, q in zip(chunk, decoded[i : i + 128])],
                        padding=True, truncation=True, max_length=96, return_tensors="pt")
        processors = LogitsProcessorList([ContextCopyLogitsProcessor(ContextCopy(
            enc["input_ids"], enc["attention_mask"], [tokenizer.eos_token_id], bos_token_id=tokenizer.bos_token_id,
        ))] if copy else [])
        out = generator.generate(**enc, max_new_tokens=24, num_beams=1, do_sample=False, logits_processor=processors)
        for r, prediction in zip(chunk, tokenizer.batch_decode(out, skip_special_tokens=True)):
            scores[r["relation"]].append(max_over_answers(exact_match, prediction.strip(), r["answers"]))
    everything = [s for v in scores.values() for s in v]
    return {"all": sum(everything) / len(everything), **{k: sum(v) / len(v) for k, v in sorted(scores.items())}}
