"""Cold and warm ``ragmodels ask`` timings, with the import floor they stand on (min / median of N runs).

    python benchmarks/ask.py [--runs 5] [--question "What is the capital of Mongolia?"]

Each measurement is a fresh process; the kinds are interleaved run by run so that a busy machine slows them
alike. Wall seconds and CPU seconds (user + sys of the process and its children) are reported for:
  python          ``python -c pass``
  torch           ``import torch``
  floor           ``import torch`` + the transformers modeling of the default's generator (BART or T5) and
                  question encoder (BERT): what any answer needs
  (torch and floor end with ``gc.freeze()``, as ``ragmodels ask`` does: see "floor, plain exit")
  cold ask        ``ragmodels ask --no-worker QUESTION`` (everything in-process)
  warm ask        ``ragmodels ask QUESTION`` answered by a running worker
and then, in one process, where the cold ask's time goes (imports, loading, first and second answer).
Workers live in a temporary folder and are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

STAGES = r"""
import os, time
from ragmodels.cli import ASK_ENVIRONMENT  # what a ``ragmodels ask`` process sets before importing torch
for name, value in ASK_ENVIRONMENT.items():
    os.environ.setdefault(name, value)
T = [("start", time.perf_counter())]
def mark(name): T.append((name, time.perf_counter()))
import torch; mark("import torch")
import FLOOR_MODULES; mark("import generator/encoder modeling")
import faiss, pyarrow; mark("import faiss, pyarrow")
from ragmodels.cli import ask_fields_namespace, format_answers, load_pipeline
import ragmodels.pipeline, ragmodels.default, ragmodels.modeling, ragmodels.retrieval.retriever; mark("import ragmodels")
pipeline = load_pipeline(None, None); mark("load model, tokenizers, index")
args = ask_fields_namespace({"questions": [QUESTION]})
format_answers(pipeline, args); mark("first answer")
format_answers(pipeline, args); mark("second answer")
print(";".join(f"{name}={b - a:.4f}" for (_, a), (name, b) in zip(T, T[1:])))
"""


def floor_modules() -> str:
    """The transformers modeling modules of the default model's generator and question encoder."""
    import importlib.util

    default = os.path.join(os.path.dirname(importlib.util.find_spec("ragmodels").origin), "default")
    with open(os.path.join(default, "generator", "config.json")) as f:
        kind = json.load(f)["model_type"]
    return f"transformers.models.{kind}.modeling_{kind}, transformers.models.bert.modeling_bert"


def ask_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "ragmodels")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "ragmodels.cli"]


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one run; fails loudly on a non-zero exit."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode:
        raise SystemExit(f"{command} failed:\n{done.stderr.decode()}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a running process, from /proc (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(values: list[float]) -> str:
    return f"{min(values):6.3f} / {statistics.median(values):6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--question", default="What is the capital of Mongolia?")
    opts = parser.parse_args()
    workers = tempfile.mkdtemp(prefix="ragmodels-bench-")
    os.chmod(workers, 0o700)
    from ragmodels.cli import ASK_ENVIRONMENT

    env = {**ASK_ENVIRONMENT, **{k: v for k, v in os.environ.items() if k != "RAGMODELS_NO_WORKER"}}
    env["RAGMODELS_WORKER_DIR"] = workers
    ask = ask_command()
    kinds = {
        "python": [sys.executable, "-c", "pass"],
        "torch": [sys.executable, "-c", "import torch, gc; gc.freeze()"],
        "floor": [sys.executable, "-c", f"import torch, {floor_modules()}, gc; gc.freeze()"],
        "floor, plain exit": [sys.executable, "-c", f"import torch, {floor_modules()}"],
        "cold ask": [*ask, "ask", "--no-worker", opts.question],
        "warm ask": [*ask, "ask", opts.question],
    }
    try:
        subprocess.run([*ask, "ask", opts.question], env=env, check=True, capture_output=True)  # starts the worker
        os.environ.clear()
        os.environ.update(env)  # what the clients compute their worker's key from
        from ragmodels import ask_worker

        spec = ask_worker.WorkerSpec.for_args(None, None)
        deadline = time.monotonic() + 300
        while (info := ask_worker.ping(spec)) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not come up")
            time.sleep(0.2)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in kinds}
        worker_cpu = []
        for _ in range(opts.runs):
            for name, command in kinds.items():
                before = process_cpu(info["pid"])
                results[name].append(timed(command, env))
                if name == "warm ask" and before is not None:
                    worker_cpu.append(process_cpu(info["pid"]) - before)
        stages_code = f"QUESTION = {opts.question!r}\n" + STAGES.replace("FLOOR_MODULES", floor_modules())
        stages = [subprocess.run([sys.executable, "-c", stages_code], env=env,
                                 capture_output=True, text=True, check=True).stdout.strip() for _ in range(opts.runs)]
    finally:
        subprocess.run([*ask, "ask", "--stop-worker"], env=env, capture_output=True)
        shutil.rmtree(workers, ignore_errors=True)
    print(f"{opts.runs} runs each, seconds as min / median; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; {' '.join(ask)}")
    print(f"{'':18s} {'wall':>15s}   {'CPU':>15s}")
    for name, runs in results.items():
        print(f"{name:18s} {summary([w for w, _ in runs])}   {summary([c for _, c in runs])}")
    if worker_cpu:
        print(f"{'':18s} {'':15s}   {summary(worker_cpu)}  CPU of the worker answering a warm ask")
    print("\nin one process (min / median):")
    parsed = [dict(item.split("=") for item in line.split(";")) for line in stages]
    for name in parsed[0]:
        print(f"  {name:32s} {summary([float(p[name]) for p in parsed])}")


if __name__ == "__main__":
    main()
