"""Non-finite and absurd numbers, odd shapes and links to other files in NIR and netx files: every
command that reads a graph refuses it with one line naming the node or layer, the field and what
is allowed, exit status 2, no traceback (issue 20, items 6 and 8)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsnn.deploy.cli import report_main
from crsnn.export.import_cli import main as import_main
from crsnn.export.netx_writer import NetxExportError, read_netx, write_netx_atomic
from crsnn.export.nir_reader import NIRImportError, load_nir
from crsnn.export.nir_writer import to_nir, write_nir_atomic
from crsnn.sim.random_networks import random_crsnn
from test_dcls_export import netx_network
from test_import_foreign import DT, lif_graph

IMPORT = "import sys; from crsnn.export.import_cli import main; sys.exit(main())"


def _run(main, argv: list[str]) -> tuple[int, list[str]]:
    """Exit status and stderr lines of a command run in this process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue().strip().splitlines()


def _cli(code: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)


def _set(g: nir.NIRGraph, node: str, field: str, index: int, value: float, scale: bool = False) -> nir.NIRGraph:
    a = np.array(getattr(g.nodes[node], field), dtype=np.float64)
    if scale:
        a *= value
    else:
        a.reshape(-1)[index] = value
    setattr(g.nodes[node], field, a)
    return g


def _assert_refused(rc: int, err: list[str], node: str, field: str, prog: str = "crsnn-import") -> None:
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    assert f"'{node}'" in err[0] and field in err[0] and "allowed" in err[0], err[0]


# ------------------------------------------------------------------- the cases of the issue
ISSUE_CASES = [  # node, field, value, scale the whole array
    ("fc1", "weight", np.inf, False), ("fc1", "bias", np.inf, False), ("lif1", "v_threshold", np.inf, False),
    ("lif1", "tau", np.inf, True), ("lif1", "r", 0.0, True), ("fc1", "weight", 1e300, True),
    ("lif1", "r", np.nan, False), ("lif1", "v_threshold", np.nan, False), ("rec1", "weight", np.nan, False),
    ("fc1", "weight", np.nan, False), ("lif1", "v_threshold", 0.0, False), ("fc2", "weight", -np.inf, False),
]


@pytest.mark.parametrize("node, field, value, scale", ISSUE_CASES,
                         ids=[f"{n}.{f}={v:g}{'x' if s else ''}" for n, f, v, s in ISSUE_CASES])
def test_each_absurd_number_of_the_issue_is_one_line_naming_node_and_field(tmp_path, node, field, value, scale):
    path = tmp_path / "g.nir"
    nir.write(path, _set(lif_graph(), node, field, 0, value, scale))
    rc, err = _run(import_main, [str(path), str(tmp_path / "out.nir"), "--dt", str(DT)])
    _assert_refused(rc, err, node, field)
    assert not (tmp_path / "out.nir").exists()


def test_a_nan_threshold_is_no_traceback_in_a_real_process(tmp_path):
    path = tmp_path / "g.nir"
    nir.write(path, _set(lif_graph(), "lif1", "v_threshold", 3, np.nan))
    p = _cli(IMPORT, [str(path), str(tmp_path / "out.nir"), "--dt", str(DT)])
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip() == ("crsnn-import: error: node 'lif1' (LIF): v_threshold = nan at index 3; allowed: "
                                "finite numbers in [1e-12, 1e+12]")


NUMERIC = {"fc1": ("weight", "bias"), "rec1": ("weight", "bias"), "fc2": ("weight", "bias"),
           "lif1": ("tau", "r", "v_leak", "v_threshold", "v_reset"), "li2": ("tau", "r", "v_leak")}
CUBA = {**NUMERIC, "lif1": ("tau_syn", "tau_mem", "r", "w_in", "v_leak", "v_threshold", "v_reset")}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), cuba=st.booleans(), value=st.sampled_from([np.nan, np.inf, -np.inf, 1e13, -1e300]),
       command=st.sampled_from(["import", "report"]))
def test_any_non_finite_or_huge_number_in_any_field_is_refused_in_one_line(tmp_path_factory, data, cuba, value,
                                                                           command):
    fields = CUBA if cuba else NUMERIC
    node = data.draw(st.sampled_from(sorted(fields)))
    field = data.draw(st.sampled_from(fields[node]))
    g = lif_graph(cuba=cuba)
    size = np.size(getattr(g.nodes[node], field))
    _set(g, node, field, data.draw(st.integers(0, size - 1)), value)
    path = tmp_path_factory.mktemp("n") / "g.nir"
    nir.write(path, g)
    if command == "import":
        rc, err = _run(import_main, [str(path), str(path.with_name("out.nir")), "--dt", str(DT)])
        _assert_refused(rc, err, node, field)
    else:  # crsnn-run, -verify and -report read graphs through the same reader
        rc, err = _run(report_main, [str(path), "--graph-dt", str(DT)])
        _assert_refused(rc, err, node, field, "crsnn-report")


def test_numbers_are_checked_for_in_memory_graphs_too():
    with pytest.raises(NIRImportError, match=r"node 'li2' \(LI\): tau = nan at index 1; allowed"):
        load_nir(_set(lif_graph(), "li2", "tau", 1, np.nan), dt=DT)


def test_a_crsnn_graph_with_nan_metadata_is_refused_in_one_line(tmp_path):
    net = random_crsnn(np.random.default_rng(0), 6, [8], 3)
    g = to_nir(net, dt=0.01)
    name = next(k for k, v in g.nodes.items() if "du" in (v.metadata or {}))
    g.nodes[name].metadata["du"] = float("nan")
    path = tmp_path / "c.nir"
    nir.write(path, g)
    rc, err = _run(report_main, [str(path)])
    assert rc == 2 and len(err) == 1 and f"node '{name}'" in err[0] and "metadata 'du'" in err[0], err


# ----------------------------------------------------------------------- shapes (item 8)
@pytest.mark.parametrize("shape", [[5], [3, 2]])
def test_an_output_node_of_another_size_than_its_neurons_is_refused(tmp_path, shape):
    g = lif_graph(n_out=3)
    g.nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    path = tmp_path / "g.nir"
    nir.write(path, g)
    rc, err = _run(import_main, [str(path), str(tmp_path / "o.nir"), "--dt", str(DT)])
    _assert_refused(rc, err, "output", "output_type")
    assert "3 neurons" in err[0]


def test_a_crsnn_graph_with_a_wrong_output_size_is_refused(tmp_path):
    g = to_nir(random_crsnn(np.random.default_rng(0), 6, [8], 3), dt=0.01)
    out = next(k for k, v in g.nodes.items() if isinstance(v, nir.Output))
    g.nodes[out] = nir.Output(output_type={"output": np.array([7])})
    with pytest.raises(NIRImportError, match=rf"node '{out}' \(Output\): output_type \[7\] does not match the 3 "):
        load_nir(g)


def test_output_types_with_leading_batch_dimensions_are_still_read():
    g = lif_graph(n_out=3)
    g.nodes["output"] = nir.Output(output_type={"output": np.array([1, 3])})
    assert load_nir(g, dt=DT).n_out == 3


# ------------------------------------------------------------- links to other files (item 8)
def _with(path: Path, build) -> Path:
    nir.write(path, lif_graph())
    with h5py.File(path, "a") as f:
        build(f)
    return path


def test_an_external_link_to_another_file_is_refused_not_followed(tmp_path):
    secret = tmp_path / "other.h5"
    with h5py.File(secret, "w") as f:
        f["weight"] = np.ones((12, 8))

    def link(f):
        del f["node/nodes/fc1/weight"]
        f["node/nodes/fc1/weight"] = h5py.ExternalLink(str(secret), "/weight")

    path = _with(tmp_path / "g.nir", link)
    for main, argv, prog in ((import_main, [str(path), str(tmp_path / "o.nir"), "--dt", str(DT)], "crsnn-import"),
                             (report_main, [str(path), "--graph-dt", str(DT)], "crsnn-report")):
        rc, err = _run(main, argv)
        assert rc == 2 and len(err) == 1 and "external link" in err[0] and "other.h5" in err[0], err
        assert err[0].startswith(f"{prog}: error: ")


@pytest.mark.parametrize("kind", ["soft link", "external storage"])
def test_soft_links_and_external_dataset_storage_are_refused(tmp_path, kind):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.zeros(12, np.float64).tobytes())

    def build(f):
        del f["node/nodes/fc1/bias"]
        if kind == "soft link":
            f["node/nodes/fc1/bias"] = h5py.SoftLink("/node/nodes/fc2/bias")
        else:
            f.create_dataset("node/nodes/fc1/bias", shape=(12,), dtype="f8", external=[(str(raw), 0, 96)])

    path = _with(tmp_path / "g.nir", build)
    with pytest.raises(NIRImportError, match="soft link" if kind == "soft link" else "another file"):
        load_nir(path, dt=DT)


# ------------------------------------------------------------------------------ netx files
@pytest.fixture
def netx_file(tmp_path) -> Path:
    return write_netx_atomic(netx_network(np.random.default_rng(0)), tmp_path / "m.net.h5", dt=0.01)


@pytest.mark.parametrize("edit, words", [
    (lambda f: f["layer/1"].pop("weight"), ["layer 1", "dataset 'weight' is missing", "allowed: shape (16, 10)"]),
    (lambda f: (f["layer/2"].pop("weight"), f["layer/2"].create_dataset("weight", data=np.zeros((3, 5)))),
     ["layer 2", "weight has shape (3, 5)", "allowed: shape (12, 16) of integers"]),
    (lambda f: f["layer/1/weight"].__setitem__((0, 0), 2**40), ["layer 1", "weight holds", "allowed"]),
    (lambda f: (f["layer/1"].pop("bias"), f["layer/1"].create_dataset("bias", data=np.full(16, np.nan))),
     ["layer 1", "bias holds nan", "allowed: shape (16,) of integers in [-4096, 4095]"]),
    (lambda f: f["layer/3/neuron"].pop("vThMant"), ["layer 3: neuron", "'vThMant' is missing", "a scalar"]),
], ids=["no weight", "weight shape", "weight range", "nan bias", "no threshold"])
def test_a_damaged_netx_file_is_one_line_naming_layer_and_field(netx_file, edit, words):
    with h5py.File(netx_file, "a") as f:
        edit(f)
    with pytest.raises(NetxExportError) as exc:
        read_netx(netx_file)
    text = str(exc.value)
    assert "\n" not in text and all(w in text for w in words), text
