"""ServerSettings: request limits, dynamic batching and timeouts of the server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    """Limits are checked per request (422 past them); batching groups requests with equal options.

    max_batch_size: questions per model call (1 disables batching); max_wait_ms: how long the first
    request of a batch waits for others. request_timeout_s: past it a request gets 504.
    """

    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    max_questions: int = 16
    max_question_chars: int = 1000
    max_n_docs: int = 20
    max_num_beams: int = 8
    max_new_tokens: int = 128
    request_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_questions", "max_question_chars", "max_n_docs", "max_num_beams",
                     "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and request_timeout_s > 0.")
