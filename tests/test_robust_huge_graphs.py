"""Huge graphs: a small compressed NIR file can describe arrays of many GiB or a network larger
than any Loihi 2 system. Commands refuse such a file in one line (what it would need, what limits
it) before allocating, and crsnn-import's fidelity check runs in bounded memory, in pieces short
enough for a signal to end it promptly (issue 20, items 7 and 8). Every command runs in a child
process under an address-space limit (RLIMIT_AS), so a regression cannot take the machine down."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from crsnn.export import nir_float_ref
from crsnn.export.nir_float_ref import INTEGER_SYNAPSE_STEPS_PER_CALL, fidelity, populations
from crsnn.export.nir_foreign import normalize_foreign
from crsnn.export.nir_reader import load_nir
from test_import_foreign import DT, lif_graph

IMPORT = "import sys; from crsnn.export.import_cli import main; sys.exit(main())"
GiB = 2**30


def wide_graph(n: int, n_in: int = 4, n_out: int = 2) -> nir.NIRGraph:
    """Input -> Affine -> LIF of ``n`` neurons (scalar parameters) -> Affine -> LI, in steps."""
    one = lambda v: np.array([v])  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc1": nir.Affine(weight=np.full((n, n_in), 0.5), bias=np.zeros(n)),
        "lif1": nir.LIF(tau=one(10.0), r=one(10.0), v_leak=one(0.0), v_threshold=one(1.0), v_reset=one(0.0)),
        "fc2": nir.Affine(weight=np.full((n_out, n), 0.01), bias=np.zeros(n_out)),
        "li2": nir.LI(tau=np.full(n_out, 10.0), r=np.full(n_out, 10.0), v_leak=np.zeros(n_out)),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "li2"), ("li2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _vm_after_import() -> int:
    """Address space of a fresh interpreter that has imported crsnn-import (the limits below are
    relative to it, so that they hold with any build of torch)."""
    code = ("import crsnn.export.import_cli, re; "
            "print(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return 1024 * int(out.stdout.strip())


@pytest.fixture(scope="module")
def vm_base() -> int:
    return _vm_after_import()


def run_limited(argv: list[str], limit: int, timeout: float = 300) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-c", IMPORT, *argv], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=cap)


def _one_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr and lines[0].startswith("crsnn-import: error: "), lines
    return lines[0]


def test_a_million_neuron_layer_is_refused_in_one_line_before_allocating(tmp_path, vm_base):
    path = tmp_path / "wide.nir"
    nir.write(path, wide_graph(1_000_000))
    assert path.stat().st_size < 400_000  # nir.write compresses: a small file
    p = run_limited([str(path), str(tmp_path / "o.nir"), "--time-unit", "steps"], vm_base + int(0.7 * GiB))
    line = _one_line(p)
    assert "fidelity check needs about" in line and "1000006 neurons" in line and "RLIMIT_AS" in line, line
    assert "lower --steps" in line and not (tmp_path / "o.nir").exists()


def test_the_fidelity_check_runs_in_bounded_memory(tmp_path, vm_base):
    """10**5 neurons x 24 samples: more than the limit held at once (the check used to hold all
    samples), less in pieces."""
    path = tmp_path / "wide.nir"
    nir.write(path, wide_graph(100_000))
    p = run_limited([str(path), str(tmp_path / "o.nir"), "--time-unit", "steps", "--samples", "24"],
                    vm_base + int(0.75 * GiB))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "layer 0 'lif1': spikes" in p.stdout and (tmp_path / "o.nir").exists()


def _empty_giant(path: Path, node: str, shape: tuple[int, int]) -> Path:
    """A NIR file whose ``node`` weight is a chunked, compressed dataset of ``shape`` never
    written: a few KB on disk, ``8 * prod(shape)`` bytes once read."""
    nir.write(path, lif_graph())
    with h5py.File(path, "a") as f:
        del f[f"node/nodes/{node}/weight"]
        f.create_dataset(f"node/nodes/{node}/weight", shape=shape, dtype="f8", chunks=(1000, 1000),
                         compression="gzip")
    return path


def test_a_compressed_array_of_many_gib_is_refused_before_it_is_read(tmp_path, vm_base):
    path = _empty_giant(tmp_path / "bomb.nir", "rec1", (100_000, 100_000))  # 74.5 GiB as float64
    assert path.stat().st_size < 1_000_000
    p = run_limited([str(path), str(tmp_path / "o.nir"), "--dt", str(DT)], vm_base + int(1 * GiB), timeout=120)
    line = _one_line(p)
    assert "reading and quantizing its arrays (74.51 GiB as float64) needs about" in line, line
    assert "RLIMIT_AS" in line


def test_more_synapses_than_the_largest_loihi_2_system_are_refused(tmp_path, vm_base):
    path = _empty_giant(tmp_path / "big.nir", "rec1", (400_000, 400_000))  # 1.6e11 synapses
    line = _one_line(run_limited([str(path), str(tmp_path / "o.nir"), "--dt", str(DT)], vm_base + GiB, 120))
    assert "1.6e+11 synapses, more than the largest Loihi 2 system (Hala Point" in line, line


# ------------------------------------------------------------------ pieces: memory and signals
def test_fidelity_in_pieces_gives_the_same_figures():
    ng = normalize_foreign(lif_graph(cuba=True), DT)
    pops, net = populations(ng)[0], load_nir(ng)
    x = (np.random.default_rng(1).random((9, 80, 8)) < 0.2).astype(np.int64)
    whole, pieces = fidelity(pops, net, x), fidelity(pops, net, x, chunk=2)
    for a, b in zip(whole["layers"] + [whole["output"]], pieces["layers"] + [pieces["output"]]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == (b[k] if isinstance(b[k], (str, bool)) else pytest.approx(b[k], rel=1e-12, nan_ok=True)), k


def test_the_integer_simulation_runs_in_pieces_a_signal_can_interrupt(monkeypatch):
    """Each compiled call of the integer simulator is bounded in work (about 0.1 s), so a signal
    is handled between pieces instead of after the whole batch (it used to take up to 10 s)."""
    ng = normalize_foreign(lif_graph(n_in=50, n_hid=2000, n_out=4), DT)
    pops, net = populations(ng)[0], load_nir(ng)
    x = (np.random.default_rng(0).random((32, 300, 50)) < 0.05).astype(np.int64)
    calls: list[int] = []
    real = nir_float_ref.integer_aligned
    monkeypatch.setattr(nir_float_ref, "integer_aligned", lambda n, xs: (calls.append(len(xs)), real(n, xs))[1])
    monkeypatch.setattr(nir_float_ref, "simulate_float", lambda p, xs: _zeros(p, xs))
    fidelity(pops, net, x)
    synapse_steps = 300 * (2000 * 50 + 2000 * 2000 + 2000 + 4 * 2000 + 4)
    assert sum(calls) == 32 and max(calls) * synapse_steps <= INTEGER_SYNAPSE_STEPS_PER_CALL, calls


def _zeros(pops, xs):
    b, steps, _ = xs.shape
    return nir_float_ref.FloatResult([np.zeros((b, steps, p.n), bool) for p in pops], np.zeros((b, steps, pops[-1].n)))
