"""Experiment (b): frozen vs fine-tuned question encoder (retrieval recall@5 and EM on GeoQA test).

    python recipes/experiments/question_encoder.py --work /tmp/rx_qe [--steps 60] [--out FILE.md]

Both runs start from the same point: the shipped default's generator with the packaged MiniLM question
encoder as it comes (the default's own fine-tuned top layer is put back to MiniLM's), and continue with
the project's recipe for the same number of steps, learning rate and batches; one keeps the question
encoder frozen, the other trains its top ``--layers`` layers (the knowledge-base embeddings stay fixed, as
in the RAG paper). A smaller learning rate than the from-scratch default is used (MiniLM is pretrained).
Recall is gold-passage recall@k of the retriever (the passage the fact comes from).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # recipes/: the geoqa helpers
from geoqa import common as c  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "geoqa" / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/rx_qe"))
    p.add_argument("--steps", type=int, default=100, help="optimizer steps of each continued run (151 = 1 epoch)")
    p.add_argument("--layers", type=int, default=1, help="top question-encoder layers trained in the fine-tuned run")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, default=RESULTS / "question_encoder.md", help="markdown file the table is written to")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    c.set_threads(args.threads)
    from ragmodels.default import load_default
    from ragmodels.training.components import Components

    args.work.mkdir(parents=True, exist_ok=True)
    data = c.prepare_data(args.work)
    test = c.read(data / "test.jsonl")
    gold = {d["id"]: d["text"] for d in c.read(data / "documents.jsonl")}
    def start_point():
        model, tokenizer = load_default()
        model.rag.question_encoder = c.load_minilm()[0]  # MiniLM as packaged (scaled as the default's)
        return model, tokenizer

    results = {}
    model, tokenizer = start_point()
    base = c.evaluate_rag(model, tokenizer, test, gold_texts=gold, ks=(1, 5))
    results["start point (packaged MiniLM)"] = (base, 0)
    for frozen in (True, False):
        name = "frozen question encoder" if frozen else f"fine-tuned question encoder (top {args.layers} layer(s))"
        model, tokenizer = start_point()
        model.train()
        parts = Components(model=model, tokenizer=tokenizer, retriever=model.retriever)
        original = c.cache_question_encoder(model) if frozen else None
        if not frozen:
            c.trainable_question_layers(model, args.layers)
        started = time.perf_counter()
        c.train_rag(parts, data, args.work / ("run_frozen" if frozen else "run_finetuned"), epochs=100,
                    max_steps=args.steps, lr=args.lr, batch_size=args.batch_size, warmup_steps=10,
                    freeze_question_encoder=frozen, progress=False)
        seconds = round(time.perf_counter() - started)
        if original is not None:
            model.rag.question_encoder = original
        report = c.evaluate_rag(model, tokenizer, test, gold_texts=gold, ks=(1, 5))
        results[name] = (report, seconds)
        print(f"{name}: EM {report['exact_match']:.3f} recall@5 {report['gold_recall@k']['5']:.3f} ({seconds}s)")
    rows = [[name, r["gold_recall@k"]["1"], r["gold_recall@k"]["5"], r["answer_recall@k"]["5"], r["exact_match"],
             r["f1"], s] for name, (r, s) in results.items()]
    table = c.markdown_table(["question encoder", "gold recall@1", "gold recall@5", "answer recall@5", "EM", "F1",
                              "train s"], rows)
    text = (f"### Frozen vs fine-tuned question encoder (GeoQA test, {len(test)} questions)\n\n"
            f"Command: `python recipes/experiments/question_encoder.py --steps {args.steps} --layers {args.layers}` "
            f"(both continue the shipped default's generator with the packaged MiniLM for {args.steps} steps at lr "
            f"{args.lr}, batch {args.batch_size})\n\n{table}\n")
    print(text)
    (args.work / "results.json").write_text(json.dumps({k: {kk: vv for kk, vv in r.items() if kk != "predictions"}
                                                         for k, (r, _) in results.items()}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
