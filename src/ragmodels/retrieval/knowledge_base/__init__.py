"""Knowledge bases: build one from documents, load it, update it, import DPR's or the reference's.

    from ragmodels.retrieval.knowledge_base import KnowledgeBase, build_knowledge_base
    kb = build_knowledge_base(["docs.jsonl"], "my_kb", encoder="path/to/encoder", pooling="mean")
    kb = KnowledgeBase.load("my_kb")
"""

from .builder import build_knowledge_base
from .encoder import ContextEncoder
from .importers import import_dpr, import_saved_dataset
from .knowledge_base import KnowledgeBase
from .manifest import ManifestError
from .readers import DocumentError

__all__ = ["ContextEncoder", "DocumentError", "KnowledgeBase", "ManifestError", "build_knowledge_base",
           "import_dpr", "import_saved_dataset"]
