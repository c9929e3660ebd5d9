"""The recipe's optimizer step: backward, gradient sum across processes, clipping, AdamW update.

Two ways to run it, with the same result (the same weights after any number of steps):

* plain: every micro-batch's loss is back-propagated into ``.grad``; then gradients are summed across
  processes, clipped by their global norm, AdamW steps once over all parameters and the gradients are
  dropped (``set_to_none``). At the update, the gradients of the whole model (one float per weight) sit
  beside the weights and both AdamW moments.
* optimizer in backward (torchtune's trick): parameters are updated by AdamW as soon as their gradients
  are complete, from a ``register_post_accumulate_grad_hook``, and their gradients are freed at once; so
  the gradients of the whole model never coexist, and there is no separate update pass. A parameter's
  AccumulateGrad runs after every autograd node that saved it, so updating it in place then (or later)
  does not change any other gradient. Completed parameters are queued and updated together once their
  gradients reach ``bucket_bytes`` (and the rest after the backward): one fused AdamW call per bucket
  instead of one per parameter, which on a GPU is the difference between a step as fast as the plain
  one and one twice as slow (~450 Python-level ``optimizer.step`` calls for BART-base + BERT-base), while
  at most a bucket of gradients waits. Parameters that got no gradient are stepped after the backward
  with a zero gradient, exactly as the plain step treats them (weight decay and moment decay still apply).

The rule (``in_backward_blockers``): the update can run in the backward only when one backward makes
the whole step's gradient, and nothing needs all gradients at once, i.e.
  - one micro-batch per step (``grad_accum_steps == 1``): accumulation needs every gradient kept;
  - one process (``world_size == 1``): the cross-process sum happens after the backward;
  - no clipping by global norm (``max_grad_norm`` None): the norm is known only after the backward.
``TrainConfig.optimizer_in_backward`` None (the default) picks it whenever the rule allows, True
requires it (an error names what blocks it), False never uses it. The logged ``grad_norm`` is the
global norm of the unclipped gradients either way (computed on the fly in the hooks).

The one AdamW instance (``build_optimizer``) holds all state and hyper-parameters in both modes, so the
LR scheduler and checkpoints (``optimizer.state_dict()``) are the same whichever mode ran.

Memory of the first step: AdamW creates its moments (two floats per weight) at its first update. With
the optimizer in the backward they are created while the backward frees activations, but the freed
memory stays resident in the C allocator's heap and the moments do not all fit in its holes, so the
resident set would climb to activations plus moments. On the first step, after every
``release_every`` bytes of new optimizer state, the free heap memory is returned to the system
(``optim.release_free_memory``); in the plain mode once, before the update. On BART-base + BERT-base
(benchmarks/training.py) this lowers the first step's peak RSS by ~25% (and later steps' by ~5%, the
heap being less fragmented) for ~1% of the first step's time. Later steps create no state and release
nothing.

Memory of later steps (CPU): ``keep_freed_memory`` (on by default where a parameter is on the CPU) lets
glibc keep the blocks a step frees for the next one instead of unmapping them and page-faulting them in
again; on BART-base + BERT-base that removes ~1-2 s of system time from a ~13 s one-thread step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from . import distributed
from .optim import keep_freed_memory, release_free_memory


def in_backward_blockers(grad_accum_steps: int, world_size: int, max_grad_norm: float | None) -> list[str]:
    """Why the optimizer cannot run in the backward for these settings (empty: it can)."""
    blockers = []
    if grad_accum_steps != 1:
        blockers.append(f"grad_accum_steps={grad_accum_steps} (gradients must accumulate over micro-batches)")
    if world_size != 1:
        blockers.append(f"world_size={world_size} (gradients are summed across processes after the backward)")
    if max_grad_norm is not None and math.isfinite(max_grad_norm):
        blockers.append(f"max_grad_norm={max_grad_norm} (clipping needs the global norm of all gradients)")
    return blockers


def use_optimizer_in_backward(
    requested: bool | None, grad_accum_steps: int, world_size: int, max_grad_norm: float | None
) -> bool:
    """Apply the rule above: None -> whenever possible; True -> required (ValueError if blocked); False -> off."""
    blockers = in_backward_blockers(grad_accum_steps, world_size, max_grad_norm)
    if requested and blockers:
        raise ValueError(
            "optimizer_in_backward=True needs one backward per step and no global-norm clipping, but: "
            + "; ".join(blockers) + ". Set max_grad_norm to None, grad_accum_steps to 1 and run one process, "
            "or leave optimizer_in_backward unset."
        )
    return not blockers if requested is None else bool(requested)


class TrainStep:
    """``backward(loss)`` per micro-batch, then ``step()`` once: the update (see module doc).

    ``step()`` returns the global gradient norm (before clipping) and leaves every gradient None.
    ``release_every``: bytes of new optimizer state between releases of free memory on the first step
    (see module doc); None never releases, nor does a model with no parameter on the CPU (a GPU's memory
    is not the C heap's). ``bucket_bytes``: gradient bytes updated together with the optimizer in the
    backward (0: each parameter alone). ``keep_memory``: call ``optim.keep_freed_memory`` (process-wide
    allocator setting) when a parameter is on the CPU.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float | None = None,
        in_backward: bool = False,
        env: distributed.DistEnv | None = None,
        release_every: int | None = 256 << 20,
        bucket_bytes: int = 64 << 20,
        keep_memory: bool = True,
    ):
        self.optimizer, self.in_backward, self.env = optimizer, in_backward, env
        self.max_grad_norm = max_grad_norm
        self.params: list[torch.nn.Parameter] = [p for g in optimizer.param_groups for p in g["params"]]
        on_cpu = any(p.device.type == "cpu" for p in self.params)
        self.release_every, self.bucket_bytes = release_every if on_cpu else None, bucket_bytes
        if keep_memory and on_cpu:
            keep_freed_memory()
        if in_backward:
            use_optimizer_in_backward(True, 1, env.world_size if env is not None else 1, max_grad_norm)
        self._group_of: dict[int, dict] = {}
        self._norms: list[torch.Tensor] = []
        self._updated: set[torch.nn.Parameter] = set()
        self._queue: list[torch.nn.Parameter] = []
        self._queued_bytes = 0
        self._backwards = 0
        self._new_state_bytes = 0

    def backward(self, loss: torch.Tensor) -> None:
        if not self.in_backward:
            loss.backward()
            return
        if self._backwards:
            raise RuntimeError("With the optimizer in the backward, each step takes exactly one backward.")
        self._backwards += 1
        self._group_of = {id(p): group for group in self.optimizer.param_groups for p in group["params"]}
        handles = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in self.params]
        try:
            loss.backward()
        finally:
            for handle in handles:
                handle.remove()
        self._update_queued()

    def step(self) -> float:
        """Finish the step: update every parameter not yet updated; return the global gradient norm."""
        if self.in_backward:
            missed = [p for p in self.params if p not in self._updated]
            self._group_of = {id(p): group for group in self.optimizer.param_groups for p in group["params"]}
            for p in missed:  # no gradient reached it: the plain step would use zeros
                p.grad = torch.zeros_like(p)
            self._queue = missed
            self._update_queued()
            norms, self._norms, self._updated, self._backwards = self._norms, [], set(), 0
            return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0
        distributed.sum_gradients(self.params, self.env or _SINGLE)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm or math.inf).item()
        if self.release_every is not None and any(not self.optimizer.state.get(p) for p in self.params):
            release_free_memory()  # first step: the activations are gone, the moments are about to come
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _grad_ready(self, p: torch.nn.Parameter) -> None:
        """Post-accumulate-grad hook: queue ``p``; update the queue once its gradients fill a bucket."""
        self._queue.append(p)
        self._queued_bytes += p.grad.nbytes
        if self._queued_bytes >= self.bucket_bytes:
            self._update_queued()

    def _update_queued(self) -> None:
        """AdamW on the queued parameters (their groups' state and current lr), then free their gradients."""
        params, self._queue, self._queued_bytes = self._queue, [], 0
        if not params:
            return
        self._norms.append(torch.nn.utils.get_total_norm([p.grad for p in params]))
        new_state = [p for p in params if self.release_every is not None and not self.optimizer.state.get(p)]
        self._step_only(params)
        self._updated.update(params)
        if new_state:
            self._new_state_bytes += sum(
                t.nbytes for p in new_state for t in self.optimizer.state[p].values() if torch.is_tensor(t))
            if self._new_state_bytes >= self.release_every:
                release_free_memory()
                self._new_state_bytes = 0

    def _step_only(self, params: Sequence[torch.nn.Parameter]) -> None:
        """``optimizer.step()`` restricted to ``params`` (their groups' hyper-parameters), grads then freed."""
        by_group: dict[int, tuple[dict, list[torch.nn.Parameter]]] = {}
        for p in params:
            group = self._group_of[id(p)]
            by_group.setdefault(id(group), (group, []))[1].append(p)
        saved = self.optimizer.param_groups
        self.optimizer.param_groups = [{**group, "params": chosen} for group, chosen in by_group.values()]
        try:
            self.optimizer.step()
        finally:
            self.optimizer.param_groups = saved
        for p in params:
            p.grad = None


_SINGLE = distributed.DistEnv(rank=0, world_size=1, device=torch.device("cpu"))
