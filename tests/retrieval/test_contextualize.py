"""Generator inputs equal the reference's ``postprocess_docs`` byte for byte."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import RagRetriever as ReferenceRetriever

from ragmodels.retrieval.contextualize import combine, contextualize

DOCS = [
    {"title": ['"Quoted title"', 'Ends with quote"', "Plain"], "text": ["A  text with  double spaces.", "x", "y z"]},
    {"title": ['""', "Two  spaces", '"Lead'], "text": ["Body one", "   three spaces", "last"]},
]
QUESTIONS = ["what is  it?", "who"]


@pytest.mark.parametrize("prefix", [None, "", "question: "])
def test_matches_reference_postprocess_docs(generator, prefix):
    _, tokenizer = generator
    config = SimpleNamespace(title_sep=" / ", doc_sep=" // ", max_combined_length=24)
    reference_self = SimpleNamespace(config=config, generator_tokenizer=tokenizer)
    expected = ReferenceRetriever.postprocess_docs(reference_self, DOCS, QUESTIONS, prefix, n_docs=3)
    got = contextualize(DOCS, QUESTIONS, tokenizer, prefix=prefix, title_sep=" / ", doc_sep=" // ", max_length=24)
    assert got == expected
    assert len(got[0]) == 6 and {len(row) for row in got[0]} == {24}


def test_strip_and_space_rules():
    assert combine('"Quoted"', "t", "q", None, " / ", " // ") == "Quoted / t // q"
    assert combine('""x""', "a  b", "q", "p ", " / ", " // ") == 'p "x" / a b // q'
    assert combine("T", "   x", "q", None, " / ", " // ") == "T /  x // q"  # one pass: 4 spaces -> 2
