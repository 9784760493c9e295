"""Special files as inputs and outputs, and two trainings on one output (security issue 20,
items 2-5).

- An input that must be a file (a checkpoint, a NIR or netx file, SHD-layout data) but is a FIFO,
  a device or a socket is refused at once with one line, ``not a regular file``, exit 2: a FIFO
  would block the command forever, ``/dev/zero`` would fill the memory.
- An output that exists and is not a regular file (a FIFO, a device, a link to one) is refused
  and left as it is; so is an output that is one of the command's own inputs.
- A second ``crsnn-train`` with the ``--out`` of a running one is refused at start, naming the
  running one; a run killed with SIGKILL does not block the next.

The commands run in subprocesses with a timeout (a hang fails the test, it does not hang the
suite) and, where ``/dev/zero`` is read, with a limited address space (a regression cannot take
the machine down).
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nir
import numpy as np
import pytest

from crsnn.atomic_write import WriteError, check_writable, write_bytes_atomic, write_together
from crsnn.export.cli import main as export_main
from crsnn.export.nir_writer import to_nir, write_nir_atomic
from crsnn.input_files import NotRegularFileError, check_regular_input, read_head
from crsnn.models.network import ModelConfig, build_model
from crsnn.sim.random_networks import random_crsnn
from crsnn.train.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from crsnn.train.cli import main as train_main
from crsnn.train.data.layout import write_spike_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TIMEOUT = 60  # seconds; each command below answers in a few when it works
SYN = "synthetic:n_steps=20,n_channels=8,min_gap=2,gap_step=3,noise_rate=0.01,train=32,valid=16,test=16"
COMMANDS = {
    "crsnn-train": "from crsnn.train.cli import main",
    "crsnn-export": "from crsnn.export.cli import main",
    "crsnn-import": "from crsnn.export.import_cli import main",
    "crsnn-run": "from crsnn.deploy.cli import run_main as main",
    "crsnn-verify": "from crsnn.deploy.cli import verify_main as main",
    "crsnn-report": "from crsnn.deploy.cli import report_main as main",
    "crsnn-data": "from crsnn.train.data.cli import main",
}


def _address_space(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return preexec


def command(name: str, args: list[str], cwd: Path, limit_memory: bool = False,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run a crsnn command in a subprocess (at most ``timeout`` s; with ``limit_memory``, in 3 GiB
    of address space)."""
    code = f"import sys; {COMMANDS[name]}; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          preexec_fn=_address_space(3 << 30) if limit_memory else None)


def assert_refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, one line on stderr holding every one of ``words``, no traceback; returns the line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def null_device(path: Path) -> Path:
    """A character device node like /dev/null (major 1, minor 3), made in a test folder so that
    nothing real is at risk."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def kind(path: Path) -> int:
    """The file type bits of ``path`` itself (not of what a link points to)."""
    return stat.S_IFMT(os.lstat(path).st_mode)


def qat_checkpoint(path: Path) -> Path:
    model = build_model(ModelConfig(n_in=8, n_out=4, hidden=[6], input_message_bits=2))
    model.set_qat(True)
    return save_checkpoint(path, model, {"epoch": 1, "dt": 0.01})


def crsnn_graph(path: Path) -> Path:
    return write_nir_atomic(to_nir(random_crsnn(np.random.default_rng(0), 8, [6], 4), dt=0.01), path)


def foreign_graph(path: Path) -> Path:
    """Another tool's graph (Affine -> LIF -> Affine -> LI, time constants in seconds) that
    ``crsnn-import --dt 1e-3`` converts."""
    rng = np.random.default_rng(0)
    n_in, n_hid, n_out, dt = 8, 12, 3, 1e-3
    tau = 10 * dt
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc1": nir.Affine(weight=rng.normal(0, 1.5, (n_hid, n_in)), bias=np.zeros(n_hid)),
        "lif1": nir.LIF(tau=np.full(n_hid, tau), r=np.full(n_hid, tau / dt), v_leak=np.zeros(n_hid),
                        v_threshold=np.ones(n_hid), v_reset=np.zeros(n_hid)),
        "fc2": nir.Affine(weight=rng.normal(0, 0.5, (n_out, n_hid)), bias=np.zeros(n_out)),
        "li2": nir.LI(tau=np.full(n_out, tau), r=np.full(n_out, tau / dt), v_leak=np.zeros(n_out)),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "li2"), ("li2", "output")]
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    return path


def spike_file(path: Path, n: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    times = [rng.uniform(0, 0.2, 30) for _ in range(n)]
    units = [rng.integers(0, 40, 30) for _ in range(n)]
    write_spike_file(path, times, units, np.arange(n) % 2, ["a", "b"])
    return path


# ------------------------------------------------------------------------- the rule itself
def test_the_input_rule_refuses_fifos_and_devices_and_reads_bounded(tmp_path):
    f, dev = fifo(tmp_path / "f.pt"), null_device(tmp_path / "null")
    regular = tmp_path / "r.pt"
    regular.write_bytes(b"abc")
    (tmp_path / "link").symlink_to(regular)
    (tmp_path / "zero").symlink_to("/dev/zero")
    assert check_regular_input(tmp_path / "link") == tmp_path / "link"  # a link to a file is a file
    for path, what in ((f, "a FIFO"), (dev, "a character device"), (tmp_path / "zero", "a character device")):
        with pytest.raises(NotRegularFileError, match=f"not a regular file \\({what}\\)"):
            check_regular_input(path, "checkpoint")
        with pytest.raises(NotRegularFileError, match="not a regular file"):
            read_head(path, 1 << 20)  # opening the FIFO does not block, /dev/zero is not read
    assert read_head(regular, 2) == b"ab"
    with pytest.raises(CheckpointError, match="not a regular file \\(a FIFO\\)"):
        read_checkpoint(f)


def test_the_writer_refuses_special_targets_and_leaves_them(tmp_path):
    f, dev = fifo(tmp_path / "out.nir"), null_device(tmp_path / "null")
    link = tmp_path / "link.json"
    link.symlink_to(dev)
    for target in (f, dev, link):
        with pytest.raises(WriteError, match="not a regular file"):
            check_writable(target)
    # a FIFO put in place after the check is refused by the writer too, and nothing is replaced
    late = tmp_path / "late.json"
    check_writable(late)
    fifo(late)
    with pytest.raises(WriteError, match="not a regular file"):
        write_together([(tmp_path / "other.json", b"{}"), (late, b"{}")])
    with pytest.raises(WriteError, match="not a regular file"):
        write_bytes_atomic(link, b"x")
    assert kind(f) == kind(late) == stat.S_IFIFO and kind(dev) == stat.S_IFCHR and kind(link) == stat.S_IFLNK
    assert not (tmp_path / "other.json").exists() and not list(tmp_path.glob("*.tmp"))


def test_an_output_that_is_an_input_is_refused(tmp_path):
    src = tmp_path / "g.nir"
    src.write_bytes(b"graph")
    (tmp_path / "alias.nir").symlink_to(src)
    for out in (src, tmp_path / "alias.nir", tmp_path / "." / "g.nir"):
        with pytest.raises(WriteError, match="is also an input"):
            check_writable(out, inputs=[src])
    with pytest.raises(WriteError, match="is also an input"):  # not there yet: the same path
        check_writable(tmp_path / "new.nir", inputs=[tmp_path / "sub" / ".." / "new.nir"])
    assert check_writable(tmp_path / "other.nir", inputs=[src, None]) == tmp_path / "other.nir"


# ------------------------------------------------------------------------- item 2: /dev/zero
@pytest.mark.parametrize("name,args", [
    ("crsnn-export", ["zero.pt", "out.nir"]),
    ("crsnn-export", ["zero.pt", "out.net.h5", "--format", "netx"]),
    ("crsnn-train", ["--resume", "zero.pt", "--data", SYN, "--no-progress"]),
    ("crsnn-train", ["--evaluate", "zero.pt", "--data", SYN, "--no-progress"]),
])
def test_dev_zero_as_a_checkpoint_is_refused_without_reading_it(tmp_path, name, args):
    (tmp_path / "zero.pt").symlink_to("/dev/zero")
    t0 = time.monotonic()
    proc = command(name, args, tmp_path, limit_memory=True)
    assert_refused(proc, "zero.pt", "not a regular file (a character device)")
    assert time.monotonic() - t0 < TIMEOUT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zero.pt"]  # nothing written


# ------------------------------------------------------------------------- item 3: FIFOs as inputs
def _inputs_case(tmp_path: Path, case: str) -> tuple[str, list[str], str]:
    """(command, arguments, the refused path's name) for each kind of input."""
    if case == "export checkpoint":
        return "crsnn-export", [str(fifo(tmp_path / "m.pt")), "out.nir"], "m.pt"
    if case == "resume checkpoint":
        return "crsnn-train", ["--resume", str(fifo(tmp_path / "m.last.pt")), "--data", SYN], "m.last.pt"
    if case == "train data file":
        return "crsnn-train", ["--data", str(fifo(tmp_path / "d.h5")), "--epochs", "1"], "d.h5"
    if case == "train data in a folder":
        (tmp_path / "data").mkdir()
        spike_file(tmp_path / "data" / "test.h5")
        fifo(tmp_path / "data" / "train.h5")
        return "crsnn-train", ["--data", "data", "--epochs", "1"], "train.h5"
    if case == "netx file":
        qat_checkpoint(tmp_path / "m.pt")
        return "crsnn-verify", ["m.pt", str(fifo(tmp_path / "m.net.h5")), "--data", SYN], "m.net.h5"
    if case == "nir file":
        return "crsnn-run", [str(fifo(tmp_path / "g.nir")), "--data", SYN, "--backend", "sim"], "g.nir"
    if case == "nir device":
        return "crsnn-report", [str(null_device(tmp_path / "g.nir"))], "g.nir"
    if case == "imported graph":
        return "crsnn-import", [str(fifo(tmp_path / "g.nir")), "out.nir", "--dt", "1e-3"], "g.nir"
    if case == "deploy data":
        crsnn_graph(tmp_path / "g.nir")
        return "crsnn-run", ["g.nir", "--data", str(fifo(tmp_path / "t.h5")), "--backend", "sim"], "t.h5"
    if case == "data show":
        return "crsnn-data", ["show", str(fifo(tmp_path / "t.h5"))], "t.h5"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["export checkpoint", "resume checkpoint", "train data file",
                                  "train data in a folder", "netx file", "nir file", "nir device", "imported graph",
                                  "deploy data", "data show"])
def test_a_fifo_or_device_as_an_input_is_refused_at_once(tmp_path, case):
    name, args, refused = _inputs_case(tmp_path, case)
    before = {p.name: kind(p) for p in tmp_path.rglob("*")}
    proc = command(name, args, tmp_path)  # a hang is a TimeoutExpired: the test fails within TIMEOUT
    assert_refused(proc, refused, "not a regular file")
    assert {p.name: kind(p) for p in tmp_path.rglob("*")} == before  # nothing written, nothing replaced


# ------------------------------------------------------------------------- item 4: outputs
@pytest.mark.parametrize("target", ["fifo", "device", "link to a device"])
def test_export_does_not_replace_a_special_file(tmp_path, capsys, target):
    qat_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "out.nir"
    if target == "fifo":
        fifo(out)
    elif target == "device":
        null_device(out)
    else:
        out.symlink_to(null_device(tmp_path / "null"))
    before = kind(out)
    assert export_main([str(tmp_path / "m.pt"), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out.nir" in err[0] and "not a regular file" in err[0], err
    assert kind(out) == before
    assert export_main([str(tmp_path / "m.pt"), str(out), "--format", "netx"]) == 2
    assert "not a regular file" in capsys.readouterr().err and kind(out) == before


def test_a_command_does_not_write_over_its_own_input(tmp_path, capsys):
    from crsnn.export.import_cli import main as import_main

    graph = foreign_graph(tmp_path / "g.nir")
    ckpt = qat_checkpoint(tmp_path / "m.pt")
    kept = {p: p.read_bytes() for p in (graph, ckpt)}
    assert import_main([str(graph), str(graph), "--dt", "1e-3", "--samples", "2", "--steps", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "g.nir" in err[0] and "is also an input" in err[0], err
    assert import_main([str(graph), str(tmp_path / "g2.nir"), "--dt", "1e-3", "--samples", "2", "--steps", "10",
                        "--json", str(graph)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert export_main([str(ckpt), str(ckpt)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in kept} == kept and not (tmp_path / "g2.nir").exists()


def test_training_does_not_replace_its_own_data(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    spike_file(data / "train.h5", 24, 0)
    spike_file(data / "test.h5", 16, 1)
    kept = {p: p.read_bytes() for p in data.iterdir()}
    for out in (data / "test.h5", data / "train.h5"):
        assert train_main(["--data", str(data), "--out", str(out), "--force", "--epochs", "1", "--hidden", "4",
                           "--max-time", "0.2", "--channel-group", "50", "--no-progress", "--threads", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and out.name in err[0] and "is also an input" in err[0], err
    assert train_main(["--data", str(data / "test.h5"), "--out", str(data / "test.h5"), "--force", "--epochs", "1",
                       "--no-progress"]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in data.iterdir()} == kept


# ------------------------------------------------------------------------- item 5: one training per output
LONG = "synthetic:n_steps=30,n_channels=8,min_gap=2,gap_step=3,noise_rate=0.01,train=20000,valid=48,test=64"
TRAIN = "import sys; from crsnn.train.cli import main; sys.exit(main())"


def test_a_second_training_on_the_same_output_is_refused_naming_the_first(tmp_path):
    first = subprocess.Popen([sys.executable, "-c", TRAIN, "--data", LONG, "--out", "m.pt", "--hidden", "16",
                              "--epochs", "50", "--threads", "1", "--no-progress"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for line in first.stdout:  # it holds the output once it prints its plan
            if line.startswith("training on"):
                break
        assert first.poll() is None, first.stderr.read()[-2000:]
        # the same --out (also with --force, and as another name of the same file) is refused at start
        for out in ("m.pt", "./m.pt", str(tmp_path / "m.pt")):
            second = command("crsnn-train", ["--data", SYN, "--out", out, "--force", "--epochs", "1",
                                             "--no-progress"], tmp_path)
            line = assert_refused(second, "m.pt", f"pid {first.pid}", "crsnn-train")
            assert "--out m.pt" in line  # the running one's command
        # another member of its output family (m.pth writes m.last.pt and m.log.json too)
        assert_refused(command("crsnn-train", ["--data", SYN, "--out", "m.pth", "--epochs", "1", "--no-progress"],
                               tmp_path), f"pid {first.pid}")
        first.send_signal(signal.SIGKILL)  # killed: no cleanup, its lock files stay behind
        first.wait(timeout=TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stdout.close()
        first.stderr.close()
    # a run killed with SIGKILL does not block the next one; a finished run leaves no lock behind
    third = command("crsnn-train", ["--data", SYN, "--out", "m.pt", "--force", "--hidden", "4", "--epochs", "1",
                                    "--no-progress", "--threads", "1"], tmp_path, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")]


@pytest.mark.slow
def test_a_ddp_training_on_a_held_output_stops_on_every_rank(tmp_path):
    """Only rank 0 takes the lock; its verdict is shared, so no rank waits for a stopped one."""
    first = subprocess.Popen([sys.executable, "-c", TRAIN, "--data", LONG, "--out", "m.pt", "--hidden", "16",
                              "--epochs", "50", "--threads", "1", "--no-progress"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for line in first.stdout:
            if line.startswith("training on"):
                break
        ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "crsnn.train", "--data", SYN, "--out", "m.pt", "--device", "cpu", "--epochs", "1", "--no-progress",
               "--threads", "1"]
        proc = subprocess.run(ddp, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        refusals = [l for l in (proc.stdout + proc.stderr).splitlines()
                    if l.startswith("crsnn-train: error:") and f"pid {first.pid}" in l]
        assert proc.returncode != 0 and len(refusals) == 2, proc.stderr[-3000:]  # one per rank
        assert first.poll() is None  # the running one goes on
    finally:
        first.kill()
        first.wait()
        first.stdout.close()
