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
  speakers (leave-one-speaker-out folds; ``bench/fsdd.py`` runs all five): a 2 x 128 network, 20
  epochs, inputs grouped by 10 cochlea channels, samples cut at 0.8 s, and augmentations that
  imitate another voice or microphone (spectral tilt, channel shift, time stretch, band masks,
  jitter and background spikes). What was tried on the way, with its numbers, is in the
  documentation's experiment history (docs/history.md). Encode the folds with
  ``crsnn-data encode --equalize 0.5``: the channel equalisation is not a training option and so
  not part of the recipe.

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
