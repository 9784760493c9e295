"""A small generated temporal task where timing and recurrence / delays matter.

Each sample holds two events: event A, a burst on one channel of the first half of the inputs,
and, ``gap`` steps later, event B, a burst on one channel of the second half. The class is the
gap (one of ``n_classes`` values), so it can only be read from the *time between* the two
events: a network without memory longer than a couple of steps (strong leak, no recurrence)
stays near chance, while a recurrent spike delayed by about the gap lets A and B coincide.
Sparse Poisson noise is added to every channel; event onsets and channels are random.

Inputs are integer counts (batch, T, channels) like binned SHD data (bursts of 1..max_count
spikes in one step), so they need ``input_message_bits`` = bits of ``max_count`` (noise can add
one more spike, counts are clipped to ``max_count``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class DelayTask:
    """Parameters of the generated task (see the module docstring).

    gaps: the gap (steps between A and B) of each class; default ``min_gap + c * gap_step``.
    """

    n_steps: int = 48
    n_channels: int = 12
    n_classes: int = 4
    min_gap: int = 3
    gap_step: int = 4
    max_count: int = 3
    noise_rate: float = 0.01
    tail: int = 6

    @property
    def gaps(self) -> list[int]:
        return [self.min_gap + c * self.gap_step for c in range(self.n_classes)]

    @property
    def input_message_bits(self) -> int:
        return int(np.ceil(np.log2(self.max_count + 1))) if self.max_count > 1 else 0

    def to_dict(self) -> dict:
        return asdict(self)

    def generate(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` samples: uint8 counts ``(n, n_steps, n_channels)`` and int64 labels ``(n,)``
        (balanced classes in random order). Deterministic for a seed."""
        if self.n_channels < 2:
            raise ValueError("need at least 2 channels")
        latest = self.n_steps - self.tail - max(self.gaps)
        if latest < 1:
            raise ValueError(f"n_steps={self.n_steps} too short for gaps up to {max(self.gaps)} and tail {self.tail}")
        rng = np.random.default_rng(seed)
        y = rng.permutation(np.arange(n) % self.n_classes).astype(np.int64)
        x = (rng.random((n, self.n_steps, self.n_channels)) < self.noise_rate).astype(np.int64)
        half = self.n_channels // 2
        t1 = rng.integers(1, latest + 1, size=n)
        t2 = t1 + np.asarray(self.gaps)[y]
        ch_a = rng.integers(0, half, size=n)
        ch_b = rng.integers(half, self.n_channels, size=n)
        cnt_a = rng.integers(1, self.max_count + 1, size=n)
        cnt_b = rng.integers(1, self.max_count + 1, size=n)
        i = np.arange(n)
        x[i, t1, ch_a] += cnt_a
        x[i, t2, ch_b] += cnt_b
        return np.minimum(x, max(1, self.max_count)).astype(np.uint8), y

    def splits(self, n_train: int, n_valid: int, n_test: int, seed: int = 0) -> dict:
        """``{"train", "valid", "test"}`` -> ``(x, y)``, from disjoint seeds."""
        return {name: self.generate(n, seed=(seed, k)) for k, (name, n) in
                enumerate((("train", n_train), ("valid", n_valid), ("test", n_test)))}


def generate(n: int, seed: int = 0, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Shortcut: ``DelayTask(**kw).generate(n, seed)``."""
    return DelayTask(**kw).generate(n, seed)
