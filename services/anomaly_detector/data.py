"""Synthetic pump-sensor data: five correlated readings driven by one latent load.

Used to train the detector, to draw realistic requests in the load generator, and in tests. Every
draw takes an explicit numpy Generator, so datasets are reproducible from a seed.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("temperature_c", "pressure_kpa", "vibration_mm_s", "rotation_rpm", "power_kw")


def simulate_normal(n: int, rng: np.random.Generator, load_shift: float = 0.0) -> np.ndarray:
    """Healthy readings, shape (n, 5), in FEATURES order.

    A latent load drives every sensor, which makes them correlated as in a real pump.
    `load_shift` (in standard deviations of the load) moves the operating point: valid, healthy
    inputs from a shifted distribution, i.e. data drift rather than anomalies.
    """
    load = rng.normal(load_shift, 1.0, n)
    rotation = 1500 + 120 * load + rng.normal(0, 25, n)
    power = 22 + 3.0 * load + 0.004 * (rotation - 1500) + rng.normal(0, 0.6, n)
    temperature = 65 + 4.0 * load + 0.3 * (power - 22) + rng.normal(0, 1.2, n)
    pressure = 310 + 18 * load + rng.normal(0, 5.0, n)
    vibration = 2.2 + 0.25 * load + 0.0008 * (rotation - 1500) + rng.normal(0, 0.12, n)
    return np.column_stack([temperature, pressure, vibration, rotation, power])


def simulate_anomalies(n: int, rng: np.random.Generator) -> np.ndarray:
    """Faulty readings of three kinds, in equal shares, shape (n, 5).

    - bearing wear: vibration far above what the load explains;
    - cooling failure: temperature high while load, power and rotation are ordinary;
    - broken correlation: power drawn as if at a higher load than rotation and pressure say.
    """
    readings = simulate_normal(n, rng)
    kind = np.arange(n) % 3
    wear, cooling, decoupled = kind == 0, kind == 1, kind == 2
    # Sizes from subtle (about 2.5 residual standard deviations) to gross: some faults look healthy.
    readings[wear, 2] += rng.uniform(0.3, 1.5, wear.sum())
    readings[cooling, 0] += rng.uniform(3, 15, cooling.sum())
    readings[decoupled, 4] += rng.uniform(1.5, 8, decoupled.sum())
    return readings
