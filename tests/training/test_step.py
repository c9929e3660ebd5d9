import pytest
import torch

from ragmodels.training import TrainConfig, train
from ragmodels.training.batching import encode_batch
from ragmodels.training.optim import build_optimizer
from ragmodels.training.step import TrainStep, in_backward_blockers, use_optimizer_in_backward

from training_fixtures import make_components, qa_file, qa_records, read_log  # noqa: F401  (fixtures)


def run_steps(parts, in_backward: bool, n_steps: int = 3, fused: bool | None = None, bucket_bytes: int = 64 << 20):
    """``n_steps`` TrainSteps on fixed batches; an extra 2-d parameter gets no gradient at all."""
    model = parts.model
    model.unused = torch.nn.Parameter(torch.ones(2, 3))  # weight decay must still shrink it, as in the plain step
    model.train()
    optimizer = build_optimizer(model, learning_rate=1e-2, weight_decay=0.1, fused=fused)
    trainer = TrainStep(optimizer, max_grad_norm=None, in_backward=in_backward, bucket_bytes=bucket_bytes)
    start = model.config.generator.decoder_start_token_id
    records = qa_records()
    norms = []
    for step in range(n_steps):
        inputs = encode_batch(parts.tokenizer, records[step * 3 : step * 3 + 3], start, 32, 8)
        out = model(**inputs, reduce_loss=False, use_cache=False)
        trainer.backward(out.loss.sum() / 3)
        norms.append(trainer.step())
        assert all(p.grad is None for p in model.parameters())
        assert all(not p._post_accumulate_grad_hooks for p in model.parameters())  # hooks removed
    return model, optimizer, norms


@pytest.mark.parametrize("kind", ["token", "sequence"])
@pytest.mark.parametrize(("fused", "bucket_bytes"), [(True, 0), (True, 4096), (True, 64 << 20), (False, 4096)])
def test_optimizer_in_backward_matches_the_plain_step(make_components, kind, fused, bucket_bytes):
    plain, plain_opt, plain_norms = run_steps(make_components(kind, dropout=False), False, fused=fused)
    hooked, hooked_opt, hooked_norms = run_steps(make_components(kind, dropout=False), True, fused=fused,
                                                 bucket_bytes=bucket_bytes)
    before = make_components(kind, dropout=False).model.state_dict()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(hooked.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(plain.unused, torch.ones(2, 3))  # weight decay on a gradient-less parameter
    changed = [n for n, v in before.items() if not torch.equal(v, plain.state_dict()[n])]
    assert len(changed) > 0.9 * len(before)
    assert hooked_norms == pytest.approx(plain_norms, rel=1e-5)
    plain_state, hooked_state = plain_opt.state_dict(), hooked_opt.state_dict()  # the same checkpoint contents
    assert plain_state["param_groups"] == hooked_state["param_groups"]
    for index, values in plain_state["state"].items():
        for key, value in values.items():
            torch.testing.assert_close(hooked_state["state"][index][key], value, rtol=0, atol=1e-6)


def test_buckets_bound_the_waiting_gradients(make_components, monkeypatch):
    """Parameters are updated a bucket at a time, in the backward: never much more than a bucket of
    gradients waits, and a bucket of N bytes takes fewer AdamW calls than parameters."""
    parts = make_components(dropout=False)
    model = parts.model.train()
    bucket = 16 << 10
    trainer = TrainStep(build_optimizer(model, 1e-3, 0.01), in_backward=True, bucket_bytes=bucket)
    updates, live = [], []
    step_only = trainer._step_only

    def record(params):
        updates.append(sum(p.grad.nbytes for p in params))
        live.append(sum(p.grad.nbytes for p in model.parameters() if p.grad is not None))
        step_only(params)

    monkeypatch.setattr(trainer, "_step_only", record)
    inputs = encode_batch(parts.tokenizer, qa_records()[:2], model.config.generator.decoder_start_token_id, 32, 8)
    trainer.backward(model(**inputs, use_cache=False).loss.sum())
    largest = max(p.nbytes for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())  # every update happened in backward()
    assert 1 < len(updates) < sum(1 for p in model.parameters() if p.requires_grad) / 2
    assert max(live) < bucket + largest
    assert all(size >= bucket for size in updates[:-1])
    trainer.step()


def test_fused_adamw_on_cpu_by_default(make_components):
    optimizer = build_optimizer(make_components().model, 1e-3, 0.01)
    assert all(group["fused"] for group in optimizer.param_groups)


def test_the_rule():
    assert use_optimizer_in_backward(None, 1, 1, None)
    assert use_optimizer_in_backward(None, 1, 1, float("inf"))
    assert not use_optimizer_in_backward(None, 1, 1, 1.0)
    assert not use_optimizer_in_backward(None, 2, 1, None)
    assert not use_optimizer_in_backward(None, 1, 2, None)
    assert not use_optimizer_in_backward(False, 1, 1, None)
    assert len(in_backward_blockers(4, 2, 0.5)) == 3
    with pytest.raises(ValueError, match="max_grad_norm=1.0"):
        use_optimizer_in_backward(True, 1, 1, 1.0)


def test_one_backward_per_step(make_components):
    parts = make_components()
    trainer = TrainStep(build_optimizer(parts.model, 1e-3, 0.0), in_backward=True)
    inputs = encode_batch(parts.tokenizer, qa_records()[:2], parts.model.config.generator.decoder_start_token_id, 32, 8)
    trainer.backward(parts.model(**inputs, use_cache=False).loss.sum())
    with pytest.raises(RuntimeError, match="exactly one backward"):
        trainer.backward(parts.model(**inputs, use_cache=False).loss.sum())


def test_recipe_in_backward_trains_exactly_as_the_plain_recipe(make_components, qa_file, tmp_path):
    models, logs = {}, {}
    for mode in (False, True):
        parts = make_components(dropout=False)
        out = tmp_path / f"run-{mode}"
        train(TrainConfig(train_file=str(qa_file), output_dir=str(out), batch_size=4, learning_rate=3e-3,
                          warmup_steps=1, max_grad_norm=None, optimizer_in_backward=mode, progress_bar=False), parts)
        models[mode], logs[mode] = parts.model.state_dict(), [r for r in read_log(out) if "loss" in r]
    for name, value in models[False].items():
        torch.testing.assert_close(models[True][name], value, rtol=0, atol=1e-6, msg=name)
    assert [r["loss"] for r in logs[True]] == pytest.approx([r["loss"] for r in logs[False]], rel=1e-6)
    assert [r["grad_norm"] for r in logs[True]] == pytest.approx([r["grad_norm"] for r in logs[False]], rel=1e-5)
    assert [r["lr"] for r in logs[True]] == [r["lr"] for r in logs[False]]


def test_recipe_refuses_in_backward_with_clipping(make_components, qa_file, tmp_path):
    config = TrainConfig(train_file=str(qa_file), output_dir=str(tmp_path / "run"), optimizer_in_backward=True,
                         progress_bar=False)
    with pytest.raises(ValueError, match="max_grad_norm"):
        train(config, make_components())
