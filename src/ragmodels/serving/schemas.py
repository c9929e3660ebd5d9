"""Request and response bodies of ``POST /v1/answer``; the request's limits come from ServerSettings."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ragmodels.pipeline import DecodingOptions
from ragmodels.questions import question_problem

from .settings import ServerSettings

_DEFAULTS = DecodingOptions()


def request_model(settings: ServerSettings) -> type[BaseModel]:
    """The request body class for ``settings`` (its limits also appear in the OpenAPI schema)."""
    def checked(text: str) -> str:
        """The question without surrounding blanks, or ValueError saying in plain words why it is refused."""
        text = text.strip()
        problem = question_problem(text, settings.max_question_chars)
        if problem is not None:
            raise ValueError(problem)
        return text

    question = Annotated[str, AfterValidator(checked),
                         Field(max_length=settings.max_question_chars, description="a question (blanks stripped)")]

    class AnswerRequest(BaseModel):
        """Questions and decoding options; unknown fields are rejected."""

        model_config = ConfigDict(extra="forbid")

        questions: list[question] = Field(min_length=1, max_length=settings.max_questions)
        n_docs: int | None = Field(None, ge=1, le=settings.max_n_docs, description="passages per question (default: the model's n_docs)")
        num_beams: int = Field(_DEFAULTS.num_beams, ge=1, le=settings.max_num_beams)
        max_new_tokens: int = Field(_DEFAULTS.max_new_tokens, ge=1, le=settings.max_new_tokens)
        min_new_tokens: int = Field(_DEFAULTS.min_new_tokens, ge=0, le=settings.max_new_tokens)
        no_repeat_ngram_size: int = Field(_DEFAULTS.no_repeat_ngram_size, ge=0)
        decoding: Literal["thorough", "fast"] = Field(_DEFAULTS.decoding, description="RAG-Sequence only")
        copy_from_context: bool | None = Field(
            _DEFAULTS.copy_from_context,
            description="answers restricted to token spans of the retrieved passages (default: as the model says)")
        abstain: bool = Field(
            _DEFAULTS.abstain,
            description="answer null (abstained) when the evidence is weak, by the model's abstention rule; false: always answer")

        @model_validator(mode="after")
        def _lengths_agree(self) -> "AnswerRequest":
            if self.min_new_tokens > self.max_new_tokens:
                raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
            return self

        def options(self) -> DecodingOptions:
            return DecodingOptions(**self.model_dump(exclude={"questions"}))

    return AnswerRequest


class PassageOut(BaseModel):
    id: int = Field(description="row of the passage in the knowledge base")
    title: str
    text: str
    score: float = Field(description="document posterior p(z|x) = softmax of the inner products")
    inner_product: float = Field(description="<q, d>, the retrieval score")


class AnswerOut(BaseModel):
    question: str
    answer: str | None = Field(description="the answer; null when the model abstained (no answer in the knowledge base)")
    abstained: bool = Field(description="true: the evidence was too weak to answer from the knowledge base")
    confidence: float | None = Field(
        description="p(answerable) by the model's abstention rule; null when the model has none or abstain is false")
    score: float = Field(description="log p(answer | question) under the model (natural log), for the best candidate "
                                     "even when abstained")
    passages: list[PassageOut]


class AnswerResponse(BaseModel):
    answers: list[AnswerOut]
