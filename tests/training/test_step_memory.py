"""The first step gives free heap memory back while AdamW creates its moments; later steps do not, and
keep what they free for the next step."""

import subprocess
import sys

import pytest
import torch

from ragmodels.training import step as step_module
from ragmodels.training.batching import encode_batch
from ragmodels.training.optim import build_optimizer, release_free_memory
from ragmodels.training.step import TrainStep

from training_fixtures import make_components, qa_records  # noqa: F401  (fixtures)


_RELEASE = """
import sys, torch
from ragmodels.training.optim import keep_freed_memory, release_free_memory
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
assert keep_freed_memory()  # freed blocks stay in the heap: only an explicit release gives them back
block = torch.empty(50_000_000).fill_(1.0)  # 200 MB, touched
del block
held = resident_mb()
assert release_free_memory()
print(held - resident_mb())
"""


@pytest.mark.skipif(not release_free_memory(), reason="needs glibc")
def test_release_free_memory_gives_freed_heap_memory_back():
    """A freed 200 MB block that the heap kept is resident until release_free_memory trims it. (A subprocess:
    keep_freed_memory is process-wide.)"""
    released_mb = float(subprocess.run([sys.executable, "-c", _RELEASE], check=True, capture_output=True,
                                       text=True).stdout)
    assert released_mb > 150


@pytest.mark.parametrize("in_backward", [True, False])
@pytest.mark.parametrize("release_every", [1, None])
def test_released_on_the_first_step_only(make_components, monkeypatch, in_backward, release_every):
    calls = []
    monkeypatch.setattr(step_module, "release_free_memory", lambda: calls.append(1) or True)
    parts = make_components(dropout=False)
    model = parts.model.train()
    trainer = TrainStep(build_optimizer(model, 1e-3, 0.01), in_backward=in_backward, release_every=release_every,
                        bucket_bytes=0)  # one parameter per update: one release per parameter's new state
    start = model.config.generator.decoder_start_token_id
    per_step = []
    for index in range(2):
        inputs = encode_batch(parts.tokenizer, qa_records()[index * 2 : index * 2 + 2], start, 32, 8)
        trainer.backward(model(**inputs, use_cache=False).loss.sum())
        trainer.step()
        per_step.append(len(calls))
    n_params = sum(1 for p in model.parameters() if p.requires_grad)
    if release_every is None:
        assert per_step == [0, 0]
    elif in_backward:  # after every parameter's new state (1 byte apart), nothing on the second step
        assert per_step[0] >= 0.9 * n_params and per_step[1] == per_step[0]
    else:  # once, before the first update
        assert per_step == [1, 1]


def test_release_does_not_change_the_update(make_components):
    """Same weights after two steps with and without releasing memory."""
    weights = []
    for release_every in (1, None):
        parts = make_components(dropout=False)
        model = parts.model.train()
        trainer = TrainStep(build_optimizer(model, 1e-2, 0.01), in_backward=True, release_every=release_every)
        start = model.config.generator.decoder_start_token_id
        for index in range(2):
            inputs = encode_batch(parts.tokenizer, qa_records()[index * 2 : index * 2 + 2], start, 32, 8)
            trainer.backward(model(**inputs, use_cache=False).loss.sum())
            trainer.step()
        weights.append(model.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_no_release_without_parameters_on_the_cpu():
    """Parameters elsewhere (a GPU; "meta" here) keep their optimizer state outside the C heap."""
    elsewhere = torch.nn.Linear(3, 2, device="meta")
    assert TrainStep(torch.optim.AdamW(elsewhere.parameters()), release_every=1).release_every is None
    assert TrainStep(torch.optim.AdamW(torch.nn.Linear(3, 2).parameters()), release_every=1).release_every == 1


_REALLOCATE = """
import resource, sys, torch
from ragmodels.training.optim import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(1)
faults = []
for _ in range(11):  # a 200 MB activation, freed and allocated again as in every training step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(50_000_000).fill_(1.0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults[3:])[4])  # the median page faults of an allocation once the heap has settled
"""


@pytest.mark.skipif(not release_free_memory(), reason="needs glibc")
def test_kept_memory_is_reused_without_page_faults():
    """By default glibc unmaps a freed 200 MB block and the next one page-faults in all its 49k pages; after
    keep_freed_memory the same pages are reused once the heap has settled. (A subprocess: the setting is
    process-wide.)"""
    faults = {mode: int(subprocess.run([sys.executable, "-c", _REALLOCATE, mode], check=True, capture_output=True,
                                       text=True).stdout) for mode in ("default", "keep")}
    # medians, relative: now and then an allocation gets fresh pages even with the heap kept (1-2 of 8 in 12
    # runs here: glibc extends the heap by a new mapping when the address space above it is taken), and with
    # transparent huge pages a fault maps 2 MB instead of 4 kB, so absolute counts vary ~100x across kernels.
    assert faults["default"] > 0
    assert faults["keep"] * 10 < faults["default"]


def test_train_step_keeps_memory_only_for_cpu_parameters(monkeypatch):
    calls = []
    monkeypatch.setattr(step_module, "keep_freed_memory", lambda: calls.append(1) or True)
    TrainStep(torch.optim.AdamW(torch.nn.Linear(3, 2, device="meta").parameters()))
    TrainStep(torch.optim.AdamW(torch.nn.Linear(3, 2).parameters()), keep_memory=False)
    assert calls == []
    TrainStep(torch.optim.AdamW(torch.nn.Linear(3, 2).parameters()))
    assert calls == [1]
