"""The chatbot: multinomial naive Bayes intent classifier, temperature-calibrated confidence."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from mlobs.drift import Baseline
from mlobs.model import Prediction
from services.chatbot.corpus import REPLIES

NAME = "chatbot"
FALLBACK = "fallback"
# Below this calibrated confidence the bot does not guess: it answers `fallback` and hands off.
FALLBACK_BELOW = 0.5
MAX_MESSAGE_CHARS = 2000
ARTIFACTS = Path(__file__).parent / "artifacts"
MODEL_FILE = ARTIFACTS / "model.json"
BASELINE_FILE = ARTIFACTS / "baseline.json"
_TOKEN = re.compile(r"[a-z0-9']+")
NGRAM_SIZES = (3, 4, 5)


class ChatRequest(BaseModel):
    """The /predict body."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"message": "where is my order"}]}
    )

    message: Annotated[
        str,
        StringConstraints(strict=True, min_length=1, max_length=MAX_MESSAGE_CHARS),
        Field(description="The customer's message; must contain a non-space character"),
    ]

    @field_validator("message")
    @classmethod
    def _not_blank(cls, message: str) -> str:
        if message.isspace():
            raise ValueError("must contain a non-space character")
        return message


def words_of(text: str) -> list[str]:
    """Lower-case word tokens."""
    return _TOKEN.findall(text.lower())


def _char_ngrams(words: list[str]) -> list[str]:
    return [
        padded[i : i + n]
        for padded in (f" {w} " for w in words)
        for n in NGRAM_SIZES
        for i in range(len(padded) - n + 1)
    ]


def tokenize(text: str) -> list[str]:
    """Lower-case words, then the character 3- to 5-grams of each word padded with spaces.

    With 20-odd examples per intent, whole words rarely repeat between training and new messages;
    character n-grams match 'refunded' to 'refund' and 'shipping' to 'shipped' (about 85 % held-out
    accuracy against 60 % for words and word bigrams on this corpus).
    """
    words = words_of(text)
    return words + _char_ngrams(words)


def message_features(text: str, vocabulary: dict[str, int]) -> dict[str, float]:
    """Derived, non-identifying features of a message: logged and counted for drift."""
    words = words_of(text)
    unknown = sum(1 for w in words if w not in vocabulary)
    return {
        "length": float(len(text)),
        "tokens": float(len(words)),
        "oov_share": unknown / len(words) if words else 1.0,
    }


@dataclass(frozen=True)
class ClassifierParams:
    """What training produces; serialised to artifacts/model.json."""

    version: str
    intents: tuple[str, ...]
    vocabulary: tuple[str, ...]
    log_prior: tuple[float, ...]
    log_likelihood: tuple[tuple[float, ...], ...]  # intents x vocabulary
    temperature: float  # divides log-posteriors; fitted on cross-validated predictions
    held_out_accuracy: float

    def to_json(self) -> str:
        data = {"model": NAME, **self.__dict__}
        data["log_likelihood"] = [list(row) for row in self.log_likelihood]
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClassifierParams:
        data = json.loads(text)
        data.pop("model")
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
            | {"log_likelihood": tuple(tuple(r) for r in data["log_likelihood"])}
        )


class NaiveBayes:
    """Multinomial naive Bayes over token counts; numpy only."""

    def __init__(self, params: ClassifierParams) -> None:
        self.params = params
        self.index = {token: i for i, token in enumerate(params.vocabulary)}
        self._log_prior = np.asarray(params.log_prior)
        self._log_likelihood = np.asarray(params.log_likelihood)

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        labels: Iterable[str],
        intents: tuple[str, ...],
        alpha: float = 0.3,
        temperature: float = 1.0,
        version: str = "0",
        held_out_accuracy: float = float("nan"),
    ) -> NaiveBayes:
        """Fit counts with additive smoothing `alpha`."""
        texts, labels = list(texts), list(labels)
        vocabulary = tuple(sorted({t for text in texts for t in tokenize(text)}))
        index = {t: i for i, t in enumerate(vocabulary)}
        counts = np.zeros((len(intents), len(vocabulary)))
        for text, label in zip(texts, labels, strict=True):
            for token in tokenize(text):
                counts[intents.index(label), index[token]] += 1
        prior = np.array([labels.count(i) for i in intents], float) / len(labels)
        smoothed = counts + alpha
        likelihood = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))
        return cls(
            ClassifierParams(
                version=version,
                intents=intents,
                vocabulary=vocabulary,
                log_prior=tuple(np.log(prior).tolist()),
                log_likelihood=tuple(tuple(row) for row in likelihood.tolist()),
                temperature=temperature,
                held_out_accuracy=held_out_accuracy,
            )
        )

    def log_posterior(self, text: str) -> np.ndarray:
        """Unnormalised log-posterior per intent; unknown tokens are ignored.

        Character n-grams only refine messages with at least one known word: on gibberish they
        find spurious matches ('kaplink' shares 'ink' with 'link') and the product over many
        n-grams turns them into confident nonsense. Without a known word, only the prior speaks.
        """
        words = words_of(text)
        if not any(w in self.index for w in words):
            return self._log_prior.copy()
        hits = [self.index[t] for t in words + _char_ngrams(words) if t in self.index]
        return self._log_prior + self._log_likelihood[:, hits].sum(axis=1)

    def probabilities(self, text: str, temperature: float | None = None) -> np.ndarray:
        logits = self.log_posterior(text) / (temperature or self.params.temperature)
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()


class Chatbot:
    """Serves the classifier through the mlobs ServedModel protocol."""

    name = NAME
    input_model = ChatRequest
    # predict takes about 0.1 ms: handing it to a thread would cost more than it does
    # (benchmarks/instructions.py: 0.66 x bare's work per request in a thread, 0.87 inline).
    inline_predict = True

    def __init__(self, params: ClassifierParams, baseline: Baseline | None = None) -> None:
        self.classifier = NaiveBayes(params)
        self.version = params.version
        self.labels = (*params.intents, FALLBACK)
        self.baseline = baseline

    @classmethod
    def load(cls, model_file: Path = MODEL_FILE, baseline_file: Path = BASELINE_FILE) -> Chatbot:
        """Load the committed artifacts; a missing one names the command that builds it."""
        for path in (model_file, baseline_file):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: run `python -m services.chatbot.train`"
                )
        return cls(ClassifierParams.from_json(model_file.read_text()), Baseline.load(baseline_file))

    def input_schema(self) -> dict[str, Any]:
        return {"message": {"type": "string", "min_length": 1, "max_length": MAX_MESSAGE_CHARS}}

    def example_input(self) -> BaseModel:
        return ChatRequest(message="where is my order")

    def classify(self, text: str) -> tuple[str, float]:
        """The intent (or `fallback` below the confidence line) and the calibrated confidence."""
        probabilities = self.classifier.probabilities(text)
        best = int(np.argmax(probabilities))
        confidence = float(probabilities[best])
        label = self.classifier.params.intents[best] if confidence >= FALLBACK_BELOW else FALLBACK
        return label, confidence

    def predict(self, payload: BaseModel) -> Prediction:
        text = payload.message  # type: ignore[attr-defined]
        label, confidence = self.classify(text)
        return Prediction(
            label=label,
            confidence=round(confidence, 6),
            features=message_features(text, self.classifier.index),
            extra={"reply": REPLIES[label]},
        )
