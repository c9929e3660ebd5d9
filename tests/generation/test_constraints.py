"""Constraint plug-ins: ``choose`` reads each plug-in's generate() option (or the config) and pops it;
``restrict`` applies every chosen constraint (a token survives only if all allow it)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ragmodels.generation import constraints
from ragmodels.generation.context_copy import ContextCopy


def test_choose_follows_the_option_then_the_config_and_pops_the_option():
    off, on = SimpleNamespace(copy_from_context=False), SimpleNamespace(copy_from_context=True)
    options = {"copy_from_context": True, "num_beams": 2}
    assert len(constraints.choose(off, options)) == 1
    assert options == {"num_beams": 2}  # what prepare_generation sees: only transformers' options
    assert constraints.choose(off, {}) == []
    assert len(constraints.choose(on, {})) == 1
    assert constraints.choose(on, {"copy_from_context": False}) == []
    assert constraints.choose(SimpleNamespace(), {}) == []  # a reference config has no such field
    assert constraints.loss_restriction(off) is None and constraints.loss_restriction(on) is not None


class _Only:
    """Allows exactly ``tokens`` everywhere."""

    def __init__(self, tokens):
        self.tokens = tokens

    def allowed(self, input_ids, rows, vocab):
        mask = torch.zeros(input_ids.shape[0], vocab, dtype=torch.bool)
        mask[:, self.tokens] = True
        return mask


def test_restrict_keeps_what_every_constraint_allows():
    logits = torch.zeros(2, 6)
    ids, rows = torch.zeros(2, 1, dtype=torch.long), torch.arange(2)
    out = constraints.restrict(logits, [_Only([1, 2, 3]), _Only([2, 3, 4])], ids, rows)
    assert torch.isfinite(out).tolist() == [[False, False, True, True, False, False]] * 2
    assert constraints.restrict(logits, [], None, rows) is logits  # unconstrained: untouched


def test_context_copy_is_a_passage_constraint():
    copy = ContextCopy(torch.tensor([[5, 6, 7]]), torch.ones(1, 3), eos_token_ids=[2])
    ids, rows = torch.tensor([[0, 5]]), torch.tensor([0])  # decoder start, then copied 5: 6 or stop next
    out = constraints.restrict(torch.zeros(1, 9), [copy], ids, rows)
    assert torch.isfinite(out)[0].nonzero().flatten().tolist() == [2, 6]
