"""``crsnn-train``: train a CRSNN / DelRec with quantization-aware training (also ``python -m
crsnn.train``).

    crsnn-train --data DIR_OR_H5 --model crsnn --hidden 256 256 --kernel 3 --epochs 50 --out model.pt
    crsnn-train --data synthetic --model crsnn --hidden 32 32 --epochs 12 --out /tmp/m.pt
    crsnn-train --data synthetic --model dcls --hidden 32 32 --max-delay 12 --epochs 12 --out /tmp/d.pt
    crsnn-train --summary --model crsnn --hidden 256 256 --kernel 3
    crsnn-train --evaluate model.pt --data DIR_OR_H5
    torchrun --nproc_per_node 2 -m crsnn.train --data ... --device cpu      # DDP (gloo on CPU)

The last line of a training run is ``test accuracy: float X% | integer Y%`` (the best
checkpoint on the test split; integer = the integer simulator on ``model.to_integer()``).
Errors about the data or a checkpoint are reported in one line (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterable

import torch

from crsnn import loihi2 as L2
from crsnn.atomic_write import check_writable, json_bytes, write_together
from crsnn.cli_errors import Interrupted, one_line, run_command
from crsnn.output_lock import output_lock
from crsnn.cli_types import (CommandParser, explicit_options, float_range, fraction_below_one, int_range,
                             non_negative_float, non_negative_int, odd_int, positive_float, positive_int, probability)
from crsnn.cli_types import seed as seed_type
from crsnn.models.network import LOSSES, MODELS, ModelConfig, build_model, format_counts

from .checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint, read_checkpoint, with_metadata
from .data.augment import Augment
from .datasets import DataError, data_files, load_data, load_test_data, message_bits_for
from .recipes import RECIPES, apply_recipe, describe, recipe_names, requested_recipe
from .loop import Dist, TrainConfig, evaluate_checkpoint, last_path_for, log_path_for, train

KERNEL_WHY = ("a 'same' convolution with an even kernel needs one more tap on one side, and NIR tools disagree "
              "on which side; crsnn exports odd kernels only")


class UsageError(ValueError):
    """Bad command-line values (one-line message)."""


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="crsnn-train", description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("what to do")
    g.add_argument("--data", help="SHD-layout directory or .h5 file, or 'synthetic[:key=value,...]'")
    g.add_argument("--out", default="model.pt",
                   help="best checkpoint (the per-epoch checkpoint <out stem>.last.pt and the JSON log "
                        "<out stem>.log.json go next to it)")
    g.add_argument("--resume", metavar="LAST_CKPT",
                   help="continue an interrupted run exactly from its per-epoch checkpoint (<out stem>.last.pt); "
                        "its options are reused (only --data, --out, --device, --threads, --no-progress may change)")
    g.add_argument("--force", action="store_true",
                   help="replace an existing --out checkpoint (and its log) of another run")
    g.add_argument("--summary", action="store_true", help="print parameter counts for the model and exit")
    g.add_argument("--evaluate", metavar="CKPT", help="evaluate a checkpoint on the test split of --data and exit")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=MODELS, default="crsnn", help="network kind (recurrence)")
    m.add_argument("--hidden", type=positive_int, nargs="+", default=[256, 256], help="hidden layer sizes")
    m.add_argument("--kernel", type=odd_int(1, why=KERNEL_WHY), default=3,
                   help="CRSNN conv kernel size (odd: 'same' padding is symmetric)")
    m.add_argument("--recurrent-layers", default="auto",
                   help="'all', 'none' or comma-separated hidden layer indices (auto: all, none for dcls)")
    m.add_argument("--max-delay", type=int_range(L2.SYNAPSE_DELAY_MIN, L2.SYNAPSE_DELAY_MAX), default=25,
                   help="dcls: largest feedforward synaptic delay in steps (integer delays 0..MAX-DELAY)")
    m.add_argument("--no-batchnorm", dest="batchnorm", action="store_false", help="no BatchNorm after the linear maps")
    m.add_argument("--dropout", type=fraction_below_one, default=0.1, help="feedforward (spike) dropout")
    m.add_argument("--rec-dropout", type=fraction_below_one, default=0.0, help="recurrent-current dropout")
    m.add_argument("--tau", type=float_range(1), default=2.0,
                   help="hidden membrane time constant in steps (beta = 1 - 1/tau)")
    m.add_argument("--tau-out", type=float_range(1), default=2.0, help="readout time constant in steps")
    m.add_argument("--learn-leak", action="store_true", help="learn the per-layer leak factors")
    m.add_argument("--surrogate", default="atan:5", help="atan:ALPHA or triangle:ALPHA")
    m.add_argument("--delay-init", default="auto",
                   help="uniform:LO:HI, halfnormal:STD or constant:D (steps, clamped to 0..62); auto: "
                        "uniform:0:D with D = min(30, T/3) for T steps per sample")
    m.add_argument("--sigma0", type=non_negative_float, default=None,
                   help="initial delay spread (steps; default: tau - 1, which keeps a leaky neuron's response "
                        "to a spread spike at its full height)")
    m.add_argument("--sigma-gamma", type=float_range(0, 1, lo_open=True), default=0.95,
                   help="spread decay: sigma_e = sigma0 (gamma^(100/E))^e")
    m.add_argument("--vth", type=int_range(1, L2.VTH_MAX), default=1024,
                   help="integer threshold mantissa of hidden neurons")
    m.add_argument("--readout-scale", type=positive_int, default=4096, help="integer v units per float readout unit")
    m.add_argument("--input-bits", type=int_range(0, L2.MAX_MESSAGE_BITS), default=None,
                   help="input message bits (default: from the largest training count; 0 = binary)")
    m.add_argument("--target", choices=("loihi2", "netx"), default="loihi2",
                   help="quantization profile: loihi2, or netx (weights at exponent -1..0, biases multiples of 64: "
                        "what crsnn-export --format netx can write; feedforward models; a lower --vth keeps the "
                        "folded weights in range)")
    m.add_argument("--loss", choices=LOSSES, default="sum_softmax", help="how readout voltages become class scores")
    m.add_argument("--n-in", type=positive_int, default=140, help="input channels (only for --summary)")
    m.add_argument("--n-out", type=positive_int, default=20, help="classes (only for --summary)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=50, help="training epochs")
    t.add_argument("--qat-start", type=int_range(-1), default=None,
                   help="first QAT epoch, 0-based, below --epochs (default: the last quarter of the epochs; "
                        "-1: no QAT)")
    t.add_argument("--batch-size", type=positive_int, default=32, help="training batch size per process")
    t.add_argument("--eval-batch-size", type=positive_int, default=256, help="batch size of validation and test")
    t.add_argument("--recipe", choices=recipe_names(), default=None,
                   help="named preset (the CRSNN paper's for shd / ssc, the best found for fsdd): its values "
                        "replace the defaults, explicit options still win")
    t.add_argument("--lr", type=positive_float, default=5e-3, help="learning rate of the weights")
    t.add_argument("--lr-kernel", type=positive_float, default=None,
                   help="learning rate of the CRSNN conv kernels (default: lr * sqrt(N / k) per layer: a kernel "
                        "of k taps must move as fast as a dense row of N weights)")
    t.add_argument("--lr-delay", type=non_negative_float, default=5e-2, help="learning rate of the delays (steps)")
    t.add_argument("--weight-decay", type=non_negative_float, default=1e-5, help="AdamW weight decay of the weights")
    t.add_argument("--schedule", choices=("cosine", "onecycle", "constant"), default="cosine",
                   help="learning-rate schedule over all steps")
    t.add_argument("--grad-clip", type=non_negative_float, default=0.0, help="gradient norm clip (0: off)")
    t.add_argument("--seed", type=seed_type, default=0, help="seed of weights, data split, shuffling and dropout")
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--threads", type=non_negative_int, default=1,
                   help="torch CPU threads per process (0: torch's default). The time loop runs many small "
                        "ops: with several threads, a CPU shared with other busy processes can get 10-100x slower")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    d = p.add_argument_group("data")
    d.add_argument("--dt", type=positive_float, default=0.01,
                   help="seconds per time step (--evaluate: default from the checkpoint)")
    d.add_argument("--max-time", type=positive_float, default=1.0,
                   help="seconds of each sample kept (--evaluate: default from the checkpoint)")
    d.add_argument("--channel-group", type=positive_int, default=5,
                   help="sum groups of this many channels, 700 -> 140 (--evaluate: default from the checkpoint)")
    d.add_argument("--valid-fraction", type=fraction_below_one, default=0.1,
                   help="validation share of the training file")
    d.add_argument("--augment-shift", type=non_negative_int, default=0, help="random per-channel time shift (steps)")
    d.add_argument("--augment-mix", type=probability, default=0.0, help="probability of same-class mixing")
    d.add_argument("--augment-channel-shift", type=non_negative_int, default=0,
                   help="shift each training sample by up to this many input channels (another voice's pitch / "
                        "vocal tract)")
    d.add_argument("--augment-stretch", type=float_range(0, 1, hi_open=True), default=0.0,
                   help="play each training sample up to this fraction slower or faster")
    d.add_argument("--augment-noise", type=probability, default=0.0,
                   help="background spikes: probability of an extra spike per step and input")
    d.add_argument("--augment-tilt", type=float_range(1), default=1.0,
                   help="random spectral tilt: thin one end of the inputs by up to this factor (1: off; "
                        "microphones and voices differ in tilt)")
    d.add_argument("--augment-freq-mask", type=non_negative_int, default=0,
                   help="silence a random band of up to this many adjacent inputs (SpecAugment)")
    d.add_argument("--max-train", type=positive_int, default=None, help="use only the first N training samples")
    return p


def _recurrent_flags(spec: str, n: int, model: str = "crsnn") -> list[bool]:
    spec = spec.strip().lower()
    if spec == "auto":
        spec = "none" if model == "dcls" else "all"
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


def augment_of(args) -> Augment:
    """The training-data augmentation the ``--augment-*`` options ask for."""
    return Augment(max_shift=args.augment_shift, mix_prob=args.augment_mix, channel_shift=args.augment_channel_shift,
                   stretch=args.augment_stretch, noise=args.augment_noise, tilt=args.augment_tilt,
                   freq_mask=args.augment_freq_mask)


def default_delay_init(n_steps: int) -> list:
    """``--delay-init auto``: uniform over 0..min(30, T/3) steps. The paper's SHD range (10..30
    steps of 10 ms) assumes 100-step samples; on shorter ones most of those delays would point past
    the events that matter, and delays are learned down slowly from there."""
    return ["uniform", 0.0, float(max(1, min(30, int(n_steps) // 3)))]


def model_config(args, n_in: int, n_out: int, input_bits: int, dt: float, n_steps: int = 100) -> ModelConfig:
    """The :class:`ModelConfig` of the options (``auto`` defaults resolved for ``n_steps`` steps)."""
    delay_init = default_delay_init(n_steps) if args.delay_init == "auto" else _delay_init(args.delay_init)
    sigma0 = args.sigma0 if args.sigma0 is not None else max(0.0, float(args.tau) - 1.0)
    try:
        return ModelConfig(n_in=n_in, n_out=n_out, hidden=args.hidden, model=args.model, kernel=args.kernel,
                           recurrent=_recurrent_flags(args.recurrent_layers, len(args.hidden), args.model),
                           batchnorm=args.batchnorm, dropout=args.dropout, rec_dropout=args.rec_dropout, tau=args.tau,
                           tau_out=args.tau_out, learn_beta=args.learn_leak, surrogate=args.surrogate, vth=args.vth,
                           readout_scale=args.readout_scale, input_message_bits=input_bits,
                           delay_init=delay_init, sigma0=sigma0, sigma_gamma=args.sigma_gamma,
                           loss=args.loss, dt=dt, max_delay=args.max_delay, target=args.target)
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


RESUME_MAY_CHANGE = ("data", "out", "device", "threads", "progress", "force")


def _describe(path: Path) -> str:
    """``path`` in a few words: whose run, which epoch, when."""
    try:
        meta = read_checkpoint(path)["metadata"]
    except CheckpointError:
        return "not a crsnn checkpoint"
    epochs = (meta.get("train_config") or {}).get("epochs")
    return (f"a checkpoint of another run: epoch {meta.get('epoch', '?')}{f' of {epochs}' if epochs else ''}, "
            f"written {meta.get('created', '?')}")


def _run_id_of(path: Path) -> str | None:
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text()).get("run_id")
        except (OSError, ValueError, AttributeError):
            return None
    try:
        return read_checkpoint(path)["metadata"].get("run_id")
    except CheckpointError:
        return None


def _unfinished(last: Path) -> bool:
    try:
        state = read_checkpoint(last).get("train_state") or {}
    except CheckpointError:
        return False
    return int(state.get("epoch", 0)) < int(state.get("epochs", 0))


def check_outputs(out: str, run_id: str | None, force: bool, inputs: Iterable[str | Path] = (),
                  hold: ExitStack | None = None, command: str = "crsnn-train") -> None:
    """Before any work: the checkpoint, its per-epoch twin and its log can be written (none is a
    FIFO or device, none is one of ``inputs``, the training data), no other training is writing
    them, and none of them belongs to another run (unless ``force``). ``run_id``: the run being
    resumed, or None. ``hold``: where the outputs' lock (:mod:`crsnn.output_lock`) is kept until
    the run ends (None: not taken, as on DDP ranks other than 0, which write nothing);
    ``command``: how a second training's refusal names this one."""
    out = Path(out)
    paths = (out, last_path_for(out), log_path_for(out))
    inputs = list(inputs)
    for p in paths:
        check_writable(p, make_parents=True, inputs=inputs)
    if hold is not None:
        hold.enter_context(output_lock(paths, command))
    if force:
        return
    for p in paths:
        if p.exists() and (run_id is None or _run_id_of(p) != run_id):
            what = _describe(out) if p == out else ("the log of another run" if p.suffix == ".json" else
                                                    "the per-epoch checkpoint of another run")
            hint = f"continue that run with --resume {last_path_for(out)}, " if _unfinished(last_path_for(out)) else ""
            raise UsageError(f"{p} already exists ({what}); {hint}replace it with --force, or choose another --out")


def resume_args(args, parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, dict]:
    """The options of the run ``args.resume`` continues (from its checkpoint), with the few the
    user may change taken from ``args``; and the checkpoint dict."""
    path = Path(args.resume)
    ckpt = read_checkpoint(path)
    state = ckpt.get("train_state")
    if not isinstance(state, dict):
        twin = path.with_name(path.stem + ".last.pt")
        raise UsageError(f"{path}: holds no training state (a best-epoch checkpoint); resume from the per-epoch "
                         f"checkpoint {twin if twin.exists() else '<out stem>.last.pt'}")
    stored = [str(a) for a in ckpt["metadata"].get("argv") or []]
    try:
        old = parse_options(stored)
    except SystemExit:
        raise UsageError(f"{path}: its training options no longer parse ({' '.join(stored)})") from None
    given = explicit_options(parser, args.argv) - {"resume"}
    for dest in sorted(given - set(RESUME_MAY_CHANGE)):
        if getattr(args, dest) != getattr(old, dest):
            raise UsageError(f"--{dest.replace('_', '-')} {getattr(args, dest)}: the run in {path} was started with "
                             f"{getattr(old, dest)}; --resume continues it exactly with its own options (only "
                             f"{', '.join('--' + d.replace('_', '-') for d in RESUME_MAY_CHANGE)} may change)")
    for dest in given & set(RESUME_MAY_CHANGE):
        setattr(old, dest, getattr(args, dest))
    if "out" not in given:
        old.out = str(path.parent / state["out_name"])
    if "data" not in given and state.get("data_path") and not Path(old.data).exists():
        old.data = state["data_path"]
    old.resume, old.argv, old.summary, old.evaluate = str(path), stored, False, None
    return old, ckpt


def _checkpoint_binning(info: dict, args, given: set[str]) -> dict:
    """How ``--evaluate`` bins the data: as the checkpoint was trained, unless the user says otherwise."""
    meta = info["metadata"]
    src = meta.get("data") or {}
    stored = {"dt": src.get("dt", meta.get("dt")), "max_time": src.get("max_time"),
              "channel_group": src.get("channel_group"), "seed": meta.get("seed")}
    out = {}
    for key in stored:
        out[key] = getattr(args, key) if key in given or stored[key] is None else stored[key]
    return out


def run(args) -> int:
    """The command's body (after parsing): checks, then the training or evaluation. A training
    holds its outputs' lock until it ends."""
    command = shlex.join(["crsnn-train", *(getattr(args, "argv", None) or [])])
    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.summary:
        print(format_counts(model_config(args, args.n_in, args.n_out, 0, args.dt)))
        return 0
    resume_ckpt = None
    if args.resume:
        args, resume_ckpt = resume_args(args, build_parser())
        if args.threads and args.threads > 0:
            torch.set_num_threads(args.threads)
    if not args.data:
        raise UsageError("--data is required (a directory / .h5 file in SHD layout, or 'synthetic')")
    if not args.evaluate:
        if args.qat_start is not None and args.qat_start >= args.epochs:
            raise UsageError(f"--qat-start {args.qat_start} is not below --epochs {args.epochs} (epochs are 0-based; "
                             "use -1 for float training only)")
    dist = Dist.from_env()
    device = _device(args.device, dist)
    if dist.enabled and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with ExitStack() as hold:
        if not args.evaluate:
            run_id = resume_ckpt["train_state"]["run_id"] if resume_ckpt is not None else None
            on_main_rank(dist, lambda: check_outputs(args.out, run_id, args.force, data_files(args.data), hold,
                                                     command))
        return _run_checked(args, resume_ckpt, dist, device)


def on_main_rank(dist: Dist, check: Callable[[], None]) -> None:
    """Run ``check`` (which raises a one-line error) on rank 0 only -- the one rank that writes and
    holds the outputs' lock -- and share its verdict: under DDP every rank then raises the same
    error, so no rank waits for one that has stopped (and no rank refuses its own rank 0's lock)."""
    if not dist.enabled:
        check()
        return
    verdict: list[str | None] = [None]
    failure: BaseException | None = None
    if dist.main:
        try:
            check()
        except Exception as e:  # noqa: BLE001 - shared with the other ranks, then raised here as it is
            failure, verdict[0] = e, one_line(e)
    torch.distributed.broadcast_object_list(verdict, src=0)
    if failure is not None:
        raise failure
    if verdict[0] is not None:
        raise UsageError(verdict[0])


def _run_checked(args, resume_ckpt: dict | None, dist: Dist, device: torch.device) -> int:
    """:func:`run` after the checks of the options and the outputs."""
    say = print if dist.main else (lambda *a, **k: None)
    if args.evaluate:
        model, info = load_checkpoint(args.evaluate)
        b = _checkpoint_binning(info, args, explicit_options(build_parser(), args.argv))
        data = load_test_data(args.data, dt=b["dt"], max_time=b["max_time"], channel_group=b["channel_group"],
                              seed=b["seed"], progress=args.progress and dist.main)
        if info["n_in"] != data.n_in:
            raise UsageError(f"{args.evaluate}: the network has {info['n_in']} inputs, the data binned with "
                             f"--channel-group {b['channel_group']} has {data.n_in}")
        say(f"binning: dt {b['dt']} s, max-time {b['max_time']} s, channel-group {b['channel_group']} "
            "(the checkpoint's unless given)")
        res = evaluate_checkpoint(args.evaluate, data, args.eval_batch_size, device, dist)
        for mode, r in res.items():
            say(f"{mode:8s} test loss {r.loss:.6f} accuracy {_pct(r.acc)} ({r.n} samples)")
        say(f"test accuracy: float {_pct(res['float'].acc)} | integer {_pct(res['integer'].acc)}")
        return 0
    data = load_data(args.data, dt=args.dt, max_time=args.max_time, channel_group=args.channel_group,
                     valid_fraction=args.valid_fraction, seed=args.seed, augment=augment_of(args),
                     max_train=args.max_train, progress=args.progress and dist.main)
    qat_start = args.qat_start
    if qat_start is None:
        qat_start = args.epochs - max(1, args.epochs // 4)
    if qat_start < 0:
        qat_start = None
    torch.manual_seed(args.seed)  # same initial weights on every rank (DDP also broadcasts them)
    if resume_ckpt is not None:
        config = ModelConfig.from_dict(dict(resume_ckpt["config"]))
        if config.n_in != data.n_in:
            raise UsageError(f"{args.resume}: the network has {config.n_in} inputs, the data {data.n_in}")
        model = build_model(config)
        bits = config.input_message_bits
    else:
        bits = args.input_bits if args.input_bits is not None else message_bits_for(data["train"].max_count())
        model = build_model(model_config(args, data.n_in, data.n_classes, bits, data.dt, data.n_steps))
    torch.manual_seed(args.seed + 1 + dist.rank)  # per-rank dropout streams
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, lr=args.lr,
                      lr_delay=args.lr_delay, lr_kernel=args.lr_kernel, weight_decay=args.weight_decay,
                      schedule=args.schedule,
                      qat_start=qat_start, grad_clip=args.grad_clip, seed=args.seed, progress=args.progress)
    say(f"data: {data.source.get('path', data.source.get('kind'))}: {len(data['train'])} train / "
        f"{len(data['valid'])} valid / {len(data['test'])} test samples, T={data.n_steps}, {data.n_in} inputs "
        f"({bits} message bits), {data.n_classes} classes")
    if args.recipe:
        say(describe(args.recipe, args.recipe_values, set(args.recipe_overridden)))
    say(format_counts(model.config))
    qat_text = f"QAT from epoch {qat_start + 1} of {cfg.epochs}" if cfg.qat_enabled else \
        f"no QAT: {cfg.epochs} float epochs (the checkpoint is float-only)"
    say(f"training on {device} x {dist.world_size} process(es); {qat_text}")
    if cfg.qat_enabled and qat_start == 0 and model.config.batchnorm:
        say("warning: QAT from the first epoch: BatchNorm is folded with its running statistics, which only "
            "float epochs estimate (they stay at mean 0, variance 1); use --qat-start >= 1 or --no-batchnorm")
    data_path = Path(args.data)
    meta = {"data": data.source, "n_steps": data.n_steps, "class_names": data.class_names, "seed": args.seed,
            "world_size": dist.world_size, "argv": args.argv, "recipe": _recipe_record(args),
            "data_path": str(data_path.resolve()) if data_path.exists() else None, "run_id": uuid.uuid4().hex}
    if resume_ckpt is not None:
        old = resume_ckpt["metadata"]
        meta.update(run_id=old.get("run_id"), argv=old.get("argv"),
                    resumed=[*(old.get("resumed") or []), {"from_epoch": int(resume_ckpt["train_state"]["epoch"]),
                                                           "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}])
        say(f"resuming {args.resume} after epoch {int(resume_ckpt['train_state']['epoch'])} of {cfg.epochs}")
    try:
        result = train(model, data, cfg, args.out, device, dist, meta, printer=say, resume=resume_ckpt)
    except Interrupted as e:
        last = last_path_for(args.out)
        if last.exists() and _run_id_of(last) == meta["run_id"]:  # not another run's (--force)
            e.detail = f"continue with: crsnn-train --resume {last}"
        raise
    if dist.enabled:
        torch.distributed.barrier()
    res = evaluate_checkpoint(args.out, data, args.eval_batch_size, device, dist)
    if dist.main:
        test = {m: {"loss": r.loss, "acc": r.acc, "n": r.n} for m, r in res.items()}
        log = log_path_for(args.out)
        _write_test_results(Path(args.out), log, test)
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


def _recipe_record(args) -> dict | None:
    """What the checkpoint stores about the recipe: its name, the values it set and the options
    given explicitly instead."""
    if not args.recipe:
        return None
    return {"name": args.recipe, "values": args.recipe_values, "overridden": args.recipe_overridden}


def _write_test_results(out: Path, log: Path, test: dict) -> None:
    """The test results into the best checkpoint's metadata and its log, as one unit."""
    items = [(out, checkpoint_bytes(with_metadata(out, {"test": test})))]
    try:
        obj = json.loads(log.read_text())
    except (OSError, ValueError):
        obj = None
    if isinstance(obj, dict):
        obj["test"] = test
        items.append((log, json_bytes(obj)))
    write_together(items)


def parse_options(argv: list[str]) -> argparse.Namespace:
    """``crsnn-train``'s options from ``argv``: the values of the recipe ``--recipe`` names (if
    any) replace the defaults, so that every explicit option beats the recipe. Adds ``argv``,
    ``recipe_values`` (what the recipe set) and ``recipe_overridden`` (the recipe's options given
    explicitly, sorted) to the namespace."""
    parser = build_parser()
    name = requested_recipe(argv)
    values = apply_recipe(parser, name if name in RECIPES else None)
    args = parser.parse_args(argv)
    args.argv, args.recipe_values = list(argv), values
    args.recipe_overridden = sorted(set(values) & explicit_options(parser, argv))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_options(list(sys.argv[1:] if argv is None else argv))
    return run_command("crsnn-train", lambda: run(args), (CheckpointError, DataError, UsageError))


if __name__ == "__main__":
    sys.exit(main())
