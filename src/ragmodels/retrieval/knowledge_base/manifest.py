"""The manifest of a knowledge base: what built it and what its files must be.

``manifest.json`` records the encoder (name/path, pooling), the vector dimension and metric, the index
kind and its parameters, the passage count, the format version and, for every file of the knowledge
base, its size, a cheap checksum (SHA-256 of its first and last MiB) and its full SHA-256. ``verify``
compares the files on disk with it: sizes and cheap checksums always, full checksums on request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragmodels._io import atomic_write_bytes

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PASSAGES_DIR = "passages"
INDEX_NAME = "index.faiss"
_EDGE = 1 << 20  # bytes hashed at each end of a file by the cheap checksum


class ManifestError(ValueError):
    """The manifest is missing, unreadable, of another format version, or does not match the files."""


@dataclass(frozen=True)
class FileRecord:
    size: int
    edge_sha256: str
    sha256: str


@dataclass
class Manifest:
    encoder: str | None  # name or path of the context encoder; None when unknown (imports)
    pooling: str | None
    dimension: int
    metric: str  # "inner_product" or "l2"
    index_kind: str
    index_params: dict
    passage_count: int
    files: dict[str, FileRecord] = field(default_factory=dict)  # relative path -> record
    format_version: int = FORMAT_VERSION
    next_id: int = 0  # the stable "id" the next added passage gets

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        data["files"] = {k: FileRecord(**v) for k, v in data.get("files", {}).items()}
        return cls(**data)


def record_files(root: Path, relative_paths: list[str]) -> dict[str, FileRecord]:
    """Size and checksums of each file under ``root``."""
    return {rel: FileRecord(size=(root / rel).stat().st_size, edge_sha256=edge_sha256(root / rel),
                            sha256=full_sha256(root / rel)) for rel in sorted(relative_paths)}


def write_manifest(root: Path, manifest: Manifest) -> None:
    atomic_write_bytes(root / MANIFEST_NAME, manifest.to_json().encode())


def read_manifest(root: Path) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{root} is not a knowledge base: {MANIFEST_NAME} is missing.")
    try:
        manifest = Manifest.from_json(path.read_text())
    except (ValueError, TypeError) as err:
        raise ManifestError(f"{path} is not a valid knowledge-base manifest ({err}).") from None
    if manifest.format_version != FORMAT_VERSION:
        raise ManifestError(
            f"{path} has format version {manifest.format_version}; this ragmodels reads version {FORMAT_VERSION}."
        )
    return manifest


def verify(root: Path, manifest: Manifest, full: bool = False) -> None:
    """Raise ManifestError unless every file exists with the recorded size and checksums."""
    for rel, rec in manifest.files.items():
        path = Path(root) / rel
        if not path.is_file():
            raise ManifestError(f"{path} is listed in the manifest but missing.")
        size = path.stat().st_size
        if size != rec.size:
            raise ManifestError(f"{path} has {size} bytes, the manifest says {rec.size} (truncated or replaced?).")
        if edge_sha256(path) != rec.edge_sha256 or (full and full_sha256(path) != rec.sha256):
            raise ManifestError(f"{path} does not match the checksum in the manifest (corrupted or replaced?).")


def edge_sha256(path: Path) -> str:
    """SHA-256 of the first and last MiB: a cheap check that catches most corruptions and swaps."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE))
        size = f.seek(0, 2)
        if size > _EDGE:
            f.seek(max(_EDGE, size - _EDGE))
            digest.update(f.read(_EDGE))
    return digest.hexdigest()


def full_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
