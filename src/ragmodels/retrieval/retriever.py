"""RagRetriever: question vectors -> top-k passages -> tokenized generator inputs.

Same constructor, ``from_pretrained`` / ``save_pretrained`` files and ``__call__`` output as
``transformers.RagRetriever``; the work per batch is one FAISS search, one Arrow take and one
generator-tokenizer call (the reference searches in chunks of 8 and reads passages row by row).
Knowledge bases (``config.index_name``):
  - "custom": a ``datasets.Dataset`` with a FAISS index on "embeddings" (in memory), or
    ``passages_path`` (a ``save_to_disk`` folder) + ``index_path`` (a FAISS file) (``hf_index.py``);
  - "exact" / "compressed": wiki_dpr through ``datasets`` (``hub.py``);
  - "legacy": DPR's files (``legacy.py``), read without unpickling.
``index=`` also takes any object with the reference's index API (``get_top_docs``, ``get_doc_dicts``).
Search runs in chunks of ``config.retrieval_batch_size`` (one ``index.get_top_docs`` per chunk, as the
reference) when it is not the default 8, and always for indexes of the reference's API; our own kinds at
the default search the whole batch at once (same results: chunking only bounds memory).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from transformers import BatchEncoding, PreTrainedTokenizerBase

from .._io import staged_dir
from ..config import RagConfig
from ..tokenization import RagTokenizer
from .contextualize import ContextCache, contextualize, decode_questions, tokenize_docs, vocab_size
from .hf_index import CustomHFIndex, IndexedPassages, is_dataset
from .hub import CanonicalHFIndex
from .index import FaissIndex
from .legacy import LegacyIndex
from .passage_tokens import PassageTokens, build_passage_tokens, find_passage_tokens
from .passages import PassageStore
from .protocol import KnowledgeBaseIndex

logger = logging.getLogger(__name__)

INDEX_FILENAME = "hf_dataset_index.faiss"  # file names of a saved custom index, as the reference
PASSAGES_DIRNAME = "hf_dataset"
_KB_LAYOUTS = ((PASSAGES_DIRNAME, INDEX_FILENAME), ("passages", "index.faiss"))  # retriever folder, KB folder
DEFAULT_RETRIEVAL_BATCH_SIZE = 8  # the reference's default, in every saved config: search the batch at once


class RagRetriever:
    """Retriever of a RAG model; see the module docstring for the knowledge bases it reads."""

    def __init__(self, config: RagConfig, question_encoder_tokenizer: PreTrainedTokenizerBase,
                 generator_tokenizer: PreTrainedTokenizerBase, index: Any = None, init_retrieval: bool = True):
        self.config = config
        self.question_encoder_tokenizer = question_encoder_tokenizer
        self.generator_tokenizer = generator_tokenizer
        self.n_docs = config.n_docs
        self.batch_size = config.retrieval_batch_size  # questions per index search (see ``retrieve``)
        self.ctx_encoder_tokenizer: PreTrainedTokenizerBase | None = None
        self.return_tokenized_docs = False
        self._context_cache: ContextCache | None = None
        self._token_stores: dict[tuple, PassageTokens | None] = {}  # (fingerprint, prefix, title_sep) -> store
        self._token_stores_of: Any = None  # the passages those stores belong to
        self.index = self._build_index(config) if index is None else self._knowledge_base(index)
        self._init_retrieval = init_retrieval
        if init_retrieval:
            self.init_retrieval()

    @staticmethod
    def _build_index(config: RagConfig):
        """The knowledge base named by ``config.index_name`` (its FAISS index is read on ``init_retrieval``)."""
        if config.index_name == "legacy":
            if config.index_path is None:
                raise ValueError(
                    "index_name='legacy' needs index_path: a local folder with DPR's index files and passages "
                    "(see ragmodels.retrieval.legacy)."
                )
            return LegacyIndex(config.retrieval_vector_size, config.index_path)
        if config.index_name == "custom":
            return CustomHFIndex.load_from_disk(config.retrieval_vector_size, config.passages_path, config.index_path)
        return CanonicalHFIndex.from_config(config)

    @classmethod
    def from_pretrained(cls, retriever_name_or_path: str | os.PathLike, indexed_dataset=None,
                        **kwargs: Any) -> "RagRetriever":
        """Load config + tokenizers from a folder or Hub id; ``kwargs`` override config fields."""
        config = kwargs.pop("config", None) or RagConfig.from_pretrained(retriever_name_or_path, **kwargs)
        rag_tokenizer = RagTokenizer.from_pretrained(retriever_name_or_path, config=config)
        if indexed_dataset is not None:
            config.index_name = "custom"
            index = CustomHFIndex(config.retrieval_vector_size, indexed_dataset)
        else:
            _relocate_custom_paths(config, Path(retriever_name_or_path))
            index = cls._build_index(config)
        return cls(config, question_encoder_tokenizer=rag_tokenizer.question_encoder,
                   generator_tokenizer=rag_tokenizer.generator, index=index)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write config and both tokenizers; an in-memory custom index also writes its passages and index.

        Files and config paths are those of the reference (``hf_dataset/``, ``hf_dataset_index.faiss``),
        written through a staging folder so a failed save leaves earlier files intact.
        """
        config = copy.deepcopy(self.config)
        save_directory = Path(save_directory).absolute()
        writes_kb = isinstance(self.index, IndexedPassages) and config.index_name == "custom"
        with staged_dir(save_directory) as tmp:
            if writes_kb and config.index_path is None:
                self.index.init_index()
                self.index.index.save(tmp / INDEX_FILENAME)
                config.index_path = str(save_directory / INDEX_FILENAME)
            if writes_kb and config.passages_path is None:
                self.index.passages.save(tmp / PASSAGES_DIRNAME)
                config.passages_path = str(save_directory / PASSAGES_DIRNAME)
            config.save_pretrained(tmp)
            RagTokenizer(self.question_encoder_tokenizer, self.generator_tokenizer).save_pretrained(tmp)
        if writes_kb:  # the live knowledge base is now also on disk, where the config points
            self.index.index.path = config.index_path
        self.config.index_path, self.config.passages_path = config.index_path, config.passages_path

    def _knowledge_base(self, obj: Any, passages: PassageStore | None = None):
        """What ``index=`` / ``set_index`` accept, as a knowledge base (subclasses serve other kinds)."""
        return _as_knowledge_base(obj, passages)

    def init_retrieval(self) -> None:
        """Load the FAISS index (memory-mapped where FAISS allows)."""
        logger.info("initializing retrieval")
        self.index.init_index()

    def set_index(self, index_or_dataset_or_path: Any, passages: PassageStore | None = None) -> None:
        """Swap the knowledge base of a live retriever.

        Accepts a ``datasets.Dataset`` with a FAISS index, a ``FaissIndex`` with its ``passages``, an object
        with ``.index`` and ``.passages`` (a built knowledge base), an index object (``CustomHFIndex``,
        ``CanonicalHFIndex``, ``LegacyIndex``, or any with ``get_top_docs`` / ``get_doc_dicts``), or a folder
        holding passages + index (a saved retriever's or a knowledge base's layout).
        """
        new_index = self._knowledge_base(index_or_dataset_or_path, passages)
        new_index.init_index()
        self.index = new_index
        self.config.index_name = "legacy" if isinstance(new_index, LegacyIndex) else "custom"
        self.config.passages_path, self.config.index_path = _paths_of(new_index)

    def retrieve(self, question_hidden_states: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """Top ``n_docs`` passages of each question vector.

        Our knowledge bases at the default ``retrieval_batch_size`` (8) search the whole batch at once; otherwise
        the batch is searched in chunks of ``retrieval_batch_size``, one ``index.get_top_docs`` call each (as the
        reference). Both give the same results. Returns retrieved_doc_embeds float32 (bs, n_docs, d), doc_ids
        int64 (bs, n_docs), doc_dicts.
        """
        question_hidden_states = self._check_query(question_hidden_states, n_docs)  # (bs, d)
        if self.batch_size == DEFAULT_RETRIEVAL_BATCH_SIZE and isinstance(self.index, KnowledgeBaseIndex):
            return self.index.retrieve(question_hidden_states, n_docs)
        chunks = [self.index.get_top_docs(question_hidden_states[start : start + self.batch_size], n_docs)
                  for start in range(0, len(question_hidden_states), self.batch_size)]
        doc_ids = np.concatenate([np.asarray(ids, dtype=np.int64) for ids, _ in chunks])  # (bs, n_docs)
        embeds = np.concatenate([np.asarray(vectors, dtype=np.float32) for _, vectors in chunks])  # (bs, n_docs, d)
        return embeds, doc_ids, self.index.get_doc_dicts(doc_ids)

    @property
    def context_cache(self) -> ContextCache:
        """Passage token ids of the generator tokenizer, reused across calls (see ``contextualize``)."""
        cache = getattr(self, "_context_cache", None)
        if cache is None or cache.tokenizer is not self.generator_tokenizer or cache.vocab_size != vocab_size(cache.tokenizer):
            cache = self._context_cache = ContextCache(self.generator_tokenizer)  # new tokenizer, or tokens added
        return cache

    def passage_tokens(self, prefix: str | None = None) -> PassageTokens | None:
        """The on-disk token store (``passage_tokens.py``) serving this knowledge base, generator tokenizer,
        ``prefix`` and ``config.title_sep``, if one was built; looked up once per combination."""
        passages = getattr(self.index, "passages", None)
        if getattr(self, "_token_stores_of", None) is not passages:  # a new knowledge base: forget the old stores
            self._token_stores_of, self._token_stores = passages, {}
        key = (self.context_cache.fingerprint, prefix or "", self.config.title_sep)
        if key not in self._token_stores:
            self._token_stores[key] = find_passage_tokens(passages, *key)
        return self._token_stores[key]

    def build_passage_tokens(self, prefix: str | None = None, folder: str | os.PathLike | None = None) -> PassageTokens:
        """Tokenize every passage of the knowledge base once with the generator tokenizer and store the ids
        beside its passages folder (or in ``folder``), memory-mapped: later calls, in this process and in
        any other that opens the same knowledge base, tokenize no passage. Outputs are unchanged."""
        prefix = prefix if prefix is not None else getattr(self.config.generator, "prefix", None)
        passages = getattr(self.index, "passages", None)
        if not isinstance(passages, PassageStore):
            raise ValueError(
                f"A {type(self.index).__name__} knowledge base has no passages folder to store tokens beside."
            )
        store = build_passage_tokens(passages, self.generator_tokenizer, prefix=prefix,
                                     title_sep=self.config.title_sep, folder=folder)
        self._token_stores_of = passages
        self._token_stores = {(self.context_cache.fingerprint, prefix or "", self.config.title_sep): store}
        return store

    def set_ctx_encoder_tokenizer(self, ctx_encoder_tokenizer: PreTrainedTokenizerBase) -> None:
        """End-to-end training: also return the retrieved passages tokenized for the context encoder."""
        self.ctx_encoder_tokenizer = ctx_encoder_tokenizer
        self.return_tokenized_docs = True

    def __call__(self, question_input_ids: Any, question_hidden_states: np.ndarray, prefix: str | None = None,
                 n_docs: int | None = None, return_tensors: str | None = None) -> BatchEncoding:
        """Retrieve and build the generator inputs.

        Returns context_input_ids / context_attention_mask (bs * n_docs, max_combined_length),
        retrieved_doc_embeds (bs, n_docs, d), doc_ids (bs, n_docs) and, after
        ``set_ctx_encoder_tokenizer``, tokenized_doc_ids / tokenized_doc_attention_mask.
        """
        n_docs = n_docs if n_docs is not None else self.n_docs
        prefix = prefix if prefix is not None else getattr(self.config.generator, "prefix", None)
        retrieved_doc_embeds, doc_ids, docs = self.retrieve(question_hidden_states, n_docs)
        questions = decode_questions(question_input_ids, self.question_encoder_tokenizer)
        if len(questions) != len(doc_ids):
            raise ValueError(f"Got {len(questions)} questions' input ids but {len(doc_ids)} question vectors.")
        textless = [i for i, q in enumerate(questions) if not q.strip()]
        if textless:  # padding rows, ids of another tokenizer: the reference goes on, and so do we
            warnings.warn(
                f"The input ids of question rows {textless} decode to no text with the question encoder's tokenizer "
                "(only special or padding tokens); their passages were retrieved with their vectors and their "
                "generator inputs hold no question text. Check that input_ids come from the question encoder's "
                "tokenizer.",
                stacklevel=2,
            )
        context_input_ids, context_attention_mask = contextualize(
            docs, questions, self.generator_tokenizer, prefix=prefix, title_sep=self.config.title_sep,
            doc_sep=self.config.doc_sep, max_length=self.config.max_combined_length, return_tensors=return_tensors,
            cache=self.context_cache, doc_ids=doc_ids, passage_tokens=self.passage_tokens(prefix),
        )
        outputs = {
            "context_input_ids": context_input_ids,
            "context_attention_mask": context_attention_mask,
            "retrieved_doc_embeds": retrieved_doc_embeds,
            "doc_ids": doc_ids,
        }
        if self.return_tokenized_docs:
            outputs["tokenized_doc_ids"], outputs["tokenized_doc_attention_mask"] = tokenize_docs(
                docs, self.ctx_encoder_tokenizer, return_tensors=return_tensors
            )
        return BatchEncoding(outputs, tensor_type=return_tensors)

    def _check_query(self, question_hidden_states: Any, n_docs: int) -> np.ndarray:
        if hasattr(self.index, "is_initialized") and not self.index.is_initialized():
            raise ValueError("The retriever's index is not loaded yet; call retriever.init_retrieval() first.")
        if hasattr(question_hidden_states, "detach"):  # a torch tensor
            question_hidden_states = question_hidden_states.detach().cpu().float().numpy()
        queries = np.ascontiguousarray(question_hidden_states, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[0] == 0:
            raise ValueError(f"question_hidden_states must be a non-empty (batch, dim) array, got shape {queries.shape}.")
        dimension = getattr(self.index, "dimension", None) or getattr(self.index, "vector_size", None)
        if dimension is not None and queries.shape[1] != dimension:
            raise ValueError(
                f"retrieval_vector_size {queries.shape[1]} does not match the index dimension {dimension}: "
                f"the question vectors are {queries.shape[1]}-d but the knowledge base holds {dimension}-d "
                "passage embeddings. Use the question encoder the index was built for, or rebuild the index."
            )
        size = len(self.index) if hasattr(self.index, "__len__") else None
        if n_docs < 1 or (size is not None and n_docs > size):
            raise ValueError(f"n_docs={n_docs} must be between 1 and the number of passages ({size}).")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"retrieval_batch_size={self.batch_size!r} must be a positive number of questions per search.")
        return queries


def open_knowledge_base(index: str | os.PathLike | tuple[str, str] | Any) -> Any:
    """What ``RagRetriever(index=...)`` searches, from a knowledge-base folder (``ragmodels index build``:
    loaded with its manifest's checks), a saved retriever's folder, a (passages_path, index_path) pair, or
    anything ``set_index`` accepts. The one opener the pipeline, the default model and the CLI use."""
    from .knowledge_base import KnowledgeBase
    from .knowledge_base.manifest import MANIFEST_NAME

    if isinstance(index, tuple):
        return IndexedPassages.load(*index)
    if isinstance(index, (str, os.PathLike)) and (Path(index) / MANIFEST_NAME).is_file():
        return _as_knowledge_base(KnowledgeBase.load(index))
    return _as_knowledge_base(index)


def _as_knowledge_base(obj: Any, passages: PassageStore | None = None):
    """Normalize what ``index=`` / ``set_index`` accept into an index object (ours, or one of the reference's API)."""
    if isinstance(obj, (IndexedPassages, LegacyIndex)):
        return obj
    if is_dataset(obj):
        return CustomHFIndex(_dimension_of(obj), obj)
    if isinstance(obj, FaissIndex):
        if passages is None:
            raise ValueError("A FaissIndex needs its PassageStore: set_index(index, passages).")
        return IndexedPassages(passages, obj)
    if hasattr(obj, "index") and hasattr(obj, "passages"):  # a built knowledge base
        return IndexedPassages(obj.passages, obj.index)
    if callable(getattr(obj, "get_top_docs", None)) and callable(getattr(obj, "get_doc_dicts", None)):
        return obj  # an index of the reference's API (transformers' own, or a user's)
    if isinstance(obj, (str, os.PathLike)):
        folder = Path(obj)
        for passages_name, index_name in _KB_LAYOUTS:
            if (folder / passages_name).is_dir() and (folder / index_name).is_file():
                return IndexedPassages.load(folder / passages_name, folder / index_name)
        raise ValueError(
            f"{folder} holds no knowledge base: expected {PASSAGES_DIRNAME}/ + {INDEX_FILENAME} (a saved retriever) "
            "or passages/ + index.faiss (ragmodels index build)."
        )
    raise TypeError(f"Cannot use a {type(obj).__name__} as a knowledge base; see RagRetriever.set_index.")


def _dimension_of(dataset) -> int:
    """Size of a dataset's passage embeddings (0 when it has none: the passage store then says what is missing)."""
    if "embeddings" not in dataset.column_names or len(dataset) == 0:
        return 0
    return len(dataset.data.column("embeddings")[0])


def _paths_of(kb) -> tuple[str | None, str | None]:
    """(passages_path, index_path) for the config, None for parts that live only in memory."""
    if isinstance(kb, LegacyIndex):
        return None, str(kb.folder)
    if not isinstance(kb, IndexedPassages):
        return None, None
    source = kb.passages.source
    return (source if Path(source).is_dir() else None), kb.index.path


def _relocate_custom_paths(config: RagConfig, folder: Path) -> None:
    """A saved retriever folder that was moved: find its passages/index beside the config."""
    if config.index_name != "custom":
        return
    for attr, name in (("passages_path", PASSAGES_DIRNAME), ("index_path", INDEX_FILENAME)):
        path = getattr(config, attr)
        if (path is None or not Path(path).exists()) and (folder / name).exists():
            setattr(config, attr, str(folder / name))
