"""Valid requests for both model servers, drawn from the training distribution or a shifted one."""

from __future__ import annotations

import random

import numpy as np

from services.anomaly_detector.data import FEATURES, simulate_normal
from services.chatbot.corpus import INTENTS

# Drifted chat traffic: new products and kinds of request that the training corpus never saw.
_DRIFTED_MESSAGES = (
    "can I use my loyalty voucher together with the black friday discount code",
    "the smart thermostat firmware update bricked the device, what are my options",
    "do you price match competitors for the noise cancelling headphones bundle",
    "my subscription box arrived with melted chocolate again this month",
    "is the warranty transferable if I sell the espresso machine second hand",
)
# Drifted sensors: the plant runs at a much higher load than during training.
DRIFT_LOAD_SHIFT = 2.5


class InputSampler:
    """Draws request bodies; `drift=True` draws from a shifted distribution."""

    def __init__(self, seed: int | None = None, drift: bool = False) -> None:
        self._rng = np.random.default_rng(seed)
        self._random = random.Random(seed)
        self._messages = [m for examples in INTENTS.values() for m in examples]
        self.drift = drift

    def anomaly_body(self) -> dict:
        """Sensor readings for POST /predict of the anomaly detector."""
        shift = DRIFT_LOAD_SHIFT if self.drift else 0.0
        row = simulate_normal(1, self._rng, load_shift=shift)[0]
        return {"features": {f: round(float(v), 3) for f, v in zip(FEATURES, row, strict=True)}}

    def chatbot_body(self) -> dict:
        """A customer message; drifted ones are longer and about things the bot never saw."""
        if self.drift:
            return {"message": " and ".join(self._random.sample(_DRIFTED_MESSAGES, 2))}
        return {"message": self._random.choice(self._messages)}
