"""A few training steps of a model on a task, half float and half QAT: the starting point of the
tests that compare the trained QAT forward with the integer simulator."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def train_steps(model, x: torch.Tensor, y: torch.Tensor, steps: int = 8, batch: int = 32, delay_lr: float = 0.3,
                lr: float = 1e-2):
    """``steps`` Adam steps of ``batch`` samples each (the first half float, the rest QAT), the
    delays at ``delay_lr``, everything else at ``lr``; returns the model in eval mode.
    ``x``: (steps * batch, T, C) inputs, ``y``: (steps * batch,) labels."""
    opt = torch.optim.Adam([{"params": g["params"], "lr": delay_lr if g["name"] == "delays" else lr}
                            for g in model.param_groups(kernel_scale=1.0)])
    model.train()
    for step in range(steps):
        model.set_qat(step >= steps // 2)
        model.set_epoch(step, steps)
        sl = slice(batch * step, batch * (step + 1))
        loss = F.cross_entropy(model.logits(model(x[sl])), y[sl])
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clamp_delays_()
    return model.eval()
