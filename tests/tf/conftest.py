"""Fixtures of the TF tests: a PyTorch oracle (ragmodels' heads) and its TF twin with identical weights.

TensorFlow-free at import; each test module that needs TensorFlow skips without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ragmodels
from conftest import tiny_rag_config  # tests/conftest.py

HEADS = {"sequence": "RagSequenceForGeneration", "token": "RagTokenForGeneration"}


def make_pair(head: str, config, retriever=None):
    """(PyTorch head in eval mode, TF head) sharing the same random weights.

    The generator's weights are perturbed (final_logits_bias included) so that it writes varied, EOS-ending
    answers: beam search then has real choices to make.
    """
    torch.manual_seed(0)
    torch_model = getattr(ragmodels, HEADS[head])(config, retriever=retriever).eval()
    with torch.no_grad():
        for param in torch_model.generator.parameters():
            param.add_(torch.randn_like(param) * 0.3)
        torch_model.generator.final_logits_bias.normal_(0, 0.5)
        torch_model.generator.final_logits_bias[0, config.generator.eos_token_id] += 4.0
    tf_model = getattr(ragmodels, "TF" + HEADS[head])(config, retriever=retriever)
    tf_model.load_state_dict({k: v.numpy() for k, v in torch_model.state_dict().items()})
    return torch_model, tf_model


@pytest.fixture(scope="session")
def rag_config(bart_tokenizer):
    return tiny_rag_config(bart_tokenizer)


@pytest.fixture(scope="session")
def retriever(rag_config, bart_tokenizer, make_retriever):
    return make_retriever(rag_config, bart_tokenizer)


@pytest.fixture(scope="session")
def questions(question_tokenizer):
    from conftest import QUESTIONS

    return question_tokenizer(QUESTIONS, padding=True, return_tensors="np")


@pytest.fixture(scope="session")
def answers(bart_tokenizer):
    from conftest import ANSWERS

    return bart_tokenizer(ANSWERS, padding=True, return_tensors="np")["input_ids"]


def assert_close(tf_value, torch_value, atol: float = 1e-4) -> None:
    np.testing.assert_allclose(np.asarray(tf_value), torch_value.detach().numpy(), atol=atol, rtol=1e-4)
