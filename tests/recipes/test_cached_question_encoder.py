"""The default's recipe trains with a cached, frozen question encoder in place; its checkpoints must still
load strictly into the plain model (they carried an extra ``encoder.`` prefix and reloaded a random encoder)."""

from __future__ import annotations

import torch

from conftest import N_DOCS, QUESTIONS, tiny_rag_config
from geoqa.common import cache_question_encoder
from ragmodels import RagTokenForGeneration


def test_a_checkpoint_saved_with_the_cached_question_encoder_reloads_to_the_same_outputs(
        question_tokenizer, bart_tokenizer, tmp_path):
    """The default's recipe trains with CachedQuestionEncoder in place (it wrapped the encoder under
    ``.encoder``, so the saved keys carried an extra prefix and reloading gave a random question encoder)."""
    torch.manual_seed(0)
    model = RagTokenForGeneration(tiny_rag_config(bart_tokenizer, "bart", "dpr", n_docs=N_DOCS)).eval()
    plain_keys = set(model.state_dict())
    original = cache_question_encoder(model)
    assert set(model.state_dict()) == plain_keys
    model.save_pretrained(tmp_path / "ckpt")
    model.rag.question_encoder = original
    again = RagTokenForGeneration.from_pretrained(tmp_path / "ckpt").eval()
    ids = question_tokenizer(QUESTIONS[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        want = model.rag.encode_question(ids["input_ids"], ids["attention_mask"])
        got = again.rag.encode_question(ids["input_ids"], ids["attention_mask"])
    assert torch.equal(got, want)
