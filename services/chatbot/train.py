"""Train the chatbot intent classifier; write its artifacts (`python -m services.chatbot.train`).

Deterministic from SEED. A stratified 20 % of each intent is held out for the accuracy reported in
the README; the temperature that calibrates confidence is chosen by cross-validation on the rest.
The drift baseline holds the derived features and predictions of the whole corpus.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from mlobs.drift import Baseline
from services.chatbot.corpus import INTENTS
from services.chatbot.model import (
    ARTIFACTS,
    Chatbot,
    NaiveBayes,
    message_features,
)

VERSION = "1.0.0"
SEED = 20261129
HELD_OUT_SHARE = 0.2
FOLDS = 5
TEMPERATURES = np.geomspace(0.1, 20.0, 400)

Examples = list[tuple[str, str]]


def split(seed: int = SEED) -> tuple[Examples, Examples]:
    """Stratified train / held-out split of the corpus."""
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for intent, texts in INTENTS.items():
        order = rng.permutation(len(texts))
        n_held = round(len(texts) * HELD_OUT_SHARE)
        held_out += [(texts[i], intent) for i in order[:n_held]]
        train += [(texts[i], intent) for i in order[n_held:]]
    return train, held_out


def fit_temperature(train: Examples, intents: tuple[str, ...], seed: int = SEED) -> float:
    """The temperature minimising the negative log-likelihood of out-of-fold predictions."""
    fold_of = np.random.default_rng(seed).permutation(len(train)) % FOLDS
    logits, truth = [], []
    for fold in range(FOLDS):
        fit_part = [ex for ex, f in zip(train, fold_of, strict=True) if f != fold]
        model = NaiveBayes.fit([t for t, _ in fit_part], [y for _, y in fit_part], intents)
        for (text, label), f in zip(train, fold_of, strict=True):
            if f == fold:
                logits.append(model.log_posterior(text))
                truth.append(intents.index(label))
    logits_arr, truth_arr = np.asarray(logits), np.asarray(truth)

    def nll(temperature: float) -> float:
        scaled = logits_arr / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_p = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(truth_arr)), truth_arr].mean())

    return float(min(TEMPERATURES, key=nll))


def accuracy(bot: Chatbot, examples: Examples) -> float:
    """Share answered with the right intent; a fallback answer counts as wrong."""
    return sum(bot.classify(text)[0] == label for text, label in examples) / len(examples)


def fit_chatbot(train_set: Examples, held_out: Examples, seed: int = SEED) -> Chatbot:
    """Fit the classifier and its temperature on `train_set`; score it on `held_out`."""
    intents = tuple(INTENTS)
    temperature = round(fit_temperature(train_set, intents, seed), 6)
    texts, labels = [t for t, _ in train_set], [y for _, y in train_set]
    fitted = NaiveBayes.fit(texts, labels, intents, temperature=temperature, version=VERSION)
    score = round(accuracy(Chatbot(fitted.params), held_out), 4)
    return Chatbot(replace(fitted.params, held_out_accuracy=score))


def fit_baseline(bot: Chatbot) -> Baseline:
    """Derived features and predicted intents of the whole corpus."""
    corpus = [text for examples in INTENTS.values() for text in examples]
    derived = [message_features(text, bot.classifier.index) for text in corpus]
    samples: dict[str, list] = {name: [d[name] for d in derived] for name in derived[0]}
    samples["prediction"] = [bot.classify(text)[0] for text in corpus]
    return Baseline.fit(samples)


def train(seed: int = SEED) -> tuple[Chatbot, Baseline]:
    """Train on the corpus; return the served model (with its held-out accuracy) and baseline."""
    bot = fit_chatbot(*split(seed), seed=seed)
    return bot, fit_baseline(bot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ARTIFACTS, help="artifact folder")
    args = parser.parse_args()
    bot, baseline = train()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.json").write_text(bot.classifier.params.to_json())
    baseline.save(args.out / "baseline.json")
    params = bot.classifier.params
    print(
        f"chatbot {VERSION}: {len(params.vocabulary)} tokens, "
        f"temperature {params.temperature:.3f}, "
        f"held-out accuracy {params.held_out_accuracy:.1%} -> {args.out}"
    )


if __name__ == "__main__":
    main()
