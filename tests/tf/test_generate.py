"""Generated ids of the TF heads equal ragmodels' PyTorch generate, greedy and beam search, both heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tensorflow")

from .conftest import make_pair

SETTINGS = {
    "greedy": {"num_beams": 1, "max_length": 12},
    "beam": {"num_beams": 3, "max_length": 12},
    "beam+return2": {"num_beams": 3, "num_return_sequences": 2, "max_length": 10, "min_length": 4},
}


@pytest.mark.parametrize("head", ["sequence", "token"])
@pytest.mark.parametrize("setting", SETTINGS)
def test_generate_matches_pytorch(head, setting, rag_config, retriever, questions):
    torch_model, tf_model = make_pair(head, rag_config, retriever)
    kwargs = SETTINGS[setting]
    with torch.no_grad():
        expected = torch_model.generate(
            input_ids=torch.as_tensor(questions["input_ids"]), attention_mask=torch.as_tensor(questions["attention_mask"]),
            **kwargs,
        ).numpy()
    got = tf_model.generate(input_ids=questions["input_ids"], attention_mask=questions["attention_mask"], **kwargs)
    assert expected.shape[0] == 3 * kwargs.get("num_return_sequences", 1)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_generate_from_given_contexts(rag_config, retriever, questions):
    torch_model, tf_model = make_pair("token", rag_config)
    ctx = retriever(questions["input_ids"], np.random.default_rng(3).standard_normal((3, 32)).astype(np.float32),
                    n_docs=2, return_tensors="np")
    inputs = {"context_input_ids": ctx["context_input_ids"], "context_attention_mask": ctx["context_attention_mask"],
              "doc_scores": np.random.default_rng(4).standard_normal((3, 2)).astype(np.float32)}
    with torch.no_grad():
        expected = torch_model.generate(**{k: torch.as_tensor(v) for k, v in inputs.items()}, n_docs=2, num_beams=2,
                                        max_length=8).numpy()
    got = tf_model.generate(**inputs, n_docs=2, num_beams=2, max_length=8)
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("head", ["TFRagTokenForGeneration", "TFRagSequenceForGeneration"])
def test_copy_restricted_models_are_refused_clearly(head, bart_tokenizer):
    import ragmodels
    from conftest import tiny_rag_config

    config = tiny_rag_config(bart_tokenizer, copy_from_context=True)
    with pytest.raises(NotImplementedError, match="PyTorch only"):
        getattr(ragmodels, head)(config)
