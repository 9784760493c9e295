"""``bench/fsdd.py``'s bookkeeping: the statistics of a model's leave-one-speaker-out runs (mean
over every run, std over folds of the seeds' mean, std over seeds of the LOSO mean) and which rows
of an earlier result ``--keep-rows`` keeps (only those made with the same recipe values, options,
encoding and folds)."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import _common  # noqa: E402
import fsdd  # noqa: E402


def _run(acc: float) -> dict:
    return {"float": acc + 0.01, "integer": acc, "n": 500}


def test_fold_statistics_separates_folds_and_seeds():
    folds = {"a": {0: _run(0.6), 1: _run(0.8)}, "b": {0: _run(0.9), 1: _run(0.9)}}
    st = fsdd.fold_statistics(folds)
    assert st["integer_mean"] == pytest.approx(0.8)
    # per-fold means 0.7 and 0.9: sample std over folds
    assert st["integer_std"] == pytest.approx(0.1414213, rel=1e-5)
    # LOSO means per seed: 0.75 (seed 0) and 0.85 (seed 1)
    assert st["integer_seed_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert st["float_mean"] == pytest.approx(0.81)
    one_seed = fsdd.fold_statistics({"a": {0: _run(0.6)}, "b": {0: _run(0.8)}})
    assert one_seed["integer_seed_std"] is None and one_seed["integer_mean"] == pytest.approx(0.7)


def _write_result(folder: Path, **changes) -> None:
    result = {"recipe": "fsdd", "recipe_values": fsdd.recipe_values("fsdd"), "train_args": ["--recipe", "fsdd"],
              "encode_options": fsdd.ENCODE_OPTIONS, "speakers": ["a", "b"],
              "rows": {"crsnn": {"seeds": [0]}, "dcls": {"seeds": [0]}, "no-such-model": {"seeds": [0]}}}
    result.update(changes)
    (folder / "fsdd.json").write_text(json.dumps(result))


@pytest.mark.parametrize("change, kept", [
    ({}, {"dcls"}),  # the model run now (crsnn) and unknown models are not kept
    ({"recipe_values": {"epochs": 1}}, set()),  # the recipe meant something else then
    ({"train_args": ["--recipe", "fsdd", "--epochs", "5"]}, set()),
    ({"encode_options": []}, set()),
    ({"speakers": ["a"]}, set()),
])
def test_kept_rows_only_from_a_comparable_result(tmp_path, monkeypatch, change, kept):
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    _write_result(tmp_path, **change)
    args = Namespace(tag="fsdd", recipe="fsdd", models=["crsnn"], encode=fsdd.ENCODE_OPTIONS)
    assert set(fsdd.kept_rows(args, ["--recipe", "fsdd"], ["a", "b"])) == kept


def test_kept_rows_without_an_earlier_result(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    assert fsdd.kept_rows(Namespace(tag="fsdd", recipe="fsdd", models=["crsnn"], encode=fsdd.ENCODE_OPTIONS), [], ["a"]) == {}
