"""Experiment (a): closed-book generator vs RAG-Token vs RAG-Sequence on the GeoQA test entities.

    python recipes/experiments/heads.py --work /tmp/ragdefault [--out FILE.md]

All three have the same generator (T5, d_model 128, 2+2 layers, ffn 512, tied embeddings, 4k byte-level
BPE learned from the corpus). The RAG models start from the same reader pre-training
(``recipes/geoqa/reader_pretraining.py``; cached in --work and shared with recipes/train_default.py)
and are then trained as RAG-Token / RAG-Sequence exactly as the default is: the project's recipe with the
MiniLM question encoder frozen (n_docs 3), then a joint stage that also trains its top layer. The
closed-book model reads the question only and is trained on the training questions for as many epochs
(reader + RAG) with the same optimizer. Each RAG model is also evaluated with copy-constrained decoding
(answers restricted to spans of the retrieved passages, ``ragmodels.generation.context_copy``).
Finished runs in --work are reused.
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


def default_report(args, kind: str) -> dict | None:
    """The test report of recipes/train_default.py's run in --work when it used this experiment's settings."""
    info_file = args.work / f"run_{kind}" / "default" / "info.json"
    if not info_file.is_file():
        return None
    info = json.loads(info_file.read_text())
    same = {"head": kind, "reader_epochs": args.reader_epochs, "reader_learning_rate": args.reader_lr,
            "epochs": args.epochs, "learning_rate": args.lr, "batch_size": args.batch_size, "n_docs": args.n_docs,
            "question_layers": args.question_layers, "joint_steps": args.joint_steps,
            "copy_softmax": args.copy_softmax, "copy_epochs": args.copy_epochs}
    if any(info.get(k) != v for k, v in same.items()):
        return None
    if "test_copy" not in info:
        return None
    return {**info["test"], "copy": info["test_copy"], "train_seconds": info["train_seconds"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/ragdefault"))
    p.add_argument("--reader-epochs", type=int, default=20)
    p.add_argument("--reader-lr", type=float, default=2e-3)
    p.add_argument("--epochs", type=int, default=5, help="RAG epochs (the recipe)")
    p.add_argument("--lr", type=float, default=5e-4, help="RAG learning rate")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-docs", type=int, default=3)
    p.add_argument("--question-layers", type=int, default=1, help="question-encoder layers trained in the joint stage")
    p.add_argument("--joint-steps", type=int, default=100)
    p.add_argument("--copy-softmax", action=argparse.BooleanOptionalAction, default=True,
                   help="reader pre-training and RAG training with the copy-restricted softmax (as the default)")
    p.add_argument("--copy-epochs", type=int, default=3)
    p.add_argument("--kinds", nargs="+", default=["closed", "token", "sequence"])
    p.add_argument("--out", type=Path, default=RESULTS / "heads.md", help="markdown file the table is written to")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    c.set_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = c.prepare_data(args.work)
    kb = c.build_kb(data / "documents.jsonl", args.work / "kb")
    test = c.read(data / "test.jsonl")
    gold = {d["id"]: d["text"] for d in c.read(data / "documents.jsonl")}
    results = {}
    for kind in args.kinds:
        tag = f"{kind}_e{args.reader_epochs}+{args.epochs}{'-copy' if args.copy_softmax and kind != 'closed' else ''}"
        report_file = args.work / f"exp_heads_{tag}.json"
        if report_file.is_file():
            results[kind] = json.loads(report_file.read_text())
            print(f"{kind}: reusing {report_file}")
            continue
        default_run = default_report(args, kind)
        if default_run is not None:  # recipes/train_default.py trained this very model in --work
            results[kind] = default_run
            print(f"{kind}: reusing the run of recipes/train_default.py in {args.work}")
            continue
        started = time.perf_counter()
        if kind == "closed":
            tokenizer = c.train_tokenizer(data)
            generator = c.new_generator(tokenizer, **c.SMALL)
            epochs = args.reader_epochs + args.epochs
            c.train_closed_book(generator, tokenizer, c.read(data / "train.jsonl"), epochs=epochs, lr=args.reader_lr,
                                batch_size=32, warmup_steps=100)
            r = c.evaluate_closed_book(generator, tokenizer, test)
            report = {"exact_match": r.exact_match, "f1": r.f1, "by_relation": r.by_relation}
        else:
            question_encoder, question_tokenizer = c.load_minilm()
            generator, tokenizer = c.reader(data, args.work, question_tokenizer, epochs=args.reader_epochs,
                                            lr=args.reader_lr, copy_softmax=args.copy_softmax,
                                            copy_epochs=args.copy_epochs)
            parts = c.rag_components(kb, generator, tokenizer, head=kind, n_docs=args.n_docs, max_combined_length=64,
                                     question_encoder=question_encoder, question_tokenizer=question_tokenizer)
            original = c.cache_question_encoder(parts.model)
            c.train_rag(parts, data, args.work / f"exp_run_{tag}", epochs=args.epochs, lr=args.lr,
                        batch_size=args.batch_size, warmup_steps=40, progress=False,
                        copy_from_context=args.copy_softmax)
            parts.model.rag.question_encoder = original
            if args.question_layers:
                c.train_question_layers(parts, data, args.work / f"exp_run_{tag}_joint", layers=args.question_layers,
                                        steps=args.joint_steps, batch_size=args.batch_size,
                                        copy_from_context=args.copy_softmax)
            full = c.evaluate_rag(parts.model, parts.tokenizer, test, gold_texts=gold, copy=False)
            report = {k: v for k, v in full.items() if k != "predictions"}
            copied = c.evaluate_rag(parts.model, parts.tokenizer, test, copy=True)
            report["copy"] = {k: copied[k] for k in ("exact_match", "f1", "by_relation")}
        report["train_seconds"] = round(time.perf_counter() - started)
        report_file.write_text(json.dumps(report, indent=2) + "\n")
        results[kind] = report
        print(f"{kind}: EM {report['exact_match']:.3f} F1 {report['f1']:.3f} ({report['train_seconds']}s)")
    names = {"closed": "closed-book T5 (no retrieval)", "token": "RAG-Token", "sequence": "RAG-Sequence"}
    columns = {}  # model and decoding -> report
    for k, r in results.items():
        if "copy" in r:
            columns[f"{names[k]}, copy-constrained decoding"] = {**r["copy"], "train_seconds": r["train_seconds"]}
            columns[f"{names[k]}, unconstrained decoding"] = r
        else:
            columns[names[k]] = r
    rows = [[name, r["exact_match"], r["f1"], r["train_seconds"]] for name, r in columns.items()]
    table = c.markdown_table(["model (same generator size)", "test EM", "test F1", "train s"], rows)
    first = next(iter(results.values()))
    rel_rows = [[rel, first["by_relation"][rel]["n"], *[r["by_relation"][rel]["exact_match"] for r in columns.values()]]
                for rel in sorted(first["by_relation"])]
    rel_table = c.markdown_table(["relation", "n", *[f"EM {name}" for name in columns]], rel_rows)
    text = (f"### Closed-book vs RAG-Token vs RAG-Sequence (GeoQA test, {len(test)} questions)\n\n"
            f"Command: `python recipes/experiments/heads.py` (reader pre-training {args.reader_epochs} epochs, "
            f"RAG {args.epochs} epochs{', copy-restricted softmax' if args.copy_softmax else ''}; closed-book "
            f"{args.reader_epochs + args.epochs} epochs; greedy decoding)\n\n{table}\n\n{rel_table}\n")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
