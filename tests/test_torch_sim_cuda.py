"""The integer simulator on CUDA (the torch operations: the compiled loop is CPU-only) equals the
NumPy reference bit for bit. Its own module: the CPU tests in test_torch_sim.py run once per CPU
path, this one has a single path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import describe, random_crsnn, random_input, random_network
from crsnn.sim.torch_sim import simulate_torch

from test_torch_sim import assert_same  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_matches_numpy():
    """On CUDA: the same bits as the NumPy reference on random networks of every family and on a
    benchmark-sized CRSNN, with torch's default matmul settings (even TF32 would be exact here:
    weights and inputs have at most 9 significant bits and the sums stay below 2**24). Skipped on
    machines without a GPU (the only skip of the simulator tests)."""
    for i in range(40):
        rng = np.random.default_rng([5, i])
        net, steps = random_network(rng)
        x = random_input(rng, net, int(rng.integers(1, 5)), steps)
        assert_same(simulate(net, x), simulate_torch(net, x, device="cuda"), describe(net, steps))
    for dense in (False, True):
        rng = np.random.default_rng(1)
        net = random_crsnn(rng, 700, [256, 256], 20, dense=dense, input_rate=0.02)
        x = (rng.random((16, 100, 700)) < 0.02).astype(np.int64)
        assert_same(simulate(net, x), simulate_torch(net, x, device="cuda"))
