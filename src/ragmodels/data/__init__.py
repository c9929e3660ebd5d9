"""Data: JSONL readers with line-numbered errors and the shipped GeoQA benchmark."""

from .geo_qa import GeoQA, build_geo_qa, write_geo_qa
from .jsonl import JsonlFormatError, JsonlResult, LineError, read_jsonl, read_qa_jsonl, validate_qa_record, write_jsonl

__all__ = [
    "GeoQA", "JsonlFormatError", "JsonlResult", "LineError", "build_geo_qa", "read_jsonl", "read_qa_jsonl",
    "validate_qa_record", "write_geo_qa", "write_jsonl",
]
