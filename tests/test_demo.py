"""The end-to-end demo (make demo) on a tiny configuration: every step runs for real (espeak-ng
synthesis, training with QAT, NIR export, Lava), and the summary is what the files say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crsnn.demo import main

pytestmark = [pytest.mark.lava, pytest.mark.usefixtures("one_torch_thread")]


def test_tiny_demo_runs_end_to_end_and_reports_bit_exact_lava(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    rc = main(["--out", str(out), "--per-class", "4", "--hidden", "16", "16", "--epochs", "3", "--no-progress",
               "--workers", "1"])
    printed = capsys.readouterr().out
    assert rc == 0, printed[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["mismatching_spikes"] == 0 and s["mismatching_readout_values"] == 0
    assert s["test_samples"] == 20  # a quarter of 4 per class, 20 classes
    verify = json.loads((out / "verify.json").read_text())
    assert verify["accuracy"]["lava"] == verify["accuracy"]["integer"] == s["accuracy"]["integer"]
    files = s["files"]
    for f in [*files["data"], files["checkpoint"], files["training log"], files["nir"], *files["plots"],
              *files["reports"]]:
        assert Path(f).is_file() and Path(f).stat().st_size > 0, f
    assert "-> bit-exact" in printed and str(out / "crsnn.nir") in printed.splitlines()[-3]
    # a second run reuses the synthesized data instead of generating it again
    rc = main(["--out", str(out), "--per-class", "4", "--hidden", "16", "16", "--epochs", "1", "--no-progress"])
    assert rc == 0
    assert f"data: reusing {out / 'data'}" in capsys.readouterr().out


def test_demo_reports_a_failing_step_by_name(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "data").write_text("not a folder")  # the data step cannot write there
    rc = main(["--out", str(out), "--per-class", "1", "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "crsnn demo: FAILED" in err and str(out / "data") in err and "Traceback" not in err
    assert not (out / "crsnn.pt").exists()
