"""``ragmodels eval``: evaluate a RAG checkpoint on a JSONL set (registered by ragmodels.cli)."""

from __future__ import annotations

import argparse
import json
import sys

from ..argtypes import checkpoint_source, integer


def add_eval_command(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels eval SET.jsonl [--model DIR] [--knowledge-base KB] --report r.json --plot r.png``."""
    parser = subparsers.add_parser("eval", help="EM/F1 and retrieval recall@k on a question/answer JSONL set")
    parser.add_argument("data", help="JSONL with question and answers (gold_passage_id optional)")
    parser.add_argument("--model", help="RAG checkpoint folder (config, weights, tokenizers); default: the embedded "
                                        "default model")
    parser.add_argument("--knowledge-base", help="knowledge-base folder (default: the one in the model's config)")
    parser.add_argument("--documents", help="documents JSONL the knowledge base was built from (gold recall)")
    parser.add_argument("--ks", type=integer(1), nargs="+", default=[1, 5, 10, 20], help="k values of recall@k")
    parser.add_argument("--batch-size", type=integer(1), default=16, help="questions per model call (default 16)")
    parser.add_argument("--num-beams", type=integer(1), default=1, help="beams (default 1: greedy)")
    parser.add_argument("--max-new-tokens", type=integer(1), default=24, help="most tokens per answer (default 24)")
    parser.add_argument("--on-malformed", choices=("stop", "skip"), default="stop",
                        help="stop at a malformed line, or skip it and list it in the report")
    parser.add_argument("--report", help="write the JSON report here")
    parser.add_argument("--plot", help="write a recall@k PNG here")
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from ..loader import load_rag
    from ..evaluation.evaluator import evaluate_file

    print(f"evaluating {args.data} with {args.model or 'the embedded default model'}", file=sys.stderr)

    model, tokenizer = load_rag(None if args.model is None else checkpoint_source(args.model), index=args.knowledge_base)
    report = evaluate_file(
        args.data, model, tokenizer, on_error=args.on_malformed, documents_path=args.documents,
        report_path=args.report, plot_path=args.plot, ks=args.ks, batch_size=args.batch_size,
        generation_kwargs={"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens}, progress=True,
    )
    if "gold_recall@k" not in report and args.documents is None:
        print("note: pass --documents DOCUMENTS.jsonl (the knowledge base's documents) for gold-passage recall@k",
              file=sys.stderr)
    print(json.dumps({k: v for k, v in report.items() if k != "predictions"}, indent=2))
    return 0
