"""A BART tokenizer made from vocab.json + merges.txt (as transformers' own tests do): the same on 4.x and 5.x."""

from __future__ import annotations

import json

import pytest
from transformers import BartTokenizer


@pytest.fixture(scope="session")
def bart_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bart_tokenizer")
    symbols = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "\u0120"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    symbols += [c.upper() for c in symbols[6:]] + ["?", ".", ","] + ["\u0120" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    (folder / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return BartTokenizer.from_pretrained(folder)
