"""Generator inputs: "prefix + title + title_sep + text + doc_sep + question", tokenized in ONE call.

The strings and their tokenization are the reference's ``RagRetriever.postprocess_docs`` byte for
byte: one surrounding double quote is stripped from each title, every double space of the joined
string becomes one space, and the batch is truncated and padded to ``max_combined_length``.

Fast path (``ContextCache``): the reference re-tokenizes every passage for every question. Where it
is provably the same, the passage part ``prefix + title + title_sep + text`` is tokenized once per
passage (bounded LRU cache) and the question part ``doc_sep + question`` once per question; their ids
are concatenated, truncated, wrapped in the special tokens and padded exactly as the tokenizer's own
call does. Why the concatenation is exact (``_fast_plan`` / ``_passage_ids``):
  - ``str.replace("  ", " ")`` of the joined string equals that of the two parts when the passage
    part does not end with a space (``doc_sep`` starts with one), so no match straddles the split;
  - the tokenizer is a ``tokenizers`` backend whose normalizer acts character by character or per
    grapheme (NFC/NFD/NFKC/NFKD, SentencePiece ``Precompiled``, space-run ``Replace``): after a
    character that is not whitespace, a mark, a format character or a grapheme "Prepend", a space
    starts a new grapheme, so normalizing the parts separately gives the same string;
  - its pre-tokenizer always cuts before a space that follows a non-space (byte-level BPE's regex,
    ``WhitespaceSplit``/``Whitespace``, BERT's ``BertPreTokenizer``, which splits at whitespace and
    punctuation, ``Metaspace`` with split, which does not prepend to a part that already starts with a
    space), and the model (BPE without dropout, Unigram, WordPiece: [UNK] and the 100-character limit
    are per word) encodes pre-tokens independently;
  - BERT's ``BertNormalizer`` also acts character by character: control characters dropped, whitespace
    mapped to a space, spaces put around CJK characters, accents stripped (NFD, marks dropped) and case
    lowered per character (measured: "ΑΣ" -> "ασ", no final-sigma rule). A part whose normalized form
    ends in a space or a mark (a CJK or "İ" ending) is not provably safe and falls back;
  - no added token contains whitespace, and none with ``rstrip`` ends the passage part (it would eat
    the space of ``doc_sep``).
Anything else (another tokenizer, a passage ending in whitespace, a ``doc_sep`` not starting with a
space, left truncation, an odd tensor type) takes the reference's single tokenizer call, row by row
where only some rows qualify. tests/retrieval/test_contextualize_fast.py checks the equality on
random and edge-case strings for BART, T5 and BERT (WordPiece) tokenizers.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase


def decode_questions(question_input_ids: Any, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Question strings from question-encoder ids (bs, L), special tokens skipped (as the reference)."""
    rows = question_input_ids.tolist() if hasattr(question_input_ids, "tolist") else list(question_input_ids)
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


def combine(title: str, text: str, question: str, prefix: str | None, title_sep: str, doc_sep: str) -> str:
    """One generator input string (the reference's ``cat_input_and_doc``)."""
    title = title.removeprefix('"').removesuffix('"')
    return ((prefix or "") + title + title_sep + text + doc_sep + question).replace("  ", " ")


def contextualized_strings(doc_dicts: Sequence[dict], questions: Sequence[str], prefix: str | None,
                           title_sep: str, doc_sep: str) -> list[str]:
    """bs * n_docs strings, question-major: all passages of question 0, then question 1, ..."""
    return [
        combine(title, text, question, prefix, title_sep, doc_sep)
        for docs, question in zip(doc_dicts, questions, strict=True)
        for title, text in zip(docs["title"], docs["text"], strict=True)
    ]


def contextualize(doc_dicts: Sequence[dict], questions: Sequence[str], tokenizer: PreTrainedTokenizerBase, *,
                  prefix: str | None, title_sep: str, doc_sep: str, max_length: int,
                  return_tensors: str | None = None, cache: "ContextCache | None" = None,
                  doc_ids: np.ndarray | None = None, passage_tokens: Any = None) -> tuple[Any, Any]:
    """Tokenize all contextualized strings -> (input_ids, attention_mask), (bs * n_docs, max_length).

    With ``cache`` (a ``ContextCache`` of this tokenizer), passages and questions are tokenized once each
    where that provably gives the same ids (module docstring); otherwise one tokenizer call for all.
    With ``passage_tokens`` (a ``PassageTokens`` store of this tokenizer, prefix and title_sep) and the
    passages' ``doc_ids`` (bs, n_docs), passage ids are read from the store instead of tokenized.
    """
    if cache is not None and cache.tokenizer is tokenizer and return_tensors in (None, "np", "pt"):
        fast = cache.contextualize(doc_dicts, questions, prefix=prefix, title_sep=title_sep, doc_sep=doc_sep,
                                   max_length=max_length, return_tensors=return_tensors, doc_ids=doc_ids,
                                   passage_tokens=passage_tokens)
        if fast is not None:
            return fast
    strings = contextualized_strings(doc_dicts, questions, prefix, title_sep, doc_sep)
    encoded = tokenizer(strings, max_length=max_length, return_tensors=return_tensors,
                        padding="max_length", truncation=True)
    return encoded["input_ids"], encoded["attention_mask"]


def tokenize_docs(doc_dicts: Sequence[dict], tokenizer: PreTrainedTokenizerBase,
                  return_tensors: str | None = None) -> tuple[Any, Any]:
    """(title, text) pairs for the context encoder of end-to-end training, padded to the longest."""
    titles = [title for docs in doc_dicts for title in docs["title"]]
    texts = [text for docs in doc_dicts for text in docs["text"]]
    encoded = tokenizer(titles, texts, truncation=True, padding="longest", return_tensors=return_tensors)
    return encoded["input_ids"], encoded["attention_mask"]


# -- fast path ------------------------------------------------------------------------------------
# Unicode grapheme-break "Prepend" characters (a grapheme never breaks after them; UAX #29).
_PREPEND = frozenset(
    [*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x0D4E, 0x110BD, 0x110CD, 0x111C2, 0x111C3,
     0x1193F, 0x11941, 0x11A3A, *range(0x11A84, 0x11A8A), 0x11D46, 0x11F02]
)
_UNSAFE_CATEGORIES = ("M", "C", "Z")  # marks, control/format/private/unassigned, separators
_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Precompiled", "BertNormalizer", "Lowercase"}
_SPLITTING_PRE_TOKENIZERS = {"WhitespaceSplit", "Whitespace", "BertPreTokenizer"}
_MODELS = ("BPE", "Unigram", "WordPiece")
SEQUENTIAL_ENCODE = 64  # content_ids: up to this many strings are encoded one by one


def _safe_last_char(string: str) -> bool:
    """A split after this string's last character is a grapheme and pre-token boundary before a space."""
    if not string:
        return False
    ch = string[-1]
    return not (ch.isspace() or unicodedata.category(ch)[0] in _UNSAFE_CATEGORIES or ord(ch) in _PREPEND)


def _normalizer_ok(spec: dict | None) -> bool:
    if spec is None:
        return True
    kind = spec.get("type")
    if kind == "Sequence":
        return all(_normalizer_ok(s) for s in spec.get("normalizers", []))
    if kind == "Replace":  # only space runs -> one space (SentencePiece-style)
        pattern = spec.get("pattern", {})
        text = pattern.get("String", pattern.get("Regex"))
        return text in ("  ", " {2,}", " +") and spec.get("content") == " "
    return kind in _NORMALIZERS


def _pre_tokenizer_ok(spec: dict | None) -> bool:
    if spec is None:
        return False  # no pre-tokenizer: a BPE/Unigram model would see the whole string at once
    kind = spec.get("type")
    if kind == "Sequence":
        parts = spec.get("pretokenizers", [])
        # the first one must cut at the split; later ones then only see the two sides separately
        return bool(parts) and _pre_tokenizer_ok(parts[0]) and all(
            _pre_tokenizer_ok(p) or p.get("type") == "ByteLevel" for p in parts[1:]
        )
    if kind == "ByteLevel":
        return bool(spec.get("use_regex", True))
    if kind == "Metaspace":
        return bool(spec.get("split", True)) and spec.get("replacement") == "\u2581"
    return kind in _SPLITTING_PRE_TOKENIZERS


@dataclass(frozen=True)
class _Plan:
    """How the tokenizer's call wraps, truncates and pads a single sequence of content ids."""

    head: tuple[int, ...]  # special tokens before the content
    tail: tuple[int, ...]  # special tokens after it
    pad_id: int
    pad_left: bool
    rstrip_tokens: tuple[str, ...]  # added tokens that eat the whitespace after them
    normalize: Any  # the backend normalizer's normalize_str, or None
    fingerprint: str  # SHA-256 of the tokenizer class and backend JSON (what decides its content ids)


def _fast_plan(tokenizer: PreTrainedTokenizerBase) -> _Plan | None:
    """The plan when the concatenation argument of the module docstring holds for ``tokenizer``, else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or tokenizer.pad_token_id is None or getattr(tokenizer, "split_special_tokens", False):
        return None
    if tokenizer.truncation_side != "right" or tokenizer.padding_side not in ("left", "right"):
        return None
    if "attention_mask" not in tokenizer.model_input_names:
        return None
    try:
        backend_json = backend.to_str()
        spec = json.loads(backend_json)
    except Exception:  # noqa: BLE001 - a backend we cannot inspect is one we cannot prove
        return None
    model = spec.get("model") or {}
    if model.get("type") not in _MODELS or model.get("dropout") not in (None, 0, 0.0):
        return None
    if not (_normalizer_ok(spec.get("normalizer")) and _pre_tokenizer_ok(spec.get("pre_tokenizer"))):
        return None
    added = spec.get("added_tokens") or []
    if any(any(ch.isspace() for ch in t["content"]) for t in added):
        return None
    rstrip_tokens = tuple(t["content"] for t in added if t.get("rstrip"))
    # the special tokens of a single sequence, read off two probes
    head = tail = None
    for probe in ("a b", "b / a"):
        content = tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = tokenizer(probe)["input_ids"]
        starts = [i for i in range(len(full) - len(content) + 1) if full[i : i + len(content)] == content]
        if len(content) == 0 or len(starts) != 1:
            return None
        h, t = tuple(full[: starts[0]]), tuple(full[starts[0] + len(content) :])
        if head is not None and (h, t) != (head, tail):
            return None
        head, tail = h, t
    if tokenizer.num_special_tokens_to_add(pair=False) != len(head) + len(tail):
        return None
    normalizer = backend.normalizer
    fingerprint = hashlib.sha256(f"{type(tokenizer).__name__}\n{_without_call_settings(backend_json, spec)}".encode())
    return _Plan(head, tail, int(tokenizer.pad_token_id), tokenizer.padding_side == "left", rstrip_tokens,
                 None if normalizer is None else normalizer.normalize_str, fingerprint.hexdigest())


def _without_call_settings(backend_json: str, spec: dict) -> str:
    """The backend JSON without its truncation / padding settings (set by the last call, not the vocabulary).

    ``tokenizers`` writes them before ``added_tokens``; cut there (cheap), else re-serialize without them.
    """
    start = backend_json.find('"added_tokens":')
    if start >= 0 and list(spec)[:4] == ["version", "truncation", "padding", "added_tokens"]:
        return backend_json[start:]
    return json.dumps({k: v for k, v in spec.items() if k not in ("truncation", "padding")})


def passage_part(plan: _Plan, prefix: str, title_sep: str, title: str, text: str) -> str | None:
    """The string ``prefix + title + title_sep + text`` (as ``combine`` joins it) when tokenizing it apart from
    the question provably gives the ids of the whole-string call (module docstring); None otherwise."""
    raw = prefix + title.removeprefix('"').removesuffix('"') + title_sep + text
    part = raw.replace("  ", " ")
    if raw.endswith(" ") or not _safe_last_char(part):
        return None
    if plan.normalize is not None and not _safe_last_char(plan.normalize(part)):
        return None
    if any(part.endswith(t) for t in plan.rstrip_tokens):
        return None
    return part


def content_ids(tokenizer: PreTrainedTokenizerBase, strings: list[str]) -> list[np.ndarray]:
    """Ids of ``strings`` without special tokens, one tokenizer call, as int32 arrays."""
    if not strings:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if len(strings) <= SEQUENTIAL_ENCODE and backend is not None and backend.truncation is None and backend.padding is None:
        # what the call runs (encode_batch without special tokens), one string at a time: a few short strings
        # cost more to hand to the tokenizers thread pool (milliseconds on a busy machine) than to encode
        return [np.asarray(backend.encode(s, add_special_tokens=False).ids, dtype=np.int32) for s in strings]
    return [np.asarray(ids, dtype=np.int32) for ids in tokenizer(strings, add_special_tokens=False)["input_ids"]]


def vocab_size(tokenizer: Any) -> int | None:
    """len(tokenizer) (grows when tokens are added), None for objects without one."""
    try:
        return len(tokenizer)
    except TypeError:
        return None


class ContextCache:
    """Token ids of passage parts (bounded LRU) for the fast contextualization path of one generator tokenizer.

    ``max_passages`` bounds the memory: about 0.6 KiB per cached passage of ~100 words (int32 ids).
    A ``PassageTokens`` store (``passage_tokens.py``: every passage's ids, memory-mapped from disk) replaces
    the LRU where one matches the tokenizer, prefix and title_sep: then no passage is tokenized at all.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_passages: int = 16_384):
        self.tokenizer = tokenizer
        self.max_passages = max_passages
        self.plan = _fast_plan(tokenizer)
        self.vocab_size = vocab_size(tokenizer)
        self._passages: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
        self.hits = self.misses = self.fallbacks = self.stored = 0

    @property
    def enabled(self) -> bool:
        return self.plan is not None

    @property
    def fingerprint(self) -> str | None:
        """Identity of the tokenizer's content ids (None when the fast path does not apply to it)."""
        return None if self.plan is None else self.plan.fingerprint

    def clear(self) -> None:
        self._passages.clear()

    def _passage_ids(self, keys: list[tuple]) -> list[np.ndarray | None]:
        """Content ids of each passage part (None where the split is not provably safe)."""
        out: list = [None] * len(keys)
        missing: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            try:
                out[i] = self._passages[key]
                self._passages.move_to_end(key)
                self.hits += 1
            except KeyError:
                missing.setdefault(key, []).append(i)
        if not missing:
            return out
        todo_keys, todo_strings = [], []
        for key in missing:
            part = passage_part(self.plan, *key)
            if part is None:
                self._store(key, None)
            else:
                todo_keys.append(key)
                todo_strings.append(part)
        for key, ids in zip(todo_keys, content_ids(self.tokenizer, todo_strings)):
            self._store(key, ids)
        self.misses += len(missing)
        for key, positions in missing.items():
            for i in positions:
                out[i] = self._passages.get(key)
        return out

    def _store(self, key: tuple, value) -> None:
        self._passages[key] = value
        if len(self._passages) > self.max_passages:
            self._passages.popitem(last=False)

    def _question_ids(self, questions: Sequence[str], doc_sep: str) -> list[np.ndarray | None]:
        plan = self.plan
        parts = [(doc_sep + q).replace("  ", " ") for q in questions]
        ok = [
            len(p) > 0 and p[0] == " " and (plan.normalize is None or plan.normalize(p)[:1] == " ") for p in parts
        ]
        encoded = iter(content_ids(self.tokenizer, [p for p, k in zip(parts, ok) if k]))
        return [next(encoded) if k else None for k in ok]

    def contextualize(self, doc_dicts: Sequence[dict], questions: Sequence[str], *, prefix: str | None,
                      title_sep: str, doc_sep: str, max_length: int, return_tensors: str | None = None,
                      doc_ids: np.ndarray | None = None, passage_tokens: Any = None) -> tuple[Any, Any] | None:
        """(input_ids, attention_mask) as the tokenizer's call would give them; None when the fast path does not apply.

        ``passage_tokens`` + ``doc_ids`` (bs, n_docs): read the passages' ids from that store when it was built
        for this tokenizer, ``prefix`` and ``title_sep`` (``PassageTokens.serves``).
        """
        plan = self.plan
        if plan is None or max_length < len(plan.head) + len(plan.tail) + 1:
            return None
        prefix = prefix or ""
        keys, question_of = [], []
        for q, (docs, _) in enumerate(zip(doc_dicts, questions, strict=True)):
            for title, text in zip(docs["title"], docs["text"], strict=True):
                keys.append((prefix, title_sep, title, text))
                question_of.append(q)
        if (passage_tokens is not None and doc_ids is not None and np.size(doc_ids) == len(keys)
                and passage_tokens.serves(plan.fingerprint, prefix, title_sep)):
            passage_ids = passage_tokens.lookup(np.asarray(doc_ids).reshape(-1))
            self.stored += len(keys)
        else:
            passage_ids = self._passage_ids(keys)
        question_ids = self._question_ids(questions, doc_sep)
        n = len(keys)
        input_ids = np.full((n, max_length), plan.pad_id, dtype=np.int64)
        mask = np.zeros((n, max_length), dtype=np.int64)
        head, tail = np.asarray(plan.head, np.int64), np.asarray(plan.tail, np.int64)
        room = max_length - len(head) - len(tail)
        slow = []
        for i, (a, q) in enumerate(zip(passage_ids, question_of)):
            b = question_ids[q]
            if a is None or b is None:
                slow.append(i)
                continue
            la = min(len(a), room)  # truncation keeps the first ``room`` content ids
            lb = min(len(b), room - la)
            length = len(head) + la + lb + len(tail)
            start = max_length - length if plan.pad_left else 0
            row = input_ids[i]
            end = start + len(head)
            row[start:end] = head
            row[end : end + la] = a[:la]
            end += la
            row[end : end + lb] = b[:lb]
            row[end + lb : start + length] = tail
            mask[i, start : start + length] = 1
        if slow:
            self.fallbacks += len(slow)
            strings = [
                combine(keys[i][2], keys[i][3], questions[question_of[i]], prefix, title_sep, doc_sep) for i in slow
            ]
            encoded = self.tokenizer(strings, max_length=max_length, padding="max_length", truncation=True)
            input_ids[slow] = np.asarray(encoded["input_ids"], dtype=np.int64)
            mask[slow] = np.asarray(encoded["attention_mask"], dtype=np.int64)
        if return_tensors is None:
            return input_ids.tolist(), mask.tolist()
        if return_tensors == "pt":
            import torch

            return torch.from_numpy(input_ids), torch.from_numpy(mask)
        return input_ids, mask
