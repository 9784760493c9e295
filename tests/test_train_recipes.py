"""Training defaults and recipes: per-group learning rates, the ``auto`` defaults, and
``--recipe`` precedence (an explicit option beats the recipe, which beats the defaults)."""

from __future__ import annotations

import math

import pytest
import torch

from crsnn.models.network import ModelConfig, build_model, kernel_lr_scale
from crsnn.train.checkpoint import load_checkpoint
from crsnn.train.cli import default_delay_init, main, model_config, parse_options
from crsnn.train.loop import TrainConfig, make_optimizer
from crsnn.train.recipes import RECIPES

SYN = "synthetic:n_steps=30,n_channels=8,min_gap=2,gap_step=3,train=64,valid=32,test=32"


def _groups(opt) -> dict:
    return {g["name"]: g for g in opt.param_groups}


def test_each_parameter_group_gets_its_own_learning_rate():
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_in=10, n_out=3, hidden=[48, 12], model="crsnn", kernel=3, learn_beta=True))
    g = _groups(make_optimizer(model, TrainConfig(lr=2e-3, lr_delay=0.07, weight_decay=1e-4)))
    assert set(g) == {"feedforward", "norm", "kernel0", "kernel1", "leak", "delays"}
    assert g["kernel0"]["lr"] == pytest.approx(2e-3 * math.sqrt(48 / 3))
    assert g["kernel1"]["lr"] == pytest.approx(2e-3 * math.sqrt(12 / 3))
    assert g["delays"]["lr"] == 0.07 and g["feedforward"]["lr"] == 2e-3
    # weight decay only where the parameter is a per-synapse weight
    assert g["feedforward"]["weight_decay"] == 1e-4
    assert all(g[n]["weight_decay"] == 0.0 for n in ("norm", "kernel0", "leak", "delays"))
    # every trainable parameter is in exactly one group
    seen = [id(p) for grp in g.values() for p in grp["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    # an explicit kernel learning rate replaces the rule
    g = _groups(make_optimizer(model, TrainConfig(lr=2e-3, lr_kernel=0.5)))
    assert g["kernel0"]["lr"] == g["kernel1"]["lr"] == 0.5


def test_delrec_dense_recurrence_trains_at_the_weight_rate():
    model = build_model(ModelConfig(n_in=10, n_out=3, hidden=[16], model="delrec"))
    g = _groups(make_optimizer(model, TrainConfig(lr=1e-3)))
    assert g["recurrent"]["lr"] == 1e-3 and g["recurrent"]["weight_decay"] == TrainConfig().weight_decay
    assert not any(n.startswith("kernel") for n in g)


def test_kernel_rule_matches_a_dense_row():
    assert kernel_lr_scale(64, 3) == pytest.approx(math.sqrt(64 / 3))
    assert kernel_lr_scale(3, 3) == 1.0


def test_auto_defaults_follow_the_data_and_the_leak():
    assert default_delay_init(100) == ["uniform", 0.0, 30.0]
    assert default_delay_init(48) == ["uniform", 0.0, 16.0]
    assert default_delay_init(2) == ["uniform", 0.0, 1.0]
    args = parse_options(["--tau", "3"])
    cfg = model_config(args, 12, 4, 0, 0.01, n_steps=60)
    assert cfg.sigma0 == 2.0 and cfg.delay_init == ["uniform", 0.0, 20.0]
    cfg = model_config(parse_options(["--sigma0", "7", "--delay-init", "halfnormal:5"]), 12, 4, 0, 0.01, 60)
    assert cfg.sigma0 == 7.0 and cfg.delay_init == ["halfnormal", 5.0]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_replaces_the_defaults_and_explicit_options_win(name):
    values = RECIPES[name]
    args = parse_options(["--recipe", name])
    for key, value in values.items():
        assert getattr(args, key) == value, key
    assert args.recipe_values == values
    # every recipe builds a valid model
    model_config(args, 140, 20, 0, args.dt, 100)
    # explicit options beat the recipe, wherever they stand on the command line
    args = parse_options(["--epochs", "3", "--recipe", name, "--lr", "0.0123"])
    assert args.epochs == 3 and args.lr == 0.0123
    assert args.dropout == values.get("dropout", parse_options([]).dropout)


def test_no_recipe_keeps_the_plain_defaults():
    args = parse_options([])
    assert args.recipe is None and args.recipe_values == {}
    assert args.lr == 5e-3 and args.hidden == [256, 256]


def test_unknown_recipe_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        parse_options(["--recipe", "timit"])
    assert e.value.code == 2
    assert "invalid choice: 'timit'" in capsys.readouterr().err


def test_recipe_is_printed_and_stored_in_the_checkpoint(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "m.pt"
    rc = main(["--recipe", "fsdd", "--data", SYN, "--hidden", "8", "--epochs", "2", "--batch-size", "16",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "recipe fsdd: --hidden 8" not in text and "--hidden 128 128 (overridden)" in text
    assert "--lr 0.005," in text
    _, info = load_checkpoint(out)
    rec = info["metadata"]["recipe"]
    assert rec["name"] == "fsdd" and rec["overridden"] == ["batch_size", "epochs", "hidden"]
    assert rec["values"]["augment_stretch"] == RECIPES["fsdd"]["augment_stretch"]
    assert info["config"]["hidden"] == [8] and info["config"]["dropout"] == RECIPES["fsdd"]["dropout"]


def test_augment_options_build_the_training_augmentation():
    from crsnn.train.cli import augment_of

    aug = augment_of(parse_options(["--augment-shift", "2", "--augment-mix", "0.5", "--augment-channel-shift", "3",
                                    "--augment-stretch", "0.2", "--augment-noise", "0.01", "--augment-tilt", "2",
                                    "--augment-freq-mask", "4"]))
    assert (aug.max_shift, aug.mix_prob, aug.channel_shift, aug.stretch, aug.noise, aug.tilt, aug.freq_mask) == \
        (2, 0.5, 3, 0.2, 0.01, 2.0, 4)
    assert not augment_of(parse_options([])).enabled
