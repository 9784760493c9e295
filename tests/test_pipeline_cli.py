"""The command-line pipeline on a small generated task: crsnn-train -> crsnn-export (--check)
-> crsnn-verify (real Lava) -> crsnn-run -> crsnn-report, for CRSNN and DelRec checkpoints."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from crsnn.deploy.cli import report_main, run_main, verify_main
from crsnn.export.cli import check_export
from crsnn.export.cli import main as export_main
from crsnn.export.nir_reader import load_nir
from crsnn.sim.integer_sim import simulate
from crsnn.train.checkpoint import load_checkpoint
from crsnn.train.cli import main as train_main

DATA = "synthetic:train=96,valid=32,test=48"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small QAT checkpoint per model kind, and its NIR export."""
    d = tmp_path_factory.mktemp("pipeline")
    out = {}
    for kind in ("crsnn", "delrec"):
        ck = d / f"{kind}.pt"
        assert train_main(["--data", DATA, "--model", kind, "--hidden", "16", "16", "--epochs", "2",
                           "--qat-start", "1", "--batch-size", "32", "--out", str(ck), "--no-progress"]) == 0
        out[kind] = (ck, d / f"{kind}.nir")
    return out


@pytest.mark.parametrize("kind", ["crsnn", "delrec"])
def test_export_writes_a_plain_nir_file_and_checks_it(trained, kind, capsys):
    ck, path = trained[kind]
    assert export_main([str(ck), str(path), "--check"]) == 0
    text = capsys.readouterr().out
    assert "0 mismatching spikes, 0 mismatching readout values: OK" in text
    g = nir.read(str(path))
    delays = [n for n in g.nodes.values() if isinstance(n, nir.Delay)]
    assert len(delays) == 2 and all(d.delay.dtype.kind == "i" for d in delays)
    rec_type = nir.Conv1d if kind == "crsnn" else nir.Linear
    assert sum(isinstance(n, rec_type) for n in g.nodes.values()) == 2
    cycle = {("lif_0", "delay_0"), ("delay_0", f"{'conv' if kind == 'crsnn' else 'linear'}_0")}
    assert cycle <= set(map(tuple, g.edges))


@pytest.mark.parametrize("kind", ["crsnn", "delrec"])
def test_checkpoint_to_nir_to_simulator_equals_the_checkpoint_integer_mode(trained, kind):
    ck, path = trained[kind]
    export_main([str(ck), str(path)])
    model, _ = load_checkpoint(ck, require_integer=True)
    compared, spikes, readout = check_export(model, path, n_samples=6, steps=70, seed=3)
    assert compared > 0 and spikes == 0 and readout == 0
    # and the reader gives back exactly the checkpoint's integer network
    x = np.random.default_rng(0).integers(0, 4, (3, 50, 12))
    a, b = simulate(load_nir(path), x), simulate(model.to_integer(), x)
    assert np.array_equal(a.readout_v, b.readout_v)


def test_export_errors_are_one_line_with_non_zero_exit(trained, tmp_path, capsys):
    ck, _ = trained["crsnn"]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cases = [([str(tmp_path / "missing.pt"), str(tmp_path / "o.nir")], "no such file"),
             ([str(tmp_path / "junk.pt"), str(tmp_path / "o.nir")], "junk.pt"),
             ([str(ck), str(tmp_path / "no" / "dir" / "o.nir")], "cannot write")]
    for argv, needle in cases:
        assert export_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    float_ck = tmp_path / "float.pt"
    assert train_main(["--data", DATA, "--hidden", "8", "--epochs", "1", "--qat-start", "-1", "--out", str(float_ck),
                       "--no-progress"]) == 0
    capsys.readouterr()
    assert export_main([str(float_ck), str(tmp_path / "f.nir")]) == 2
    assert "float-only" in capsys.readouterr().err
    assert not (tmp_path / "f.nir").exists() and not (tmp_path / "o.nir").exists()


@pytest.mark.lava
@pytest.mark.parametrize("kind", ["crsnn", "delrec"])
def test_verify_on_lava_reports_zero_mismatches(trained, kind, tmp_path, capsys):
    ck, path = trained[kind]
    export_main([str(ck), str(path)])
    capsys.readouterr()
    rc = verify_main([str(ck), str(path), "--data", DATA, "-n", "16", "--out", str(tmp_path / "v")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert out[-1].startswith("lava-vs-integer: 0 mismatching spikes, 0 mismatching readout values over 16 samples; "
                              "accuracy float ")
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["mismatching_spikes"] == 0 and rep["accuracy"]["integer"] == rep["accuracy"]["lava"]
    assert sum(rep["spikes_per_layer"]) > 0
    assert (tmp_path / "v.png").stat().st_size > 10_000


def test_verify_refuses_a_nir_file_of_another_checkpoint(trained, tmp_path, capsys):
    export_main([str(trained["crsnn"][0]), str(trained["crsnn"][1])])
    export_main([str(trained["delrec"][0]), str(trained["delrec"][1])])
    capsys.readouterr()
    assert verify_main([str(trained["crsnn"][0]), str(trained["delrec"][1]), "--data", DATA, "-n", "4",
                        "--out", str(tmp_path / "v")]) == 2
    assert "is not the integer network of" in capsys.readouterr().err


@pytest.mark.lava
def test_run_on_lava_and_sim_agree_and_report_measures_synops(trained, tmp_path, capsys):
    ck, path = trained["crsnn"]
    export_main([str(ck), str(path)])
    capsys.readouterr()
    accs = {}
    for backend in ("sim", "lava-cpu"):
        assert run_main([str(path), "--data", DATA, "-n", "12", "--backend", backend,
                         "--json", str(tmp_path / f"{backend}.json")]) == 0
        out = capsys.readouterr().out
        assert "true\\pred" in out
        accs[backend] = json.loads((tmp_path / f"{backend}.json").read_text())["accuracy"]
    assert accs["sim"] == accs["lava-cpu"]
    assert run_main([str(path), "--data", DATA, "-n", "2", "--backend", "loihi2"]) == 2
    assert "cannot run on Loihi 2" in capsys.readouterr().err
    assert report_main([str(path), "--data", DATA, "-n", "8"]) == 0
    out = capsys.readouterr().out
    assert "synaptic ops per sample" in out and "conv k=3" in out


def test_verify_sample_count_accepts_all_and_refuses_non_positive(trained, tmp_path, capsys):
    from crsnn.deploy.cli import _count

    assert _count("all") is None and _count("5") == 5
    with pytest.raises(SystemExit) as exc:
        verify_main([str(trained["crsnn"][0]), str(trained["crsnn"][1]), "--data", DATA, "-n", "0"])
    assert exc.value.code == 2
    assert "positive number of samples or 'all'" in capsys.readouterr().err
