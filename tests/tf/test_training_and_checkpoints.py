"""A GradientTape step trains both sub-models; checkpoints go TF -> PyTorch and PyTorch -> TF unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")

import ragmodels

from .conftest import assert_close, make_pair


def test_gradient_tape_steps_lower_the_loss(rag_config, retriever, questions, answers):
    _, model = make_pair("token", rag_config, retriever)
    optimizer = tf.keras.optimizers.Adam(1e-2)
    variables = [v for v in model.trainable_variables]
    q_weight = model.question_encoder.store.params["question_encoder.bert_model.encoder.layer.0.attention.self.query.weight"]
    start_q, start_shared = q_weight.numpy(), model.generator.shared.numpy()
    losses = []
    for _ in range(4):
        with tf.GradientTape() as tape:
            loss = model(input_ids=questions["input_ids"], attention_mask=questions["attention_mask"], labels=answers,
                         reduce_loss=True, training=True).loss
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    assert not np.allclose(q_weight.numpy(), start_q)  # the question encoder learns through doc_scores
    assert not np.allclose(model.generator.shared.numpy(), start_shared)


def test_tf_checkpoint_loads_in_pytorch_and_back(tmp_path, rag_config, questions, answers, retriever):
    torch_model, tf_model = make_pair("sequence", rag_config)
    tf_model.generator.shared.assign_add(tf.fill(tf_model.generator.shared.shape, 0.01))  # weights only TF has
    tf_model.save_pretrained(tmp_path / "from_tf")
    reloaded = ragmodels.RagSequenceForGeneration.from_pretrained(tmp_path / "from_tf").eval()
    reloaded.set_retriever(retriever)
    tf_model.set_retriever(retriever)
    with torch.no_grad():
        expected = reloaded(input_ids=torch.as_tensor(questions["input_ids"]), labels=torch.as_tensor(answers),
                            attention_mask=torch.as_tensor(questions["attention_mask"]))
    got = tf_model(input_ids=questions["input_ids"], attention_mask=questions["attention_mask"], labels=answers)
    assert_close(got.loss, expected.loss)

    reloaded.save_pretrained(tmp_path / "from_torch")
    back = ragmodels.TFRagSequenceForGeneration.from_pretrained(tmp_path / "from_torch", retriever=retriever)
    again = back(input_ids=questions["input_ids"], attention_mask=questions["attention_mask"], labels=answers)
    assert_close(again.loss, expected.loss)


def test_base_model_and_separate_sub_checkpoints(tmp_path, rag_config, questions, retriever):
    torch_model, _ = make_pair("token", rag_config)
    torch_model.question_encoder.save_pretrained(tmp_path / "qe")
    torch_model.generator.save_pretrained(tmp_path / "gen")
    tf_model = ragmodels.TFRagModel.from_pretrained_question_encoder_generator(
        tmp_path / "qe", tmp_path / "gen", retriever=retriever, n_docs=rag_config.n_docs,
        retrieval_vector_size=rag_config.retrieval_vector_size,
    )
    base = ragmodels.RagModel(config=torch_model.config, question_encoder=torch_model.question_encoder,
                              generator=torch_model.generator, retriever=retriever).eval()
    decoder_ids = np.array([[2, 0, 5, 6]] * 3)
    with torch.no_grad():
        expected = base(input_ids=torch.as_tensor(questions["input_ids"]), decoder_input_ids=torch.as_tensor(decoder_ids))
    got = tf_model(input_ids=questions["input_ids"], decoder_input_ids=decoder_ids)  # DPR masks pads itself
    assert_close(got.logits, expected.logits)
    assert_close(got.doc_scores, expected.doc_scores)
