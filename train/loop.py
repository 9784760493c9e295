"""The training loop: float warm-up, quantization-aware training from ``qat_start``, validation,
best-checkpoint selection, a JSON log of every epoch, and evaluation in float / QAT / integer
arithmetic. Device-agnostic and DDP-ready (no global state; everything comes in through
:class:`TrainConfig` and :class:`Dist`).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from crsnn.atomic_write import json_bytes, write_together
from crsnn.models.network import SpikingNet

from .checkpoint import (CheckpointError, checkpoint_bytes, checkpoint_dict, get_rng_state, load_checkpoint,
                         plain_values, set_rng_state)
from .datasets import DataBundle

MODES = ("float", "qat", "integer")


@dataclass
class Dist:
    """Process group membership (from torchrun's environment variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Dist":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    def all_sum(self, values: list[float], device) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.tolist()


@dataclass
class TrainConfig:
    """Optimisation settings. ``qat_start``: first QAT epoch (0-based); None or >= epochs: float
    training only (the checkpoint is then float-only; its integer network is a post-training
    quantization). ``lr``: the weights' learning rate; ``lr_delay``: the delays' (steps per
    update); ``lr_kernel``: the CRSNN conv kernels' (None: ``lr`` times
    :func:`crsnn.models.network.kernel_lr_scale`, see there why)."""

    epochs: int = 20
    batch_size: int = 32
    eval_batch_size: int = 256
    lr: float = 1e-3
    lr_delay: float = 5e-2
    lr_kernel: float | None = None
    weight_decay: float = 1e-5
    schedule: str = "cosine"
    qat_start: int | None = None
    grad_clip: float = 0.0
    seed: int = 0
    progress: bool = True

    @property
    def qat_enabled(self) -> bool:
        return self.qat_start is not None and 0 <= self.qat_start < self.epochs


@dataclass
class EvalResult:
    loss: float
    acc: float
    n: int


@dataclass
class TrainResult:
    best_epoch: int
    best_valid_acc: float
    history: list = field(default_factory=list)
    checkpoint: str = ""


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def batch_scores(model: SpikingNet, x: torch.Tensor, mode: str, net=None) -> torch.Tensor:
    """Class scores (B, n_out) float64 on the CPU for one batch in ``mode`` (eval mode assumed).
    QAT and integer scores are computed from the integer readout voltage the same way, so they are
    identical whenever the voltages are."""
    if mode == "float":
        v = model.forward_float(x).double()
    elif mode == "qat":
        v = model.qat_readout_int(x) / float(model.config.readout_scale)
    elif mode == "integer":
        return model.logits(model.forward_integer(x, net))
    else:
        raise ValueError(f"mode must be one of {MODES}")
    return model.logits(v.cpu())


@torch.no_grad()
def evaluate(model: SpikingNet, split, mode: str, batch_size: int = 256, device="cpu",
             dist: Dist | None = None) -> EvalResult:
    """Loss and accuracy of ``model`` (eval mode) on a split, sharded over ranks."""
    dist = dist or Dist()
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    net = model.to_integer() if mode == "integer" else None
    loss_sum, correct, n = 0.0, 0.0, 0.0
    for x, y in split.eval_batches(batch_size, dist.rank, dist.world_size):
        scores = batch_scores(model, x.to(device) if mode != "integer" else x, mode, net)
        loss_sum += float(F.cross_entropy(scores, y, reduction="sum"))
        correct += float((scores.argmax(1) == y).sum())
        n += len(y)
    loss_sum, correct, n = dist.all_sum([loss_sum, correct, n], device)
    model.train(was_training)
    return EvalResult(loss_sum / max(n, 1), correct / max(n, 1), int(n))


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def make_optimizer(model: SpikingNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over :meth:`SpikingNet.param_groups`: each group at its own learning rate (the group
    names are kept in ``opt.param_groups[i]["name"]``)."""
    kernel_scale = None if cfg.lr_kernel is None else cfg.lr_kernel / cfg.lr
    params = []
    for g in model.param_groups(kernel_scale):
        lr = cfg.lr_delay if g["lr_scale"] is None else cfg.lr * g["lr_scale"]
        params.append({"params": g["params"], "lr": lr, "weight_decay": cfg.weight_decay if g["decay"] else 0.0,
                       "name": g["name"]})
    return torch.optim.AdamW(params)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total + 1)
    raise ValueError(f"schedule must be cosine, onecycle or constant, got {cfg.schedule!r}")


def _delay_stats(model: SpikingNet) -> dict:
    out = {}
    for i, layer in enumerate(model.layers):
        if layer.recurrence is not None:
            d = layer.delays.detach()
            out[f"delays{i}"] = {"mean": float(d.mean()), "min": float(d.min()), "max": float(d.max())}
        if hasattr(layer, "ff_delays"):  # dcls: per-synapse feedforward delays
            d = layer.ff_delays.detach()
            out[f"ff_delays{i}"] = {"mean": float(d.mean()), "min": float(d.min()), "max": float(d.max())}
    return out


def log_path_for(out: str | os.PathLike) -> Path:
    """``model.pt`` -> ``model.log.json`` (next to the checkpoint)."""
    p = Path(out)
    return p.with_name(p.stem + ".log.json")


def last_path_for(out: str | os.PathLike) -> Path:
    """``model.pt`` -> ``model.last.pt``: the checkpoint of the latest epoch, with everything
    ``crsnn-train --resume`` needs to continue the run exactly (next to the best one)."""
    p = Path(out)
    return p.with_name(p.stem + ".last.pt")


def _gather(obj, dist: "Dist") -> list:
    if not dist.enabled:
        return [obj]
    out = [None] * dist.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def _restore(resume: dict, model: SpikingNet, opt, sched, dist: "Dist", cfg: "TrainConfig") -> tuple[int, list, tuple]:
    """Load a per-epoch checkpoint's training state; returns (epochs done, history, best)."""
    state = resume["train_state"]
    if int(state.get("world_size", 1)) != dist.world_size:
        raise CheckpointError(f"the run was trained with {state.get('world_size')} process(es); resume it with the "
                              f"same number (not {dist.world_size}) to continue it exactly")
    if int(state.get("epochs", cfg.epochs)) != cfg.epochs:
        raise CheckpointError(f"the run has {state.get('epochs')} epochs, not {cfg.epochs}")
    model.load_state_dict(resume["state_dict"], strict=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"][dist.rank])
    best = tuple(state["best"])
    return int(state["epoch"]), list(resume.get("history") or []), (float(best[0]), float(best[1]), int(best[2]))


def train(model: SpikingNet, data: DataBundle, cfg: TrainConfig, out: str | os.PathLike,
          device: str | torch.device = "cpu", dist: Dist | None = None, metadata: dict | None = None,
          printer=print, callback=None, resume: dict | None = None) -> TrainResult:
    """Train ``model`` on ``data``; write the best checkpoint to ``out``, the latest epoch's
    checkpoint with the full training state to :func:`last_path_for` ``(out)`` and the per-epoch
    log to :func:`log_path_for` ``(out)`` (rank 0), after every epoch and as one unit (see
    :func:`crsnn.atomic_write.write_together`): the three always describe the same run and epoch.
    Best = highest validation accuracy among the epochs of the final phase (QAT epochs when QAT
    is enabled, so the checkpoint is always deployable as trained), ties broken by the lower
    validation loss, then the earlier epoch. ``resume``: a per-epoch checkpoint dict: the run
    continues after its epoch, exactly (weights, optimizer, scheduler, random states, history).
    ``callback(record, model)`` is called on every rank after each epoch. Returns a
    :class:`TrainResult`."""
    dist = dist or Dist()
    device = torch.device(device)
    model.to(device)
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(model, cfg)
    train_split = data["train"]
    steps_per_epoch = math.ceil(math.ceil(len(train_split) / dist.world_size) / cfg.batch_size)
    sched = make_scheduler(opt, cfg, steps_per_epoch)
    out = Path(out)
    log_path = log_path_for(out)
    last_path = last_path_for(out)
    if dist.main:
        out.parent.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    best = (-1.0, -math.inf, -1)  # (valid acc, -valid loss, epoch)
    final_phase = "qat" if cfg.qat_enabled else "float"
    meta = dict(metadata or {})
    meta["train_config"] = asdict(cfg)
    if not meta.get("run_id"):
        meta["run_id"] = uuid.uuid4().hex
    start = 0
    if resume is not None:
        start, history, best = _restore(resume, model, opt, sched, dist, cfg)
    for epoch in range(start, cfg.epochs):
        qat = cfg.qat_enabled and epoch >= cfg.qat_start
        model.set_qat(qat)
        sigma = model.set_epoch(epoch, cfg.epochs)
        model.train()
        t0 = time.perf_counter()
        loss_sum = correct = seen = 0.0
        bar = None
        if cfg.progress and dist.main:
            from tqdm import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs} {'qat' if qat else 'float'}",
                       unit="batch", leave=False, dynamic_ncols=True)
        for x, y in train_split.train_batches(cfg.batch_size, epoch, dist.rank, dist.world_size):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            scores = model.logits(net(x))
            loss = F.cross_entropy(scores, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            model.clamp_delays_()
            b = len(y)
            loss_sum += float(loss.detach()) * b
            correct += float((scores.detach().argmax(1) == y).sum())
            seen += b
            if bar is not None:
                el = time.perf_counter() - t0
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                                sps=f"{seen * dist.world_size / max(el, 1e-9):.0f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        train_time = time.perf_counter() - t0
        loss_sum, correct, seen = dist.all_sum([loss_sum, correct, seen], device)
        val = evaluate(model, data["valid"], "qat" if qat else "float", cfg.eval_batch_size, device, dist)
        rec = {"epoch": epoch + 1, "phase": "qat" if qat else "float", "sigma": sigma,
               "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / max(seen, 1),
               "train_acc": correct / max(seen, 1), "valid_loss": val.loss, "valid_acc": val.acc,
               "samples_per_s": seen / max(train_time, 1e-9), "epoch_time_s": train_time,
               "time_s": time.perf_counter() - t0, **_delay_stats(model)}
        phase = rec["phase"]
        key = (val.acc, -val.loss, epoch)
        improved = phase == final_phase and key[:2] > best[:2]
        if improved:
            best = key
        rec["best"] = improved
        history.append(rec)
        if dist.main:
            printer(f"epoch {epoch + 1:3d}/{cfg.epochs} {phase:5s} sigma {sigma:6.3f} | train loss {rec['train_loss']:.4f} "
                    f"acc {100 * rec['train_acc']:6.2f}% | valid loss {val.loss:.4f} acc {100 * val.acc:6.2f}% | "
                    f"{rec['samples_per_s']:.0f} samples/s{' *' if improved else ''}")
        # checkpoint, per-epoch checkpoint and log: one unit (random states gathered from every rank)
        rng = _gather(get_rng_state(), dist)
        if dist.main:
            ck = checkpoint_dict(model, {**meta, "epoch": epoch + 1, "valid_acc": val.acc, "valid_loss": val.loss,
                                         "phase": phase}, history)
            state = {"run_id": meta["run_id"], "epoch": epoch + 1, "epochs": cfg.epochs, "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "best": list(best), "rng": rng,
                     "world_size": dist.world_size, "out_name": out.name}
            has_best = best[2] >= 0
            items = [(out, checkpoint_bytes(ck))] if improved else [] if has_best else [(out, None)]  # None: remove
            items += [(last_path, checkpoint_bytes({**ck, "train_state": state})),
                      (log_path, json_bytes({"run_id": meta["run_id"], "checkpoint": str(out) if has_best else None,
                                             "best_epoch": best[2] + 1 if has_best else None,
                                             "last_checkpoint": str(last_path), "epochs_done": epoch + 1,
                                             "metadata": plain_values(meta, keep_tensors=False),
                                             "epochs": history}))]
            write_together(items)
        if callback is not None:
            callback(rec, model)
        if dist.enabled:
            torch.distributed.barrier()
    return TrainResult(best[2] + 1, best[0], history, str(out))


def evaluate_checkpoint(path: str | os.PathLike, data: DataBundle, batch_size: int = 256, device="cpu",
                    dist: Dist | None = None, modes=MODES) -> dict:
    """Evaluate a saved checkpoint on the test split in each of ``modes``:
    ``{mode: EvalResult}``; QAT is skipped for a float-only checkpoint."""
    model, info = load_checkpoint(path, device=device)
    out = {}
    for mode in modes:
        if mode == "qat" and not info["quantized"]:
            continue
        out[mode] = evaluate(model, data["test"], mode, batch_size, device, dist)
    return out
