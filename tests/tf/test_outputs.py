"""TF outputs read as transformers' TF ModelOutput: by index over non-None fields, as a tuple, by key."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ragmodels.tf.bert import TFDPRQuestionEncoderOutput  # noqa: E402
from ragmodels.tf.outputs import TFRetrievAugLMMarginOutput  # noqa: E402


def test_none_fields_are_skipped_by_index_tuple_and_keys():
    loss, doc_scores = tf.constant([1.0]), tf.ones((1, 2))
    out = TFRetrievAugLMMarginOutput(loss=loss, doc_scores=doc_scores)  # logits (2nd field) left None
    assert out.keys() == ["loss", "doc_scores"]
    assert out[1] is doc_scores and out["doc_scores"] is doc_scores
    assert out.to_tuple() == (loss, doc_scores) and out[:] == (loss, doc_scores)
    assert "doc_scores" in out and "logits" not in out and len(out) == 2
    assert list(out) == ["loss", "doc_scores"] and dict(out.items())["loss"] is loss
    with pytest.raises(KeyError):
        out["logits"]  # a None field has no key, as in transformers' ModelOutput


def test_cache_is_also_past_key_values():
    cache = ((tf.zeros((1, 1, 1, 1)),) * 4,)
    assert TFRetrievAugLMMarginOutput(cache=cache).past_key_values is cache


def test_dpr_question_encoder_output_starts_with_the_pooled_vector():
    pooled, hidden = tf.ones((2, 4)), tf.zeros((2, 3, 4))
    out = TFDPRQuestionEncoderOutput(pooler_output=pooled, last_hidden_state=hidden)
    assert out[0] is pooled  # transformers' TFDPRQuestionEncoderOutput: pooler_output first


def test_question_encoder_of_a_tf_model_is_indexable(rag_config):
    from ragmodels import TFRagModel

    ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0]], dtype=np.int32)
    mask = (ids != 0).astype(np.int32)
    model = TFRagModel(rag_config)
    question = model.question_encoder(ids, attention_mask=mask)[0]  # as transformers' TF RAG tests do
    assert question.shape == (2, rag_config.retrieval_vector_size)
    np.testing.assert_array_equal(question.numpy(), model.encode_question(ids, mask).numpy())
