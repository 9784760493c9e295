"""``crsnn-train``: train a CRSNN / DelRec with quantization-aware training (also ``python -m
crsnn.train``).

    crsnn-train --data DIR_OR_H5 --model crsnn --hidden 256 256 --kernel 3 --epochs 50 --out model.pt
    crsnn-train --data synthetic --model crsnn --hidden 32 32 --epochs 12 --out /tmp/m.pt
    crsnn-train --summary --model crsnn --hidden 256 256 --kernel 3
    crsnn-train --evaluate model.pt --data DIR_OR_H5
    torchrun --nproc_per_node 2 -m crsnn.train --data ... --device cpu      # DDP (gloo on CPU)

The last line of a training run is ``test accuracy: float X% | integer Y%`` (the best
checkpoint on the test split; integer = the integer simulator on ``model.to_integer()``).
Errors about the data or a checkpoint are reported in one line (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from crsnn.atomic_write import write_json_atomic
from crsnn.models.network import LOSSES, MODELS, ModelConfig, build_model, format_counts

from .checkpoint import CheckpointError, load_checkpoint, update_metadata
from .datasets import DataError, load_data, message_bits_for
from .loop import Dist, TrainConfig, evaluate_checkpoint, log_path_for, train


class UsageError(ValueError):
    """Bad command-line values (one-line message)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crsnn-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("what to do")
    g.add_argument("--data", help="SHD-layout directory or .h5 file, or 'synthetic[:key=value,...]'")
    g.add_argument("--out", default="model.pt", help="checkpoint path (the JSON log goes next to it)")
    g.add_argument("--summary", action="store_true", help="print parameter counts for the model and exit")
    g.add_argument("--evaluate", metavar="CKPT", help="evaluate a checkpoint on the test split of --data and exit")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=MODELS, default="crsnn")
    m.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden layer sizes")
    m.add_argument("--kernel", type=int, default=3, help="CRSNN conv kernel size")
    m.add_argument("--recurrent-layers", default="all", help="'all', 'none' or comma-separated hidden layer indices")
    m.add_argument("--no-batchnorm", dest="batchnorm", action="store_false", help="no BatchNorm after the linear maps")
    m.add_argument("--dropout", type=float, default=0.4, help="feedforward (spike) dropout")
    m.add_argument("--rec-dropout", type=float, default=0.2, help="recurrent-current dropout")
    m.add_argument("--tau", type=float, default=2.0, help="hidden membrane time constant in steps (beta = 1 - 1/tau)")
    m.add_argument("--tau-out", type=float, default=2.0, help="readout time constant in steps")
    m.add_argument("--learn-leak", action="store_true", help="learn the per-layer leak factors")
    m.add_argument("--surrogate", default="atan:5", help="atan:ALPHA or triangle:ALPHA")
    m.add_argument("--delay-init", default="uniform:10:30",
                   help="uniform:LO:HI, halfnormal:STD or constant:D (steps, clamped to 0..62)")
    m.add_argument("--sigma0", type=float, default=10.0, help="initial delay spread")
    m.add_argument("--sigma-gamma", type=float, default=0.95, help="spread decay: sigma_e = sigma0 (gamma^(100/E))^e")
    m.add_argument("--vth", type=int, default=1024, help="integer threshold mantissa of hidden neurons")
    m.add_argument("--readout-scale", type=int, default=4096, help="integer v units per float readout unit")
    m.add_argument("--input-bits", type=int, default=None,
                   help="input message bits (default: from the largest training count; 0 = binary)")
    m.add_argument("--loss", choices=LOSSES, default="sum_softmax")
    m.add_argument("--n-in", type=int, default=140, help="input channels (only for --summary)")
    m.add_argument("--n-out", type=int, default=20, help="classes (only for --summary)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--qat-start", type=int, default=None,
                   help="first QAT epoch, 0-based (default: the last quarter of the epochs; -1: no QAT)")
    t.add_argument("--batch-size", type=int, default=32, help="per process")
    t.add_argument("--eval-batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-delay", type=float, default=5e-2)
    t.add_argument("--weight-decay", type=float, default=1e-5)
    t.add_argument("--schedule", choices=("cosine", "onecycle", "constant"), default="cosine")
    t.add_argument("--grad-clip", type=float, default=0.0, help="gradient norm clip (0: off)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per process (0: torch's default). The time loop runs many small "
                        "ops: with several threads, a CPU shared with other busy processes can get 10-100x slower")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    d = p.add_argument_group("data")
    d.add_argument("--dt", type=float, default=0.01, help="seconds per time step")
    d.add_argument("--max-time", type=float, default=1.0, help="seconds of each sample kept")
    d.add_argument("--channel-group", type=int, default=5, help="sum groups of this many channels (700 -> 140)")
    d.add_argument("--valid-fraction", type=float, default=0.1, help="validation share of the training file")
    d.add_argument("--augment-shift", type=int, default=0, help="random per-channel time shift (steps)")
    d.add_argument("--augment-mix", type=float, default=0.0, help="probability of same-class mixing")
    d.add_argument("--max-train", type=int, default=None, help="use only the first N training samples")
    return p


def _recurrent_flags(spec: str, n: int) -> list[bool]:
    spec = spec.strip().lower()
    if spec == "all":
        return [True] * n
    if spec == "none":
        return [False] * n
    try:
        idx = {int(s) for s in spec.split(",") if s.strip()}
    except ValueError:
        raise UsageError(f"--recurrent-layers: expected all, none or indices like 1 or 0,1; got {spec!r}") from None
    if any(i < 0 or i >= n for i in idx):
        raise UsageError(f"--recurrent-layers: indices must be in 0..{n - 1}")
    return [i in idx for i in range(n)]


def _delay_init(spec: str) -> list:
    parts = spec.split(":")
    try:
        if parts[0] == "uniform" and len(parts) == 3:
            return ["uniform", float(parts[1]), float(parts[2])]
        if parts[0] in ("halfnormal", "constant") and len(parts) == 2:
            return [parts[0], float(parts[1])]
    except ValueError:
        pass
    raise UsageError(f"--delay-init: expected uniform:LO:HI, halfnormal:STD or constant:D, got {spec!r}")


def model_config(args, n_in: int, n_out: int, input_bits: int, dt: float) -> ModelConfig:
    try:
        return ModelConfig(n_in=n_in, n_out=n_out, hidden=args.hidden, model=args.model, kernel=args.kernel,
                           recurrent=_recurrent_flags(args.recurrent_layers, len(args.hidden)),
                           batchnorm=args.batchnorm, dropout=args.dropout, rec_dropout=args.rec_dropout, tau=args.tau,
                           tau_out=args.tau_out, learn_beta=args.learn_leak, surrogate=args.surrogate, vth=args.vth,
                           readout_scale=args.readout_scale, input_message_bits=input_bits,
                           delay_init=_delay_init(args.delay_init), sigma0=args.sigma0, sigma_gamma=args.sigma_gamma,
                           loss=args.loss, dt=dt)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _device(spec: str, dist: Dist) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        spec = f"cuda:{dist.local_rank}"
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device available")
    return dev


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def run(args) -> int:
    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.summary:
        print(format_counts(model_config(args, args.n_in, args.n_out, 0, args.dt)))
        return 0
    if not args.data:
        raise UsageError("--data is required (a directory / .h5 file in SHD layout, or 'synthetic')")
    dist = Dist.from_env()
    device = _device(args.device, dist)
    if dist.enabled and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    say = print if dist.main else (lambda *a, **k: None)
    data = load_data(args.data, dt=args.dt, max_time=args.max_time, channel_group=args.channel_group,
                     valid_fraction=args.valid_fraction, seed=args.seed, augment_shift=args.augment_shift,
                     augment_mix=args.augment_mix, max_train=args.max_train, progress=args.progress and dist.main)
    if args.evaluate:
        model, info = load_checkpoint(args.evaluate)
        if info["n_in"] != data.n_in:
            raise UsageError(f"{args.evaluate}: model has {info['n_in']} inputs, the data {data.n_in}")
        res = evaluate_checkpoint(args.evaluate, data, args.eval_batch_size, device, dist)
        for mode, r in res.items():
            say(f"{mode:8s} test loss {r.loss:.4f} accuracy {_pct(r.acc)} ({r.n} samples)")
        say(f"test accuracy: float {_pct(res['float'].acc)} | integer {_pct(res['integer'].acc)}")
        return 0
    if args.epochs < 1:
        raise UsageError("--epochs must be >= 1")
    qat_start = args.qat_start
    if qat_start is None:
        qat_start = args.epochs - max(1, args.epochs // 4)
    if qat_start < 0:
        qat_start = None
    bits = args.input_bits if args.input_bits is not None else message_bits_for(data["train"].max_count())
    torch.manual_seed(args.seed)  # same initial weights on every rank (DDP also broadcasts them)
    model = build_model(model_config(args, data.n_in, data.n_classes, bits, data.dt))
    torch.manual_seed(args.seed + 1 + dist.rank)  # per-rank dropout streams
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, lr=args.lr,
                      lr_delay=args.lr_delay, weight_decay=args.weight_decay, schedule=args.schedule,
                      qat_start=qat_start, grad_clip=args.grad_clip, seed=args.seed, progress=args.progress)
    say(f"data: {data.source.get('path', data.source.get('kind'))}: {len(data['train'])} train / "
        f"{len(data['valid'])} valid / {len(data['test'])} test samples, T={data.n_steps}, {data.n_in} inputs "
        f"({bits} message bits), {data.n_classes} classes")
    say(format_counts(model.config))
    say(f"training on {device} x {dist.world_size} process(es); QAT from epoch "
        f"{qat_start + 1 if cfg.qat_enabled else 'never'} of {cfg.epochs}")
    if cfg.qat_enabled and qat_start == 0 and model.config.batchnorm:
        say("warning: QAT from the first epoch: BatchNorm is folded with its running statistics, which only "
            "float epochs estimate (they stay at mean 0, variance 1); use --qat-start >= 1 or --no-batchnorm")
    meta = {"data": data.source, "n_steps": data.n_steps, "class_names": data.class_names, "seed": args.seed,
            "world_size": dist.world_size, "argv": args.argv}
    result = train(model, data, cfg, args.out, device, dist, meta, printer=say)
    if dist.enabled:
        torch.distributed.barrier()
    res = evaluate_checkpoint(args.out, data, args.eval_batch_size, device, dist)
    if dist.main:
        test = {m: {"loss": r.loss, "acc": r.acc, "n": r.n} for m, r in res.items()}
        update_metadata(args.out, {"test": test})
        log = log_path_for(args.out)
        _update_log(log, test)
        say(f"best epoch {result.best_epoch} (valid accuracy {_pct(result.best_valid_acc)}) -> {args.out}, log {log}")
        for mode, r in res.items():
            say(f"{mode:8s} test loss {r.loss:.6f} accuracy {_pct(r.acc)} ({r.n} samples)")
        if "qat" in res:
            same = res["qat"].acc == res["integer"].acc and res["qat"].loss == res["integer"].loss
            say(f"QAT forward vs integer simulator: {'identical' if same else 'DIFFERENT'} loss and accuracy")
        say(f"test accuracy: float {_pct(res['float'].acc)} | integer {_pct(res['integer'].acc)}")
    if dist.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def _update_log(path: Path, test: dict) -> None:
    import json

    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    obj["test"] = test
    write_json_atomic(path, obj)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except (CheckpointError, DataError, UsageError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"crsnn-train: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crsnn-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
