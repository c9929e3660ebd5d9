"""Train a small generator tokenizer from text, for generators trained from scratch.

No pretrained generator is available offline, so the project trains its own; its tokenizer is a
byte-level BPE (BART style) or a SentencePiece unigram model (T5 style) learned from the corpus.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from transformers import BartTokenizer, PreTrainedTokenizerBase, T5Tokenizer

BART_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
T5_SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]


def train_generator_tokenizer(texts: Iterable[str], kind: str = "bart", vocab_size: int = 1000) -> PreTrainedTokenizerBase:
    """Learn a tokenizer of ``kind`` ("bart" or "t5") with at most ``vocab_size`` entries from ``texts``."""
    texts = list(texts)
    if not texts:
        raise ValueError("train_generator_tokenizer needs at least one text to learn a vocabulary from.")
    if kind == "bart":
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=BART_SPECIAL_TOKENS)
        with tempfile.TemporaryDirectory() as tmp:
            bpe.save_model(tmp)
            return BartTokenizer(vocab=str(Path(tmp, "vocab.json")), merges=str(Path(tmp, "merges.txt")))
    if kind == "t5":
        unigram = SentencePieceUnigramTokenizer()
        unigram.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=T5_SPECIAL_TOKENS, unk_token="<unk>")
        vocab = json.loads(unigram._tokenizer.to_str())["model"]["vocab"]
        return T5Tokenizer(vocab=[tuple(entry) for entry in vocab], extra_ids=0)
    raise ValueError(f"Unknown tokenizer kind {kind!r}; use 'bart' or 't5'.")
