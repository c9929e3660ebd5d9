"""One optimizer step (forward, backward, AdamW update) of ragmodels vs transformers' RAG, same weights and batch.

    python benchmarks/training.py [--kind token sequence] [--context-length 128] [--device cpu]

BART-base-sized random generator, BERT-base-sized random DPR question encoder, n_docs=5, batch 4,
32 target tokens; contexts are given directly (no retriever): context_input_ids / context_attention_mask
and doc_scores = <q, d_i> from the question encoder and fixed random passage embeddings. Each
implementation runs in its own subprocess, one measured step after one warm-up step. Memory: on CPU the
peak RSS above the RSS before the step (/proc VmHWM after a reset via clear_refs), on GPU
max_memory_allocated above the allocation before the step. Helpers are local (benchmarks/_common.py
did not exist when this was written).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

N_DOCS, BATCH, TARGET_LEN, QUESTION_LEN = 5, 4, 32, 16


def build(impl: str, kind: str):
    """A RAG head of ``kind`` from ``impl`` ("ours" or "reference") over base-sized random sub-models."""
    from transformers import BartConfig, BartForConditionalGeneration, DPRConfig, DPRQuestionEncoder

    if impl == "ours":
        import ragmodels as lib
    else:
        import transformers as lib
    head = {"token": lib.RagTokenForGeneration, "sequence": lib.RagSequenceForGeneration}[kind]
    qe = DPRQuestionEncoder(DPRConfig())  # BERT-base: 12 layers, 768
    gen = BartForConditionalGeneration(BartConfig())  # BART-base sized: 6+6 layers, 768, vocab 50265
    config = lib.RagConfig.from_question_encoder_generator_configs(qe.config, gen.config, n_docs=N_DOCS)
    return head(config=config, question_encoder=qe, generator=gen)


def make_batch(context_length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(4, 50265, (BATCH, TARGET_LEN), generator=g)
    labels[:, 0] = 2  # decoder start
    return {
        "question_ids": torch.randint(1000, 30522, (BATCH, QUESTION_LEN), generator=g),
        "context_input_ids": torch.randint(4, 50265, (BATCH * N_DOCS, context_length), generator=g),
        "context_attention_mask": torch.ones(BATCH * N_DOCS, context_length, dtype=torch.long),
        "doc_embeds": torch.randn(BATCH, N_DOCS, 768, generator=g) * 0.05,
        "labels": labels,
    }


def step(model, optimizer, batch) -> float:
    q = model.question_encoder(batch["question_ids"])[0]  # (B, 768): DPR's pooled output
    doc_scores = torch.bmm(q.unsqueeze(1), batch["doc_embeds"].transpose(1, 2)).squeeze(1)  # (B, k)
    out = model(context_input_ids=batch["context_input_ids"], context_attention_mask=batch["context_attention_mask"],
                doc_scores=doc_scores, labels=batch["labels"], reduce_loss=True, n_docs=N_DOCS, use_cache=False)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return out.loss.item()


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(impl: str, kind: str, weights: str, context_length: int, device: str) -> dict:
    """Child process: load the shared weights, warm up one step, measure one step."""
    from safetensors.torch import load_model

    torch.manual_seed(0)
    model = build(impl, kind)
    load_model(model, weights, strict=True)
    model.to(device).train()
    for module in model.modules():  # deterministic comparison: no dropout
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch = {k: v.to(device) for k, v in make_batch(context_length).items()}
    step(model, optimizer, batch)  # warm-up (allocates AdamW state)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
        base = _kib("VmRSS") * 1024
    start = time.perf_counter()
    loss = step(model, optimizer, batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _kib("VmHWM") * 1024
    return {"impl": impl, "kind": kind, "seconds": time.perf_counter() - start, "peak_delta_mib": (peak - base) / 2**20,
            "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", nargs="+", default=["token", "sequence"], choices=["token", "sequence"])
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "KIND", "WEIGHTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.context_length, args.device)))
        return
    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kind:
            torch.manual_seed(0)
            weights = str(Path(tmp) / f"{kind}.safetensors")
            save_model(build("ours", kind), weights)
            runs = {}
            for impl in ("reference", "ours"):
                cmd = [sys.executable, __file__, "--child", impl, kind, weights,
                       "--context-length", str(args.context_length), "--device", args.device]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                runs[impl] = json.loads(out.strip().splitlines()[-1])
            ours, ref = runs["ours"], runs["reference"]
            print(f"RAG-{kind} one AdamW step ({args.device}, batch {BATCH}, n_docs {N_DOCS}, "
                  f"context {args.context_length}, target {TARGET_LEN}):")
            for r in (ref, ours):
                print(f"  {r['impl']:>9}: {r['seconds']:.3f} s, peak +{r['peak_delta_mib']:.0f} MiB, loss {r['loss']:.4f}")
            print(f"  speed-up {ref['seconds'] / ours['seconds']:.2f}x (target >= 1.2x), "
                  f"memory {ours['peak_delta_mib'] / ref['peak_delta_mib']:.2f}x (target <= 0.7x), "
                  f"|loss diff| {abs(ours['loss'] - ref['loss']):.2e}")


if __name__ == "__main__":
    main()
