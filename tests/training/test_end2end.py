import numpy as np
import pytest
import torch
from transformers import DPRContextEncoder

from ragmodels.training import TrainConfig, train
from ragmodels.training.components import kb_passages
from ragmodels.training.end2end import encode_passages

from conftest import PASSAGES, tiny_dpr_config
from training_fixtures import make_components, qa_file  # noqa: F401  (fixtures)


def ctx_parts(question_tokenizer):
    torch.manual_seed(1)
    encoder = DPRContextEncoder(tiny_dpr_config())
    embeddings = encode_passages(encoder, question_tokenizer, [t for t, _ in PASSAGES], [x for _, x in PASSAGES], None)
    return encoder.train(), embeddings


def test_end_to_end_reindexes_while_training(make_components, qa_file, tmp_path, question_tokenizer):
    encoder, embeddings = ctx_parts(question_tokenizer)
    parts = make_components(embeddings=embeddings)
    parts.ctx_encoder, parts.ctx_tokenizer = encoder, question_tokenizer
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    result = train(TrainConfig(train_file=str(qa_file), output_dir=str(tmp_path / "run"), batch_size=4, epochs=2,
                               learning_rate=1e-2, reindex_every=2, reindex_lag=1, progress_bar=False), parts)
    assert result.reindexes == 2  # encodings started at steps 2 and 4, live at steps 3 and 5
    assert np.isfinite(result.loss)
    assert any(not torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    _, live = kb_passages(parts.retriever)
    assert not np.allclose(live, embeddings)  # the index now holds re-encoded passages
    assert (tmp_path / "run" / "model" / "ctx_encoder" / "model.safetensors").is_file()


def test_knowledge_base_of_another_encoder_is_refused(make_components, qa_file, tmp_path, question_tokenizer):
    encoder, _ = ctx_parts(question_tokenizer)
    parts = make_components()  # random passage embeddings, not this encoder's
    parts.ctx_encoder, parts.ctx_tokenizer = encoder, question_tokenizer
    with pytest.raises(ValueError, match="another context encoder"):
        train(TrainConfig(train_file=str(qa_file), output_dir=str(tmp_path / "run"), progress_bar=False), parts)
    assert not (tmp_path / "run").exists()
