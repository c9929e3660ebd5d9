"""Train the embedded default model (src/ragmodels/default/) from scratch, on CPU.

    python recipes/train_default.py --work /tmp/ragdefault            # data, KB, tokenizer, training, test eval
    python recipes/train_default.py --work /tmp/ragdefault --export   # + install into src/ragmodels/default/

Steps: GeoQA (``ragmodels.data``) -> knowledge base of its documents encoded by the offline MiniLM
(mean pooling) -> 4k byte-level BPE generator tokenizer learned from the corpus (prefix space, so answers
tokenize as inside passages) -> a small T5 generator (d_model 128, 2+2 layers, tied embeddings, random
init) -> reader pre-training on made-up worlds, copy examples and counterfactual training passages
(``recipes/geoqa/reader_pretraining.py``) with the copy-restricted softmax -> RAG-Sequence training by
the project's recipe (``ragmodels.training.train``, n_docs 3, ``copy_from_context``) with the MiniLM
question encoder frozen (its outputs scaled by 0.25: tempered doc posteriors) -> a short joint stage that
also trains the question encoder's top layer(s) at a small learning rate -> test-set EM/F1 per relation
(copy-constrained decoding, the model's own, and unconstrained decoding) -> export (fp16 generator, the
fine-tuned question-encoder layers, tokenizer, KB; checked to give the same test predictions as fp32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipes/: the geoqa helpers
from geoqa import common as c  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ragdefault"))
    parser.add_argument("--head", choices=("token", "sequence"), default="sequence")
    parser.add_argument("--reader-epochs", type=int, default=20, help="reader pre-training epochs (0: none)")
    parser.add_argument("--reader-lr", type=float, default=2e-3)
    parser.add_argument("--copy-epochs", type=int, default=3, help="first reader epochs with copy-the-passage examples")
    parser.add_argument("--distract", type=float, default=0.0, help="share of made-up facts with a distractor example")
    parser.add_argument("--copy-softmax", action=argparse.BooleanOptionalAction, default=True,
                        help="reader pre-training and RAG training with each passage's softmax restricted to copying "
                             "from it (RagConfig.copy_from_context; the model then decodes that way)")
    parser.add_argument("--epochs", type=int, default=5, help="RAG fine-tuning epochs (the project's recipe)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--n-docs", type=int, default=3)
    parser.add_argument("--question-layers", type=int, default=1,
                        help="top layers of the question encoder trained in the joint stage (0: no joint stage)")
    parser.add_argument("--joint-steps", type=int, default=100)
    parser.add_argument("--joint-lr", type=float, default=5e-5)
    parser.add_argument("--max-combined-length", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=c.VOCAB_SIZE)
    parser.add_argument("--arch", choices=("t5", "bart"), default="t5")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=512)
    parser.add_argument("--dev-questions", type=int, default=96, help="dev questions evaluated after each epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export", action="store_true", help="write the trained model into src/ragmodels/default/")
    parser.add_argument("--export-only", action="store_true", help="export the already trained run in --work")
    args = parser.parse_args(argv)
    c.set_threads(args.threads)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = c.prepare_data(work)
    kb = c.build_kb(data / "documents.jsonl", work / "kb", progress=True)
    run = work / f"run_{args.head}"
    if not args.export_only:
        train_and_evaluate(args, data, kb, run)
    if args.export or args.export_only:
        from geoqa.export import install

        print(f"installed into {install(run / 'default')}")
    return 0


def generator_size(args) -> dict:
    return {"arch": args.arch, "d_model": args.d_model, "layers": args.layers, "ffn": args.ffn}


def train_and_evaluate(args, data: Path, kb, run: Path) -> dict:
    question_encoder, question_tokenizer = c.load_minilm()
    started = time.perf_counter()
    generator, tokenizer = c.reader(data, run.parent, question_tokenizer, vocab_size=args.vocab_size,
                                    size=generator_size(args), epochs=args.reader_epochs, lr=args.reader_lr,
                                    distract=args.distract, copy_softmax=args.copy_softmax,
                                    copy_epochs=args.copy_epochs)
    print(f"generator: {sum(p.numel() for p in generator.parameters()) / 1e6:.2f}M parameters, vocab {len(tokenizer)}")
    parts = c.rag_components(kb, generator, tokenizer, head=args.head, n_docs=args.n_docs,
                             max_combined_length=args.max_combined_length, question_encoder=question_encoder,
                             question_tokenizer=question_tokenizer)
    dev = c.read(data / "dev.jsonl")[: args.dev_questions]
    dev_file = run.parent / f"dev_{args.dev_questions}.jsonl"
    dev_file.write_text("".join(json.dumps(r) + "\n" for r in dev))
    original_encoder = c.cache_question_encoder(parts.model)  # frozen: encode each question once
    from ragmodels.training import TrainConfig, train

    config = TrainConfig(
        train_file=str(data / "train.jsonl"), output_dir=str(run), dev_file=str(dev_file),
        documents_file=str(data / "documents.jsonl"), epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, warmup_steps=args.warmup, n_docs=args.n_docs, freeze_question_encoder=True,
        max_answer_length=24, max_question_length=48, eval_batch_size=96, progress_bar=True, eval_ks=[1, 5],
        copy_from_context=args.copy_softmax,
    )
    result = train(config, parts)
    parts.model.rag.question_encoder = original_encoder
    print(f"trained in {time.perf_counter() - started:.0f}s; dev: {json.dumps(result.dev_metrics)}")
    if args.question_layers:
        c.train_question_layers(parts, data, run / "joint", layers=args.question_layers, steps=args.joint_steps,
                                lr=args.joint_lr, batch_size=args.batch_size, copy_from_context=args.copy_softmax)
        print(f"joint stage done at {time.perf_counter() - started:.0f}s")
    gold = {d["id"]: d["text"] for d in c.read(data / "documents.jsonl")}
    test = c.read(data / "test.jsonl")
    report = c.evaluate_rag(parts.model, parts.tokenizer, test, gold_texts=gold, copy=False)
    copied = c.evaluate_rag(parts.model, parts.tokenizer, test, copy=True)
    (run / "test_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"test EM {report['exact_match']:.3f} F1 {report['f1']:.3f} gold recall {report.get('gold_recall@k')}; "
          f"copy-constrained decoding EM {copied['exact_match']:.3f} F1 {copied['f1']:.3f}")
    rows = [[rel, m["n"], m["exact_match"], m["f1"], copied["by_relation"][rel]["exact_match"]]
            for rel, m in report["by_relation"].items()]
    print(c.markdown_table(["relation", "n", "EM", "F1", "EM copy"], rows))
    export(args, parts, kb, run, data, report, copied, gold, time.perf_counter() - started)
    return copied if args.copy_softmax else report


def export(args, parts, kb, run: Path, data: Path, report: dict, copied: dict, gold: dict, seconds: float) -> None:
    """Write the fp16 default into run/default and check that it answers the test set as the fp32 model."""
    from geoqa.export import export_default
    from ragmodels.default import load_default

    info = {"question_encoder_scale": c.QUESTION_SCALE, "head": args.head, "reader_epochs": args.reader_epochs,
            "reader_learning_rate": args.reader_lr, "n_docs": args.n_docs, "epochs": args.epochs, "learning_rate": args.lr,
            "batch_size": args.batch_size, "distract": args.distract, "copy_softmax": args.copy_softmax,
            "copy_epochs": args.copy_epochs, "question_layers": args.question_layers,
            "joint_steps": args.joint_steps, "joint_learning_rate": args.joint_lr,
            "generator": {**generator_size(args), "vocab_size": args.vocab_size}, "train_seconds": round(seconds),
            "test": {k: v for k, v in report.items() if k != "predictions"},
            "test_copy": {k: copied[k] for k in ("exact_match", "f1", "by_relation")}}
    folder = export_default(parts.model, parts.tokenizer, kb, run / "default", fp16=True, extra=info,
                            question_layers=args.question_layers)
    model, tokenizer = load_default(folder=folder)
    headline = copied if args.copy_softmax else report  # the decoding the model's config asks for
    again = c.evaluate_rag(model, tokenizer, c.read(data / "test.jsonl"), gold_texts=gold, copy=args.copy_softmax)
    same = sum(a["prediction"] == b["prediction"] for a, b in zip(headline["predictions"], again["predictions"]))
    print(f"fp16 export: {same}/{len(headline['predictions'])} test predictions equal to fp32; "
          f"EM {again['exact_match']:.3f} F1 {again['f1']:.3f}")
    info["fp16_equal_predictions"] = f"{same}/{len(headline['predictions'])}"
    (folder / "info.json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
