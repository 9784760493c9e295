"""Surrogate derivatives of the spike function ``s = H(v - theta)``.

The derivative is expressed in the normalised variable ``x = (v - theta) / theta`` (threshold
units, the same in float training and in quantization-aware training, where ``v`` and ``theta``
are Loihi integers): ``ds/dv = surrogate(x) / theta``. Both shapes integrate to 1.

- ``atan``: ``(alpha / 2) / (1 + (pi / 2 * alpha * x)**2)`` (the derivative of
  ``atan(pi / 2 * alpha * x) / pi + 1/2``; alpha = 5 in CRSNN / DelRec);
- ``triangle``: ``alpha * max(0, 1 - alpha * |x|)`` (support ``|x| < 1 / alpha``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KINDS = ("atan", "triangle")


@dataclass(frozen=True)
class Surrogate:
    """A surrogate derivative: ``kind`` in :data:`KINDS`, sharpness ``alpha`` > 0."""

    kind: str = "atan"
    alpha: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"surrogate must be one of {KINDS}, got {self.kind!r}")
        if not self.alpha > 0:
            raise ValueError(f"surrogate alpha must be > 0, got {self.alpha}")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``dH/dx`` evaluated at ``x`` (any shape)."""
        a = float(self.alpha)
        if self.kind == "atan":
            return (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)
        return a * torch.clamp(1 - a * x.abs(), min=0)

    @classmethod
    def parse(cls, spec: str) -> "Surrogate":
        """``"atan"``, ``"atan:5"``, ``"triangle:1"`` -> :class:`Surrogate`."""
        kind, _, alpha = spec.partition(":")
        return cls(kind.strip().lower(), float(alpha) if alpha else (5.0 if kind.strip().lower() == "atan" else 1.0))

    def spec(self) -> str:
        return f"{self.kind}:{self.alpha:g}"
