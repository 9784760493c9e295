"""``crsnn-data split``: folds derived from one encoding are the files that encoding each fold
again would write, byte for byte; and what it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crsnn.train.data.cli import main
from test_data_encode import LABEL, SPEAKER, _fsdd_like

COMMON = ["--label-pattern", LABEL, "--speaker-pattern", SPEAKER, "--workers", "1", "--quiet"]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("split")
    wavs = _fsdd_like(root / "wavs", digits=(0, 1, 2), speakers=("ann", "bob", "cy"), per=2)
    assert main(["encode", str(wavs), "--out", str(root / "all.h5"), "--seed", "3", *COMMON]) == 0
    return wavs, root / "all.h5"


@pytest.mark.parametrize("test_speakers", ["bob", "ann,cy"])
def test_split_is_byte_identical_to_encoding_the_fold(encoded, tmp_path: Path, test_speakers: str) -> None:
    wavs, all_h5 = encoded
    assert main(["split", str(all_h5), "--test-speakers", test_speakers, "--out", str(tmp_path / "split")]) == 0
    assert main(["encode", str(wavs), "--out", str(tmp_path / "direct"), "--seed", "3",
                 "--test-speakers", test_speakers, *COMMON]) == 0
    for name in ("train.h5", "test.h5"):
        assert (tmp_path / "split" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name


def test_split_refusals(encoded, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wavs, all_h5 = encoded
    assert main(["split", str(all_h5), "--test-speakers", "zoe", "--out", str(tmp_path / "a")]) == 2
    assert "no file of speaker 'zoe'" in capsys.readouterr().err
    assert main(["split", str(all_h5), "--test-speakers", "ann,bob,cy", "--out", str(tmp_path / "b")]) == 2
    assert "leaves no training files" in capsys.readouterr().err
    # a part of a split is not split again
    assert main(["split", str(all_h5), "--test-speakers", "bob", "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["split", str(tmp_path / "c" / "train.h5"), "--test-speakers", "ann", "--out", str(tmp_path / "d")]) == 2
    assert "already the train part of a split" in capsys.readouterr().err
    # a file without speakers
    assert main(["encode", str(wavs), "--out", str(tmp_path / "nospk.h5"), "--label-pattern", LABEL, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["split", str(tmp_path / "nospk.h5"), "--test-speakers", "ann", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "no speakers to split by" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e" / "train.h5").exists()


def test_split_and_show_do_not_write_over_their_input(encoded, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, all_h5 = encoded
    folder = tmp_path / "fold"
    folder.mkdir()
    (folder / "test.h5").symlink_to(all_h5)
    before = all_h5.read_bytes()
    assert main(["split", str(all_h5), "--test-speakers", "bob", "--out", str(folder)]) == 2
    assert "it is also an input of this command" in capsys.readouterr().err
    assert main(["show", str(all_h5), "--png", str(all_h5)]) == 2
    assert "it is also an input of this command" in capsys.readouterr().err
    assert all_h5.read_bytes() == before and not (folder / "train.h5").exists()


def test_a_fifo_among_the_recordings_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A FIFO named like a recording would block the encoding forever: one line, exit 2."""
    wavs = _fsdd_like(tmp_path / "wavs", digits=(0,), speakers=("ann",), per=1)
    os.mkfifo(wavs / "1_ann_0.wav")
    assert main(["encode", str(wavs), "--out", str(tmp_path / "x.h5"), *COMMON]) == 2
    err = capsys.readouterr().err
    assert "1_ann_0.wav: not a regular file (a FIFO)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()
