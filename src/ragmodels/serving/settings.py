"""ServerSettings: request limits, dynamic batching, backpressure, timeouts and access of the server."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragmodels.questions import MAX_QUESTION_CHARS


@dataclass(frozen=True)
class ServerSettings:
    """Limits are checked per request (413/422 past them); batching groups requests with equal options.

    max_batch_size: questions per model call (1 disables batching); max_wait_ms: how long the first
    request of a batch waits for others. request_timeout_s: past it a request gets 504.
    max_body_bytes: largest request body (413 past it); drain_bytes: how much more of a too-large body is
    read and thrown away before the 413 goes out, so that a client still sending reads the answer instead
    of a connection reset. max_in_flight: questions admitted at once (queued or being answered); past it
    503 with Retry-After, instead of an ever longer queue. token: when set, ``POST /v1/answer`` and
    ``/readyz`` need ``Authorization: Bearer <token>`` (``/healthz`` and the page stay open).
    max_question_chars can only be lowered below the CLI's own limit (ragmodels.questions).
    """

    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    max_questions: int = 16
    max_question_chars: int = MAX_QUESTION_CHARS
    max_n_docs: int = 20
    max_num_beams: int = 8
    max_new_tokens: int = 128
    request_timeout_s: float = 60.0
    max_body_bytes: int = 2**20
    drain_bytes: int = 128 * 2**20
    max_in_flight: int = 32
    retry_after_s: int = 1
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_questions", "max_question_chars", "max_n_docs", "max_num_beams",
                     "max_new_tokens", "max_body_bytes", "max_in_flight", "retry_after_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_question_chars > MAX_QUESTION_CHARS:
            raise ValueError(f"max_question_chars must be at most {MAX_QUESTION_CHARS} (the pipeline's limit), "
                             f"got {self.max_question_chars}.")
        if self.max_questions > self.max_in_flight:
            raise ValueError(f"max_questions ({self.max_questions}) exceeds max_in_flight ({self.max_in_flight}): "
                             "such a request could never be admitted.")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0 or self.drain_bytes < 0:
            raise ValueError("max_wait_ms and drain_bytes must be >= 0 and request_timeout_s > 0.")
        if self.token is not None and not self.token.strip():
            raise ValueError("token is empty; give a non-empty token or none.")
