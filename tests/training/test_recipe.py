import shutil

import pytest
import torch

from ragmodels.data import JsonlFormatError
from ragmodels.training import CheckpointError, TrainConfig, train

from training_fixtures import make_components, qa_file, qa_records, read_log, write_jsonl  # noqa: F401  (fixtures)


def config(qa_file, out, **overrides):
    values = {"train_file": str(qa_file), "output_dir": str(out), "batch_size": 4, "learning_rate": 3e-3,
              "progress_bar": False, "warmup_steps": 1}
    return TrainConfig(**{**values, **overrides})


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["token", "sequence"])
def test_a_few_steps_lower_the_loss(make_components, qa_file, tmp_path, kind):
    parts = make_components(kind)
    repeated = write_jsonl(tmp_path / "train3.jsonl", qa_records() * 3)
    result = train(config(repeated, tmp_path / "run", epochs=2, batch_size=10, learning_rate=1e-2,
                          dev_file=str(qa_file), max_answer_length=8), parts)
    losses = [r["loss"] for r in read_log(tmp_path / "run") if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.85
    assert result.dev_metrics["loss"] < losses[0]
    assert {"exact_match", "f1", "answer_recall@k"} <= set(result.dev_metrics)
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_resume_reproduces_the_uninterrupted_run(make_components, qa_file, tmp_path):
    full = make_components()  # dropout on: resuming must restore the RNG too
    train(config(qa_file, tmp_path / "full", epochs=2), full.model and full)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-3", resumed_dir / "checkpoint-3")  # end of epoch 1 (10 / 4 -> 3 steps)
    resumed = make_components()
    result = train(config(qa_file, resumed_dir, epochs=2, resume_from="latest"), resumed)
    assert result.step == 6
    full_state, resumed_state = state(full.model), state(resumed.model)
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)
    full_losses = [r["loss"] for r in read_log(tmp_path / "full") if r["step"] > 3 and "loss" in r]
    assert full_losses == [r["loss"] for r in read_log(resumed_dir) if "loss" in r]


def test_checkpoint_of_another_model_is_refused_and_kept(make_components, qa_file, tmp_path, bart_tokenizer):
    train(config(qa_file, tmp_path / "run", max_steps=1), make_components())
    checkpoint = tmp_path / "run" / "checkpoint-1"
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    other = make_components(question_encoder="bert")
    with pytest.raises(CheckpointError, match="another model"):
        train(config(qa_file, tmp_path / "run", max_steps=2, resume_from="latest"), other)
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        train(config(qa_file, tmp_path / "run", max_steps=1), make_components())


def test_malformed_training_file_fails_before_writing(make_components, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Capital of Peru?", "answers": ["Lima"]}\n{"question": "Capital of Chile?", "answers": [""]}\n')
    with pytest.raises(JsonlFormatError, match=r"bad.jsonl:2: .*empty"):
        train(config(bad, tmp_path / "run"), make_components())
    assert not (tmp_path / "run").exists()


def test_freezing_the_generator_trains_only_the_question_encoder(make_components, qa_file, tmp_path):
    parts = make_components()
    before = state(parts.model)
    train(config(qa_file, tmp_path / "run", max_steps=2, freeze_generator=True), parts)
    after = state(parts.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("rag.question_encoder.") for k in changed)


@pytest.mark.parametrize("kind", ["token", "sequence"])
def test_copy_from_context_trains_the_restricted_model_and_saves_the_flag(make_components, qa_file, tmp_path, kind):
    import math

    from ragmodels import RagSequenceForGeneration, RagTokenForGeneration

    parts = make_components(kind)
    repeated = write_jsonl(tmp_path / "train3.jsonl", qa_records() * 3)
    result = train(config(repeated, tmp_path / "run", epochs=2, batch_size=10, learning_rate=1e-2, dev_file=str(qa_file),
                          max_answer_length=8, copy_from_context=True), parts)
    losses = [r["loss"] for r in read_log(tmp_path / "run") if "loss" in r]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert "exact_match" in result.dev_metrics
    head = RagTokenForGeneration if kind == "token" else RagSequenceForGeneration
    assert head.from_pretrained(tmp_path / "run" / "model").config.copy_from_context is True
