"""Experiment (c): index hot-swap. Change facts in the knowledge base, swap the new index into the live
default model (no retraining), and count how many answers follow the new facts.

    python recipes/experiments/hot_swap.py --work /tmp/rx_swap [--out FILE.md]

The capitals of all countries are permuted (each country gets the capital of the next one in a seeded
shuffle) in their "... Its capital is X." passage; the knowledge base is rebuilt from the changed
documents (every passage re-encoded by MiniLM, mean pooling: ~1 min for 957 passages). The swap is ``RagRetriever.set_index`` on the running
model. Questions: "What is the capital of <country>?" for every country, split by whether the country is
a training entity (its true capital was seen in training) or a dev/test one.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # recipes/: the geoqa helpers
from geoqa import common as c  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "geoqa" / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/rx_swap"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "hot_swap.md", help="markdown file the table is written to")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    c.set_threads(args.threads)
    from ragmodels.evaluation.metrics import exact_match
    from ragmodels.pipeline import RagPipeline
    from ragmodels.retrieval.knowledge_base import ContextEncoder, build_knowledge_base

    args.work.mkdir(parents=True, exist_ok=True)
    data = c.prepare_data(args.work)
    meta = json.loads((data / "meta.json").read_text())
    train_groups = set(meta["train_groups"])
    documents = c.read(data / "documents.jsonl")
    capital_docs = [d for d in documents if d["id"].startswith("country/") and d["id"].endswith("/0")]
    capital_of = {d["id"]: re.search(r"Its capital is (.+?)\.(?: The largest city of |$)", d["text"]).group(1) for d in capital_docs}
    order = sorted(capital_of)
    random.Random(args.seed).shuffle(order)
    new_capital = {doc_id: capital_of[order[(i + 1) % len(order)]] for i, doc_id in enumerate(order)}
    changed = [dict(d, text=d["text"].replace(f"Its capital is {capital_of[d['id']]}.",
                                            f"Its capital is {new_capital[d['id']]}.")) for d in capital_docs]
    by_id = {d["id"]: d for d in changed}
    swapped_docs = [by_id.get(d["id"], d) for d in documents]
    swapped_file = args.work / "documents_swapped.jsonl"
    swapped_file.write_text("".join(json.dumps(d) + "\n" for d in swapped_docs))

    pipe = RagPipeline.from_default()
    questions = [f"What is the capital of {d['title']}?" for d in capital_docs]
    groups = ["train" if d["id"].split("/")[1] in train_groups else "held-out" for d in capital_docs]

    def run() -> list[str]:
        out = []
        for i in range(0, len(questions), 64):
            out += [a.answer for a in pipe.answer(questions[i : i + 64], num_beams=1)]
        return out

    before = run()
    started = time.perf_counter()
    kb_dir = args.work / "kb_swapped"
    if not (kb_dir / "manifest.json").is_file():
        build_knowledge_base([swapped_file], kb_dir, ContextEncoder.from_pretrained(c.minilm_path(), pooling="mean"))
    from ragmodels.retrieval.knowledge_base import KnowledgeBase

    pipe.retriever.set_index(KnowledgeBase.load(kb_dir))  # hot swap into the live model
    rebuild_s = time.perf_counter() - started
    after = run()

    def share(preds, truths, group):
        pairs = [(pr, t) for pr, t, g in zip(preds, truths, groups) if group in (g, "all")]
        return sum(exact_match(pr, t) for pr, t in pairs) / len(pairs)

    old = [capital_of[d["id"]] for d in capital_docs]
    new = [new_capital[d["id"]] for d in capital_docs]
    rows = []
    for group in ("train", "held-out", "all"):
        n = sum(1 for g in groups if group in (g, "all"))
        rows.append([group, n, share(before, old, group), share(after, new, group), share(after, old, group)])
    table = c.markdown_table(["countries", "n", "EM old capital, before swap", "EM new capital, after swap",
                              "EM old capital, after swap"], rows)
    examples = [[q, o, nw, a] for q, o, nw, a in list(zip(questions, old, new, after))[:5]]
    ex_table = c.markdown_table(["question", "old capital", "new (swapped) capital", "answer after swap"], examples)
    text = (f"### Index hot-swap: capitals permuted in the knowledge base, no retraining\n\n"
            f"Command: `python recipes/experiments/hot_swap.py` (re-encode + rebuild + swap: {rebuild_s:.0f}s)\n\n"
            f"{table}\n\n{ex_table}\n")
    print(text)
    (args.work / "predictions.json").write_text(json.dumps(
        [{"question": q, "old": o, "new": nw, "before": b, "after": a}
         for q, o, nw, b, a in zip(questions, old, new, before, after)], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
