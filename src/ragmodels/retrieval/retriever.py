"""RagRetriever: question vectors -> top-k passages -> tokenized generator inputs.

Same constructor, ``from_pretrained`` / ``save_pretrained`` files and ``__call__`` output as
``transformers.RagRetriever``; the work per batch is one FAISS search, one Arrow take and one
generator-tokenizer call (the reference searches in chunks of 8 and reads passages row by row).
Knowledge bases (``config.index_name``):
  - "custom": a ``datasets.Dataset`` with a FAISS index on "embeddings" (in memory), or
    ``passages_path`` (a ``save_to_disk`` folder) + ``index_path`` (a FAISS file);
  - "exact" / "compressed": wiki_dpr through ``datasets`` (``hub.py``);
  - "legacy": DPR's files (``legacy.py``), read without unpickling.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from transformers import BatchEncoding, PreTrainedTokenizerBase

from .._io import staged_dir
from ..config import RagConfig
from ..tokenization import RagTokenizer
from . import hub
from .contextualize import ContextCache, contextualize, decode_questions, tokenize_docs, vocab_size
from .index import FaissIndex, refine_factor, require_complete
from .legacy import LegacyIndex
from .passage_tokens import PassageTokens, build_passage_tokens, find_passage_tokens
from .passages import PassageStore

logger = logging.getLogger(__name__)

INDEX_FILENAME = "hf_dataset_index.faiss"  # file names of a saved custom index, as the reference
PASSAGES_DIRNAME = "hf_dataset"
_KB_LAYOUTS = ((PASSAGES_DIRNAME, INDEX_FILENAME), ("passages", "index.faiss"))  # retriever folder, KB folder


class IndexedPassages:
    """A FAISS index over a passage store, FAISS id i = passage row i (custom and wiki_dpr indexes).

    The index may be loaded later (``init_index``): ``index_loader`` is called once, on first need.
    """

    def __init__(self, passages: PassageStore, index: FaissIndex | None = None,
                 index_loader: Callable[[], FaissIndex] | None = None):
        if index is None and index_loader is None:
            raise ValueError("Give the FAISS index of the passages, or how to load it.")
        self.passages = passages
        self.index = index
        self._index_loader = index_loader

    @classmethod
    def from_dataset(cls, dataset, index_path: str | os.PathLike | None = None) -> "IndexedPassages":
        """A ``datasets.Dataset`` with its FAISS index attached on "embeddings" (or saved at ``index_path``)."""
        passages = PassageStore.from_dataset(dataset)
        if "embeddings" in dataset.list_indexes():
            return cls(passages, FaissIndex(dataset.get_index("embeddings").faiss_index))
        if index_path is None:
            raise ValueError(
                "Missing faiss index in the dataset. Make sure you called `dataset.add_faiss_index('embeddings', ...)` "
                "or `dataset.load_faiss_index('embeddings', file)`, or give index_path."
            )
        return cls(passages, index_loader=lambda: FaissIndex.read(index_path))

    @classmethod
    def load(cls, passages_path: str | os.PathLike | None, index_path: str | os.PathLike | None) -> "IndexedPassages":
        """Passages folder (``save_to_disk``) now; the index file (memory-mapped) on ``init_index``."""
        if passages_path is None or index_path is None:
            raise ValueError(
                "A custom index needs passages_path and index_path: save the passages with "
                "dataset.save_to_disk(passages_path) and the index with dataset.get_index('embeddings').save(index_path)."
            )
        if not Path(index_path).is_file():
            raise ValueError(f"No FAISS index file at index_path={index_path}; point index_path at the saved index.")
        passages = PassageStore.load(passages_path)
        return cls(passages, index_loader=lambda: _read_index(index_path))

    def is_initialized(self) -> bool:
        return self.index is not None

    def init_index(self) -> None:
        if self.index is None:
            self.index = self._index_loader()
            if self.index.ntotal != len(self.passages):
                raise ValueError(
                    f"The index {self.index.path} holds {self.index.ntotal} vectors but the passages at "
                    f"{self.passages.source} are {len(self.passages)}; they do not belong together."
                )
        if getattr(self.index, "refine_vectors", True) is None:
            self.index.refine_vectors = self.passages.embeddings  # exact re-ranking reads the passages' vectors

    @property
    def dimension(self) -> int:
        return self.index.dimension if self.index is not None else self.passages.dimension

    def __len__(self) -> int:
        return len(self.passages)

    def retrieve(self, question_hidden_states: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """(bs, d) -> embeddings float32 (bs, n, d) from the passages, ids int64 (bs, n), doc_dicts."""
        _, ids = self.index.search(question_hidden_states, n_docs)  # (bs, n)
        doc_dicts, embeds = self.passages.lookup(require_complete(ids))  # one take; embeds (bs, n, d)
        for doc_dict, doc_embeds in zip(doc_dicts, embeds):
            doc_dict["embeddings"] = doc_embeds  # as the reference's numpy-formatted rows
        return embeds, ids, doc_dicts

    def get_doc_dicts(self, doc_ids: np.ndarray) -> list[dict]:
        return self.passages.fetch(doc_ids)


class RagRetriever:
    """Retriever of a RAG model; see the module docstring for the knowledge bases it reads."""

    def __init__(self, config: RagConfig, question_encoder_tokenizer: PreTrainedTokenizerBase,
                 generator_tokenizer: PreTrainedTokenizerBase, index: Any = None, init_retrieval: bool = True):
        self.config = config
        self.question_encoder_tokenizer = question_encoder_tokenizer
        self.generator_tokenizer = generator_tokenizer
        self.n_docs = config.n_docs
        self.batch_size = config.retrieval_batch_size  # kept for API parity; search is never chunked
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
            return IndexedPassages.load(config.passages_path, config.index_path)
        return IndexedPassages(hub.load_passages(config), index_loader=lambda: hub.load_index(config))

    @classmethod
    def from_pretrained(cls, retriever_name_or_path: str | os.PathLike, indexed_dataset=None,
                        **kwargs: Any) -> "RagRetriever":
        """Load config + tokenizers from a folder or Hub id; ``kwargs`` override config fields."""
        config = kwargs.pop("config", None) or RagConfig.from_pretrained(retriever_name_or_path, **kwargs)
        rag_tokenizer = RagTokenizer.from_pretrained(retriever_name_or_path, config=config)
        if indexed_dataset is not None:
            config.index_name = "custom"
            index = IndexedPassages.from_dataset(indexed_dataset)
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
        with ``.index`` and ``.passages`` (a built knowledge base), a ``LegacyIndex`` / ``IndexedPassages``,
        or a folder holding passages + index (a saved retriever's or a knowledge base's layout).
        """
        new_index = self._knowledge_base(index_or_dataset_or_path, passages)
        new_index.init_index()
        self.index = new_index
        self.config.index_name = "legacy" if isinstance(new_index, LegacyIndex) else "custom"
        self.config.passages_path, self.config.index_path = _paths_of(new_index)

    def retrieve(self, question_hidden_states: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """Top ``n_docs`` passages of each question vector, one search for the whole batch.

        Returns retrieved_doc_embeds float32 (bs, n_docs, d), doc_ids int64 (bs, n_docs), doc_dicts.
        """
        question_hidden_states = self._check_query(question_hidden_states, n_docs)  # (bs, d)
        return self.index.retrieve(question_hidden_states, n_docs)

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
        empty = [i for i, q in enumerate(questions) if not q.strip()]
        if empty:
            raise ValueError(f"Questions {empty} are empty after decoding their input ids; give non-empty questions.")
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
        if not self.index.is_initialized():
            raise ValueError("The retriever's index is not loaded yet; call retriever.init_retrieval() first.")
        if hasattr(question_hidden_states, "detach"):  # a torch tensor
            question_hidden_states = question_hidden_states.detach().cpu().float().numpy()
        queries = np.ascontiguousarray(question_hidden_states, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[0] == 0:
            raise ValueError(f"question_hidden_states must be a non-empty (batch, dim) array, got shape {queries.shape}.")
        if queries.shape[1] != self.index.dimension:
            raise ValueError(
                f"retrieval_vector_size {queries.shape[1]} does not match the index dimension {self.index.dimension}: "
                f"the question vectors are {queries.shape[1]}-d but the knowledge base holds {self.index.dimension}-d "
                "passage embeddings. Use the question encoder the index was built for, or rebuild the index."
            )
        if not 1 <= n_docs <= len(self.index):
            raise ValueError(f"n_docs={n_docs} must be between 1 and the number of passages ({len(self.index)}).")
        return queries


def _as_knowledge_base(obj: Any, passages: PassageStore | None = None):
    """Normalize what ``index=`` / ``set_index`` accept into an IndexedPassages or LegacyIndex."""
    if isinstance(obj, (IndexedPassages, LegacyIndex)):
        return obj
    if _is_dataset(obj):
        return IndexedPassages.from_dataset(obj)
    if isinstance(obj, FaissIndex):
        if passages is None:
            raise ValueError("A FaissIndex needs its PassageStore: set_index(index, passages).")
        return IndexedPassages(passages, obj)
    if hasattr(obj, "index") and hasattr(obj, "passages"):  # a built knowledge base
        return IndexedPassages(obj.passages, obj.index)
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


def _is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a ``datasets.Dataset``, without importing ``datasets`` (0.5 s) when it can't be one."""
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.Dataset)


def _read_index(index_path: str | os.PathLike) -> FaissIndex:
    """A FAISS file, memory-mapped; the ``index.faiss`` of a knowledge-base folder gets its manifest's exact
    re-ranking factor (``refine``; ivf_pq knowledge bases re-rank by default), as ``KnowledgeBase.load`` does."""
    index = FaissIndex.read(index_path)
    manifest = Path(index_path).parent / "manifest.json"
    if Path(index_path).name == "index.faiss" and manifest.is_file():
        try:
            params = json.loads(manifest.read_text()).get("index_params") or {}
        except (OSError, ValueError, AttributeError):
            params = {}
        index.set_refine(refine_factor(index.kind, params))
    return index


def _paths_of(kb) -> tuple[str | None, str | None]:
    """(passages_path, index_path) for the config, None for parts that live only in memory."""
    if isinstance(kb, LegacyIndex):
        return None, str(kb.folder)
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
