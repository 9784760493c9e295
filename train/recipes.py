"""Named training presets: ``crsnn-train --recipe shd | ssc | fsdd``.

A recipe is a set of ``crsnn-train`` option values (argparse ``dest`` names). It replaces the
command-line defaults, and every option the user gives explicitly beats it:
``crsnn-train --recipe shd --epochs 10`` trains the SHD recipe for 10 epochs. The recipe's name
and the values it set are printed at the start and stored in the checkpoint's metadata.

- ``shd`` / ``ssc``: the hyperparameters of the CRSNN paper for the Spiking Heidelberg Digits and
  Spiking Speech Commands (hidden sizes, dropouts, leak, delay initialisation and spread
  schedule, learning rates, binning, augmentation). One deliberate difference: the conv kernels'
  learning rate follows crsnn's rule (:func:`crsnn.models.network.kernel_lr_scale`) instead of
  the weights' one; give ``--lr-kernel`` to set it.
- ``fsdd``: the best recipe found here for short real recordings of isolated words from few
  speakers (the Free Spoken Digit Dataset encoded with ``crsnn-data encode``), chosen on held-out
  speakers (leave-one-speaker-out folds; ``bench/fsdd.py`` runs all five). What mattered, measured
  as integer accuracy on two held-out voices (theo / jackson, 2 x 128, 30 epochs): the defaults
  82.0 / 72.2 %; plus a random spectral tilt and band masks 83.8 / 68.0 %; plus 10 instead of 5
  cochlea channels per input (coarser groups blur the speaker-specific pitch harmonics of the low
  channels) 88.0 / 75.4 %; stronger channel shifts (8 inputs), 20 % stretch, same-class mixing and
  dropout 0.4 together hurt (81.0 / 61.0 %). Samples are cut at 0.8 s (99 % of the words are
  shorter than 1 s, 95 % than 0.7 s). Later, on all five folds of recordings cut to their speech
  (``crsnn-data encode --trim-db 20``, one seed): 74.9 % with this recipe; a 20 % time stretch
  76.7 %, kernel 5 75.3 %, channel shifts of 4 inputs 69.3 % (kept: one seed does not separate the
  first two from the recipe). A second seed undid the stretch (71.2 % against the recipe's
  73.6 %); kernel 5 on three seeds gave 73.8 % against the recipe's 73.5 %. None of these beat the
  recipe on the folds they finished (same folds, seed 0): hidden tau 4 steps (56 / 69 / 77 % on
  george / jackson / lucas against 61 / 81 / 77), learned leaks (47 / 75 / 79 / 75 % on four folds
  against 61 / 81 / 77 / 71), training copies of every recording played 10 % slower and faster
  (speed perturbation before encoding: 53 % on george). A cochlea with slow adaptation (300 ms, a
  per-channel level normalisation) left the linear baseline unchanged (53.3 against 53.8 % over
  the folds). The folds' spread between seeds is large (george 57-61 %, jackson 71-81 %): judge a
  change on several seeds.

  The folds are now encoded with the per-recording channel equalisation (``crsnn-data encode
  --equalize 0.5``, :func:`crsnn.train.data.cochlea.equalize_rates`), which is not a training
  option and so not part of the recipe: with the recipe unchanged (3 seeds each) it raised the
  CRSNN from 73.5 to 76.1 %, most on the voice farthest from the others (george 59.6 -> 62.9 %),
  the CRSNN with frozen delays from 71.7 to 76.8 % and with none from 63.3 to 68.1 %, and left
  DelRec where it was (78.3 %). A small recurrent float network (GRU) on the binned
  counts had pointed there: 70.4 % over the folds as they were, 78.5 % with the counts equalised
  half way, 73.5 % all the way (george gains, lucas loses). Probes on the folds before the
  equalisation that did not beat the recipe (one seed, five folds): inputs grouped by 20 channels
  72.9 %, AdamW weight decay 0.05 73.7 %; the average of the weights of the last 3 or 5 epochs
  changed the held-out accuracy by -0.4 to +0.4 points against the selected epoch (two seeds,
  three folds).

Which layers are recurrent is left to the model (``--recurrent-layers auto``: every layer of a
CRSNN or DelRec, none of a ``dcls`` network) except in ``shd``, whose paper setting has only the
first layer recurrent.
"""

from __future__ import annotations

import argparse
from typing import Sequence

RECIPES: dict[str, dict] = {
    "shd": {
        "hidden": [256, 256], "recurrent_layers": "1", "batchnorm": True, "dropout": 0.4, "rec_dropout": 0.2,
        "tau": 1.1, "tau_out": 2.0, "delay_init": "uniform:10:30", "sigma0": 10.0, "sigma_gamma": 0.95,
        "lr": 1e-3, "lr_delay": 5e-2, "weight_decay": 1e-5, "schedule": "onecycle", "batch_size": 128, "epochs": 100,
        "loss": "sum_softmax", "dt": 0.01, "max_time": 1.0, "channel_group": 5, "augment_shift": 2,
        "augment_mix": 0.5,
    },
    "ssc": {
        "hidden": [256, 256, 256], "batchnorm": False, "dropout": 0.1,
        "rec_dropout": 0.3, "tau": 2.0, "tau_out": 2.0, "delay_init": "halfnormal:12", "sigma0": 10.0,
        "sigma_gamma": 0.95, "lr": 1e-3, "lr_delay": 5e-2, "weight_decay": 1e-5, "schedule": "onecycle",
        "batch_size": 256, "epochs": 100, "loss": "mean", "dt": 1.4 / 250, "max_time": 1.4, "channel_group": 5,
    },
    "fsdd": {
        "hidden": [128, 128], "batchnorm": True, "dropout": 0.2, "rec_dropout": 0.0,
        "tau": 2.0, "tau_out": 2.0, "lr": 5e-3, "lr_delay": 5e-2, "weight_decay": 1e-5, "schedule": "cosine",
        "batch_size": 32, "epochs": 20, "loss": "sum_softmax", "dt": 0.01, "max_time": 0.8, "channel_group": 10,
        "augment_shift": 1, "augment_channel_shift": 2, "augment_stretch": 0.1, "augment_noise": 0.005,
        "augment_tilt": 3.0, "augment_freq_mask": 5,
    },
}


def recipe_names() -> list[str]:
    """The recipe names, sorted."""
    return sorted(RECIPES)


def requested_recipe(argv: Sequence[str]) -> str | None:
    """The value of ``--recipe`` in ``argv`` (None when absent); an unknown name is left for the
    main parser to refuse (its ``choices``)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe")
    known, _ = pre.parse_known_args(list(argv))
    return known.recipe


def apply_recipe(parser: argparse.ArgumentParser, name: str | None) -> dict:
    """Make recipe ``name``'s values the defaults of ``parser`` (so that explicit options win);
    returns those values (``{}`` for None or an unknown name)."""
    values = dict(RECIPES.get(name or "", {}))
    known = {a.dest for a in parser._actions}
    missing = sorted(set(values) - known)
    if missing:  # a recipe naming an option that does not exist is a programming error
        raise KeyError(f"recipe {name}: unknown options {missing}")
    parser.set_defaults(**values)
    return values


def describe(name: str, values: dict, explicit: set[str]) -> str:
    """One line: the recipe's values, marking those an explicit option replaced."""
    parts = []
    for k, v in values.items():
        flag = "--" + k.replace("_", "-")
        shown = " ".join(map(str, v)) if isinstance(v, list) else str(v)
        parts.append(f"{flag} {shown}" + (" (overridden)" if k in explicit else ""))
    return f"recipe {name}: " + ", ".join(parts)
