"""Reader pre-training data and loss (``recipes/geoqa/reader_pretraining.py``)."""

from __future__ import annotations

import random

import pytest
import torch

from ragmodels.data.geo_qa import TEMPLATES
from geoqa import reader_pretraining as rp


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    import tempfile
    from pathlib import Path

    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartTokenizer

    from ragmodels.tokenizer_training import BART_SPECIAL_TOKENS

    texts = ["Mongolia is a country in Asia. Its capital is Ulaanbaatar.", "Kyrgyzstan borders China and Kazakhstan.",
             "The currency of Peru is the Sol (PEN).", "Lima is a city in Peru with a population of 7,737,002."] * 5
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1, special_tokens=BART_SPECIAL_TOKENS)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        return BartTokenizer(vocab=str(Path(tmp, "vocab.json")), merges=str(Path(tmp, "merges.txt")), add_prefix_space=True)


def test_names_are_made_of_vocabulary_tokens(tokenizer):
    name = rp.name_sampler(tokenizer, random.Random(0))
    names = [name() for _ in range(200)]
    assert len(set(names)) > 150  # made up, rarely repeated
    assert all(n and n[0].isupper() for n in names)
    vocab = tokenizer.get_vocab()
    assert all(all(t in vocab for t in tokenizer.tokenize(n)) for n in names)


def test_made_up_examples_state_their_answers(tokenizer):
    rng = random.Random(1)
    examples = rp.made_up_examples(rng, rp.name_sampler(tokenizer, rng), distract=0.5)
    read = [e for e in examples if e[2] == "read"]
    distractors = [e for e in examples if e[2] == "distractor"]
    assert read and distractors
    for source, answer, _ in read:
        passage, question = source.split(" // ")
        assert answer in passage
        assert question == question.lower() and question.endswith(("?", "."))
    for source, answer, _ in distractors:
        assert answer not in source.split(" // ")[0]
    phrasings = [t.lower().split("{e}") for templates in TEMPLATES.values() for t in templates]
    for source, _, _ in read:  # every question is a GeoQA phrasing around a made-up entity
        question = source.split(" // ")[1]
        assert any(question.startswith(a) and question.endswith(b) and len(question) > len(a + b) for a, b in phrasings)


def test_copy_examples_repeat_the_passage(tokenizer):
    rng = random.Random(2)
    for source, target, kind in rp.copy_examples(rng, rp.name_sampler(tokenizer, rng)):
        assert kind == "copy"
        assert source == f"{source.split(' / ', 1)[0]} / {target} // repeat"


def test_reader_loss_is_nll_for_answers_and_uniform_for_distractors():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 11)
    labels = torch.randint(0, 11, (3, 4))
    labels[0, 3] = -100
    distractor = torch.tensor([False, True, False])
    loss = rp.reader_loss(logits, labels, distractor, uniform_weight=0.5)
    logprobs = logits.log_softmax(-1)
    terms = []
    for b in range(3):
        for t in range(4):
            if labels[b, t] == -100:
                continue
            terms.append(0.5 * -logprobs[b, t].mean() if distractor[b] else -logprobs[b, t, labels[b, t]])
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)


def test_encode_examples_shapes(tokenizer):
    examples = [("Peru / Lima is a city. // which city?", "Lima", "read"), ("A / B // c?", "Sol", "distractor")]
    batch = rp.encode_examples(tokenizer, examples, decoder_start=tokenizer.eos_token_id)
    assert batch["decoder_input_ids"].shape == batch["labels"].shape
    assert batch["decoder_input_ids"][:, 0].tolist() == [tokenizer.eos_token_id] * 2
    assert batch["distractor"].tolist() == [False, True]
    first = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert tokenizer.decode(first, skip_special_tokens=True).strip() == "Lima"


def test_copy_mask_allows_what_copy_constrained_decoding_allows(tokenizer):
    examples = [("Peru / The currency of Peru is the Sol (PEN). // which currency?", "Sol", "read"),
                ("Lima / Lima is a city in Peru. // where?", "Peru", "read")]
    batch = rp.encode_examples(tokenizer, examples, decoder_start=tokenizer.eos_token_id)
    allowed = rp.copy_mask(batch, len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id)  # (b, t, V)
    labels = batch["labels"]
    assert allowed.shape == (*labels.shape, len(tokenizer))
    real = labels != -100
    assert allowed.gather(-1, labels.clamp(min=0)[..., None])[..., 0][real].all()  # every target token is allowed
    for row, (source, _, _) in enumerate(examples):
        ids = [t for t in batch["input_ids"][row].tolist() if t != tokenizer.pad_token_id]
        opening = set(ids) - {tokenizer.eos_token_id, tokenizer.bos_token_id}
        assert set(allowed[row, 0].nonzero().flatten().tolist()) == opening | {tokenizer.bos_token_id}
        assert set(allowed[row, 1].nonzero().flatten().tolist()) == opening  # after the BOS: any span opens
        first = labels[row, 1].item()
        after = {ids[p + 1] for p in range(len(ids) - 1) if ids[p] == first}
        assert set(allowed[row, 2].nonzero().flatten().tolist()) == after | {tokenizer.eos_token_id}


def test_reader_loss_with_a_copy_mask_is_the_nll_of_the_softmax_over_allowed_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 9)
    labels = torch.tensor([[1, 4, -100], [2, 5, 7]])
    allowed = torch.zeros(2, 3, 9, dtype=torch.bool)
    allowed[:, :, :6] = True  # the target 7 at (1, 2) is not allowed: that position keeps the full softmax
    loss = rp.reader_loss(logits, labels, torch.tensor([False, False]), 0.3, allowed)
    terms = [-logits[0, 0, :6].log_softmax(-1)[1], -logits[0, 1, :6].log_softmax(-1)[4],
             -logits[1, 0, :6].log_softmax(-1)[2], -logits[1, 1, :6].log_softmax(-1)[5], -logits[1, 2].log_softmax(-1)[7]]
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)
