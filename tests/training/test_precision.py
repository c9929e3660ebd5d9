"""``TrainConfig.precision``: bfloat16 autocast around the training forward, float32 everywhere else."""

import pytest
import torch

from ragmodels.training import TrainConfig, train
from ragmodels.training.precision import autocast

from training_fixtures import make_components, qa_records, read_log, write_jsonl  # noqa: F401  (fixtures)


def test_unknown_precision_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="fp32, bf16.*'fp16'"):
        TrainConfig(train_file="t.jsonl", output_dir=str(tmp_path), precision="fp16")


def test_fp32_changes_nothing_and_bf16_autocasts():
    with autocast("fp32", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.bfloat16


@pytest.mark.parametrize("kind", ["token", "sequence"])
def test_bf16_training_lowers_the_loss_and_keeps_float32_weights(make_components, tmp_path, kind):
    repeated = write_jsonl(tmp_path / "train3.jsonl", qa_records() * 3)
    losses = {}
    for precision in ("fp32", "bf16"):
        parts = make_components(kind, dropout=False)
        out = tmp_path / precision
        train(TrainConfig(train_file=str(repeated), output_dir=str(out), epochs=2, batch_size=10, learning_rate=1e-2,
                          max_answer_length=8, progress_bar=False, dev_generate=False, precision=precision), parts)
        losses[precision] = [r["loss"] for r in read_log(out) if "loss" in r]
        assert all(p.dtype == torch.float32 for p in parts.model.parameters())
    assert losses["bf16"][-1] < losses["bf16"][0] * 0.85
    assert losses["bf16"] != losses["fp32"]  # the forward really ran in bfloat16...
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)  # ...and computes the same loss, roughly
