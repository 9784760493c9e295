"""``crsnn-run --backend sim --device cpu|cuda|auto``: the torch integer simulator from the CLI."""

from __future__ import annotations

import numpy as np
import torch

from crsnn.deploy.cli import run_main
from crsnn.export.nir_writer import to_nir, write_nir_atomic
from crsnn.sim.random_networks import random_crsnn


def test_crsnn_run_sim_device(tmp_path, capsys):
    """--device cpu and auto run; --device cuda without a GPU is a one-line user error (exit 2)."""
    net = random_crsnn(np.random.default_rng(2), 12, [8], 4, input_rate=0.2, hidden_rate=0.2)
    path = write_nir_atomic(to_nir(net, dt=0.01), tmp_path / "n.nir")
    args = [str(path), "--data", "synthetic:test=8", "--no-progress", "--backend", "sim"]
    for device in ("cpu", "auto"):
        assert run_main([*args, "--device", device]) == 0
        assert "on sim" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert run_main([*args, "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cuda" in err[0]
