"""One optimizer step (forward, backward, AdamW update) of ragmodels vs transformers' RAG, same weights and batch.

    python benchmarks/training.py [--kind token sequence] [--steps 1] [--contexts dense|retriever]
                                  [--repeat 1] [--threads N] [--context-length L] [--device cpu|cuda]
                                  [--runs reference ours ours-clip ours-trim reference-bf16 ours-bf16]

BART-base-sized random generator, BERT-base-sized random DPR question encoder (~250M parameters),
n_docs=5, batch 4, 32 target tokens; contexts are given directly (no retriever): context_input_ids /
context_attention_mask and doc_scores = <q, d_i> from the question encoder and fixed random passage
embeddings. Dropout off (BART's and BERT's dropout probabilities are 0 in their configs), so both sides
compute the same loss.

Contexts:
  dense       (default, the headline) 128 tokens in every row, no padding.
  retriever   what a retriever hands the model: every row padded to max_combined_length=300
              (padding="max_length", as transformers' RagRetriever and ours do), with 130-180 real tokens
              per row (uniform; a 100-word passage, its title and the question are about that long in
              BART tokens). transformers (and "ours") run the generator over all 300 columns; "ours-trim"
              drops the columns that are padding in every row first (same logits up to float rounding:
              masked keys add nothing).

Each run is its own fresh subprocess that loads the same weights (built once from a seed, in another
subprocess, and saved to a temporary safetensors file), so no run inherits another's memory. Steps are
measured from the very first one (no warm-up): the first step allocates the AdamW moments (2 floats per
parameter) on both sides alike, and that is a real part of a training step's peak. On a GPU the first
step would also carry CUDA's own start (cuBLAS handles, kernel loading: ~0.5 s against a ~0.05 s step),
so there one forward and backward without an update runs first (gradients dropped, no optimizer state).
With ``--steps`` > 1 the later steps (median) are the steady state, and have their own ratios.

Runs:
  reference   transformers.Rag*ForGeneration, plain ``torch.optim.AdamW(model.parameters())`` (its
              defaults), ``loss.backward(); opt.step(); opt.zero_grad()`` — what a transformers user writes.
  ours        ragmodels, the recipe's step (ragmodels.training.step.TrainStep + build_optimizer) as
              ``train`` runs it with ``max_grad_norm=None``: fused AdamW inside the backward, a 64 MB bucket
              of finished gradients per update, each gradient freed once updated; on a CPU the memory a
              step frees is kept for the next (``optim.keep_freed_memory``: no page faults in later steps).
  ours-clip   ragmodels, the recipe's step with its default ``max_grad_norm=1.0``: plain backward, global
              norm clipping, fused AdamW (the in-backward update cannot clip by the global norm).
  ours-trim   "ours" with ``model.rag.trim_context_padding = True`` (off by default): context columns that
              are padding in every row are not run through the generator. Same as "ours" on dense contexts.
  reference-bf16, ours-bf16
              "reference" and "ours" with the forward and loss under ``torch.autocast(dtype=torch.bfloat16)``
              (mixed precision: float32 weights, gradients and AdamW; what ``ragmodels train --precision
              bf16`` does). Compared with each other, not with the float32 runs.
Default runs: reference, ours, ours-clip (dense contexts); reference, ours, ours-trim (retriever contexts).

--repeat N runs every run N times (alternating their order) and reports the median and the range.
--threads 1 gives the steadiest CPU-time ratios on a busy machine (no thread waits on a descheduled other).

Memory (CPU): peak RSS of the step (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus the RSS once
weights and batch are loaded. The high-water mark is reset after loading (``/proc/self/clear_refs``) so
loading's own transient peak cannot hide the step's; where that reset is not allowed, a step peak not
above the loading peak is reported as such. On GPU: ``max_memory_allocated`` above the allocation before
the step. Time: wall clock of each step (the first; with ``--steps`` > 1 also the median of the others),
and the process's CPU time (user + system) of each step, which other jobs on the machine disturb less;
for later steps also the median minor page faults and system time per step (ru_minflt, ru_stime).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_DOCS, BATCH, TARGET_LEN, QUESTION_LEN = 5, 4, 32, 16
RUNS = ("reference", "ours", "ours-clip", "ours-trim", "reference-bf16", "ours-bf16")
DEFAULT_RUNS = {"dense": ("reference", "ours", "ours-clip"), "retriever": ("reference", "ours", "ours-trim")}
CONTEXTS = {"dense": 128, "retriever": 300}  # default context length of each kind
REAL_LENGTHS = (130, 180)  # tokens per row before padding, "retriever" contexts


def build(impl: str, kind: str):
    """A RAG head of ``kind`` from ``impl`` ("ours" or "reference") over base-sized random sub-models."""
    from transformers import BartConfig, BartForConditionalGeneration, DPRConfig, DPRQuestionEncoder

    if impl == "reference":
        import transformers as lib
    else:
        import ragmodels as lib
    head = {"token": lib.RagTokenForGeneration, "sequence": lib.RagSequenceForGeneration}[kind]
    qe = DPRQuestionEncoder(DPRConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))  # BERT-base
    gen = BartForConditionalGeneration(BartConfig(  # BART-base sized: 6+6 layers, 768, vocab 50265 (the
        d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,  # defaults are BART-large)
        decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    ))
    config = lib.RagConfig.from_question_encoder_generator_configs(qe.config, gen.config, n_docs=N_DOCS)
    return head(config=config, question_encoder=qe, generator=gen)


def make_batch(context_length: int, contexts: str = "dense", seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(4, 50265, (BATCH, TARGET_LEN), generator=g)
    labels[:, 0] = 2  # decoder start
    context_ids = torch.randint(4, 50265, (BATCH * N_DOCS, context_length), generator=g)
    mask = torch.ones(BATCH * N_DOCS, context_length, dtype=torch.long)
    if contexts == "retriever":  # right padding (pad id 1) after 130-180 real tokens
        low, high = REAL_LENGTHS
        real = torch.randint(low, min(high, context_length) + 1, (BATCH * N_DOCS,), generator=g)
        mask = (torch.arange(context_length) < real[:, None]).long()
        context_ids = context_ids.masked_fill(mask.eq(0), 1)
    return {
        "question_ids": torch.randint(1000, 30522, (BATCH, QUESTION_LEN), generator=g),
        "context_input_ids": context_ids,
        "context_attention_mask": mask,
        "doc_embeds": torch.randn(BATCH, N_DOCS, 768, generator=g) * 0.05,
        "labels": labels,
    }


def baseline(run: str) -> str:
    """The reference run that ``run`` is compared with (same precision)."""
    return "reference-bf16" if run.endswith("-bf16") else "reference"


def loss_of(model, batch, bf16: bool = False):
    """Mean negative marginal log-likelihood per question, as the recipe computes it (under bf16 autocast)."""
    import torch

    device = batch["labels"].device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        q = model.question_encoder(batch["question_ids"])[0]  # (B, 768): DPR's pooled output
        doc_scores = torch.bmm(q.unsqueeze(1), batch["doc_embeds"].transpose(1, 2)).squeeze(1)  # (B, k)
        out = model(context_input_ids=batch["context_input_ids"], context_attention_mask=batch["context_attention_mask"],
                    doc_scores=doc_scores, labels=batch["labels"], reduce_loss=False, n_docs=N_DOCS, use_cache=False)
    return out.loss.float().sum() / BATCH


def make_stepper(run: str, model):
    """A function running one training step (forward, backward, update) and returning the loss."""
    import torch

    bf16 = run.endswith("-bf16")
    if baseline(run) == run:
        optimizer = torch.optim.AdamW(model.parameters())

        def step(batch):
            loss = loss_of(model, batch, bf16)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.item()

        return step
    from ragmodels.training.optim import build_optimizer
    from ragmodels.training.step import TrainStep, use_optimizer_in_backward

    model.rag.trim_context_padding = run == "ours-trim"
    max_grad_norm = 1.0 if run == "ours-clip" else None
    trainer = TrainStep(build_optimizer(model, learning_rate=1e-3, weight_decay=0.01), max_grad_norm,
                        in_backward=use_optimizer_in_backward(None, 1, 1, max_grad_norm))

    def step(batch):
        loss = loss_of(model, batch, bf16)
        trainer.backward(loss)
        trainer.step()
        return loss.item()

    return step


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("VmRSS not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
        return True
    except OSError:
        return False


def _usage() -> tuple[float, float, int]:
    """Process CPU seconds (user + system), system seconds, and minor page faults so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime, usage.ru_minflt


def measure(run: str, kind: str, weights: str, context_length: int, device: str, steps: int,
            contexts: str = "dense") -> dict:
    """Child process: load the shared weights and the batch, then time ``steps`` steps from the first."""
    import gc
    import resource

    import torch
    from safetensors.torch import load_model

    torch.manual_seed(0)
    model = build("reference" if run.startswith("reference") else "ours", kind)
    load_model(model, weights, strict=True)
    model.to(device).train()
    for module in model.modules():  # deterministic comparison: no dropout (also set to 0 in the configs)
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = {k: v.to(device) for k, v in make_batch(context_length, contexts).items()}
    step = make_stepper(run, model)
    cuda = device.startswith("cuda")
    if cuda:  # CUDA's own start-up out of the first step: a forward and backward, no update, grads dropped
        loss_of(model, batch, run.endswith("-bf16")).backward()
        model.zero_grad(set_to_none=True)
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        reset = _reset_peak()
        base = _rss_kib() * 1024
    seconds, cpu_seconds, system_seconds, faults, losses, peaks = [], [], [], [], [], []
    for index in range(steps):
        start, usage_start = time.perf_counter(), _usage()
        losses.append(step(batch))
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        cpu, system, faulted = (after - before for after, before in zip(_usage(), usage_start))
        cpu_seconds.append(cpu)
        system_seconds.append(system)
        faults.append(faulted)
        if cuda:
            peaks.append(torch.cuda.max_memory_allocated() - base)
            torch.cuda.reset_peak_memory_stats()
        else:
            peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
            if index == 0:
                hidden = not reset and peaks[0] + base <= load_peak
            reset = _reset_peak()
    result = {"run": run, "kind": kind, "seconds": seconds, "cpu_seconds": cpu_seconds,
              "system_seconds": system_seconds, "page_faults": faults, "loss": losses[0],
              "base_mib": base / 2**20, "threads": torch.get_num_threads(),
              "peak_mib": peaks[0] / 2**20, "params": sum(p.numel() for p in model.parameters())}
    if len(peaks) > 1:  # steady state: AdamW moments already allocated, peaks above the same base
        result["later_peak_mib"] = max(peaks[1:]) / 2**20
    if not cuda:
        result["hidden_by_loading"] = hidden
    return result


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"run {' '.join(args[:3])} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", nargs="+", default=["token", "sequence"], choices=["token", "sequence"])
    parser.add_argument("--runs", nargs="+", default=None, choices=RUNS, help="default: see above")
    parser.add_argument("--steps", type=int, default=1, help="steps per run, measured from the first (default 1)")
    parser.add_argument("--contexts", default="dense", choices=sorted(CONTEXTS),
                        help="dense: 128 real tokens per row (default); retriever: padded to 300 (see above)")
    parser.add_argument("--context-length", type=int, default=None, help="default: 128 dense, 300 retriever")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each kind (median and range reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in each run (default: torch's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--child", nargs=3, metavar=("RUN", "KIND", "WEIGHTS"), help=argparse.SUPPRESS)
    parser.add_argument("--save-weights", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.context_length is None:
        args.context_length = CONTEXTS[args.contexts]
    if args.runs is None:
        args.runs = list(DEFAULT_RUNS[args.contexts])
    if args.save_weights:  # own process, so the parent never holds a model (a child's ru_maxrss starts there)
        import torch
        from safetensors.torch import save_model

        torch.manual_seed(0)
        save_model(build("ours", args.save_weights[0]), args.save_weights[1])
        print("{}")
        return
    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(measure(*args.child, args.context_length, args.device, args.steps, args.contexts)))
        return
    if args.device is None:
        args.device = "cuda" if _child_cuda() else "cpu"
    command = "python benchmarks/training.py " + " ".join(sys.argv[1:])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kind:
            weights = str(Path(tmp) / f"{kind}.safetensors")
            _child("--save-weights", kind, weights)
            runs: dict[str, list[dict]] = {run: [] for run in args.runs}
            for repeat in range(args.repeat):  # alternate the order, so drifting load hits every run alike
                for run in (args.runs if repeat % 2 == 0 else args.runs[::-1]):
                    runs[run].append(_child("--child", run, kind, weights, "--context-length", str(args.context_length),
                                            "--device", args.device, "--steps", str(args.steps),
                                            "--contexts", args.contexts,
                                            *(["--threads", str(args.threads)] if args.threads else [])))
            os.remove(weights)
            first = runs[args.runs[0]][0]
            print(f"RAG-{kind}: one AdamW step from a fresh process ({args.device}, {first['threads']} threads, "
                  f"{first['params'] / 1e6:.0f}M parameters, batch {BATCH}, n_docs {N_DOCS}, {args.contexts} contexts "
                  f"of {args.context_length}, target {TARGET_LEN}):")
            for run, results in runs.items():
                ref = runs.get(baseline(run))
                for index, r in enumerate(results):
                    later = ""
                    if len(r["seconds"]) > 1:
                        later = (f" (later steps: median {_later(r):.3f} s, "
                                 f"{statistics.median(r['page_faults'][1:]):.0f} page faults and "
                                 f"{statistics.median(r['system_seconds'][1:]):.2f} s system time per step, "
                                 f"peak +{r['later_peak_mib']:.0f} MiB)")
                    note = " (step peak hidden by loading's peak!)" if r.get("hidden_by_loading") else ""
                    ratios = ""
                    if ref is not None and run != baseline(run):
                        other = ref[index]
                        ratios = (f"  -> {other['seconds'][0] / r['seconds'][0]:.2f}x faster "
                                  f"({other['cpu_seconds'][0] / r['cpu_seconds'][0]:.2f}x in CPU time), "
                                  f"{r['peak_mib'] / other['peak_mib']:.2f}x the peak, "
                                  f"|loss diff| {abs(r['loss'] - other['loss']):.1e}")
                        if later:
                            ratios += f", later steps {_later(other) / _later(r):.2f}x faster"
                    print(f"  {run:>14}: first step {r['seconds'][0]:.3f} s ({r['cpu_seconds'][0]:.2f} s CPU), peak "
                          f"+{r['peak_mib']:.0f} MiB above {r['base_mib']:.0f} MiB loaded{note}, loss {r['loss']:.4f}"
                          f"{ratios}{later}")
                rows.append((kind, run, results))
    if any(baseline(run) in args.runs for run in args.runs if run != baseline(run)):
        _print_table(rows, command)


def _later(result: dict) -> float:
    """Median time of the steps after the first (the steady state)."""
    return statistics.median(result["seconds"][1:])


def _spread(values: list[float], fmt: str) -> str:
    """The median, and the range when there are several values: "1.23x (1.20-1.25x)"."""
    text = fmt.format(statistics.median(values))
    return text if len(values) == 1 else f"{text} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _print_table(rows, command: str) -> None:
    results_of = {(kind, run): results for kind, run, results in rows}
    print(f"\nREADME table (`{command}`; targets: >= 1.2x faster, <= 0.7x the peak; median of the repeats, "
          "ratios from runs paired in order against the reference of the same precision, range in brackets):\n")
    later = all("later_peak_mib" in r for _, _, results in rows for r in results)
    extra = " later steps | speed vs reference | later steps' peak | vs reference |" if later else ""
    print("| head | run | first step | CPU time | peak memory | speed vs reference | CPU time vs reference | "
          "memory vs reference |" + extra)
    print("|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if later else ""))
    for kind, run, results in rows:
        ref = results_of.get((kind, baseline(run)))
        is_ref = run == baseline(run) or ref is None
        pairs = list(zip(ref, results)) if ref is not None else []
        cells = [f"RAG-{kind}", run, _spread([r["seconds"][0] for r in results], "{:.3f} s"),
                 _spread([r["cpu_seconds"][0] for r in results], "{:.2f} s"),
                 _spread([r["peak_mib"] for r in results], "+{:.0f} MiB")]
        if is_ref:
            cells += ["—", "—", "—"]
        else:
            cells += [_spread([a["seconds"][0] / b["seconds"][0] for a, b in pairs], "{:.2f}x"),
                      _spread([a["cpu_seconds"][0] / b["cpu_seconds"][0] for a, b in pairs], "{:.2f}x"),
                      _spread([b["peak_mib"] / a["peak_mib"] for a, b in pairs], "{:.2f}x")]
        if later:
            cells.append(_spread([_later(r) for r in results], "{:.3f} s"))
            cells.append("—" if is_ref else _spread([_later(a) / _later(b) for a, b in pairs], "{:.2f}x"))
            cells.append(_spread([r["later_peak_mib"] for r in results], "+{:.0f} MiB"))
            cells.append("—" if is_ref else
                         _spread([b["later_peak_mib"] / a["later_peak_mib"] for a, b in pairs], "{:.2f}x"))
        print("| " + " | ".join(cells) + " |")


def _child_cuda() -> bool:
    code = "import torch; print(int(torch.cuda.is_available()))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "1"


if __name__ == "__main__":
    main()
