"""Checkpoints of trained models: plain dicts of tensors / str / int / float / bool / lists, so
that ``torch.load(path, weights_only=True)`` reads them (no pickled classes).

Layout (``format = "crsnn-checkpoint"``, ``version = 1``)::

    config      ModelConfig as a dict (rebuilds the network)
    state_dict  parameter and buffer tensors (incl. BatchNorm running statistics, the delay
                spread sigma and the QAT flag)
    quant       {"qat": bool, "network": the integer network to_integer() gives, as tensors}:
                checked against the weights when loading
    metadata    dt (seconds per step), n_in, input_message_bits, n_classes, class names, epoch,
                validation/test accuracies, training arguments, versions, creation time
    history     one dict per epoch (the same as the JSON log)

Loading API for export / deploy: :func:`load_checkpoint` ``(path) -> (model, info)``.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crsnn import __version__
from crsnn.atomic_write import write_bytes_atomic
from crsnn.input_files import NotRegularFileError, check_regular_input, open_input
from crsnn.models.integer import Connection, GateSet, IntegerNetwork, Layer, LIFParams, Recurrence
from crsnn.models.network import ModelConfig, SpikingNet, build_model

FORMAT = "crsnn-checkpoint"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, not a crsnn checkpoint, inconsistent, or float-only
    where integer state is required. The message is one line."""


# --------------------------------------------------------------------------------------------
# integer network <-> plain dict
# --------------------------------------------------------------------------------------------
def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def _conn(c: Connection) -> dict:
    d = {"weights": _t(c.weights), "weight_exp": int(c.weight_exp), "num_weight_bits": int(c.num_weight_bits),
         "sign_mode": int(c.resolved_sign_mode())}
    if c.delays is not None:  # per-synapse delays (dcls); absent otherwise, as in older checkpoints
        d["delays"] = _t(c.delays)
    return d


def _layer(layer: Layer) -> dict:
    n = layer.neuron
    d = {"ff": _conn(layer.ff),
         "neuron": {"n": n.n, "du": n.du, "dv": n.dv, "vth": n.vth, "bias_mant": _t(n.bias_mant),
                    "bias_exp": _t(n.bias_exp)},
         "rec": None}
    if layer.rec is not None:
        r = layer.rec
        d["rec"] = {"delays": _t(r.delays), "kernel": None if r.kernel is None else _t(r.kernel),
                    "weights": None if r.weights is None else _t(r.weights), "weight_exp": int(r.weight_exp),
                    "num_weight_bits": int(r.num_weight_bits), "sign_mode": int(r.resolved_sign_mode())}
    if layer.gates is not None:  # CS-GRU layer; absent otherwise, as in older checkpoints
        g = layer.gates
        d["gates"] = {"r_ff": _conn(g.r_ff),
                      **{f"{p}_rec": {"kernel": _t(r.kernel), "weight_exp": int(r.weight_exp),
                                      "num_weight_bits": int(r.num_weight_bits),
                                      "sign_mode": int(r.resolved_sign_mode())}
                         for p, r in (("r", g.r_rec), ("z", g.z_rec))},
                      **{k: _t(getattr(g, k)) for k in ("bias_r_mant", "bias_r_exp", "bias_z_mant", "bias_z_exp",
                                                        "w_z")},
                      "z_shift": int(g.z_shift)}
    return d


def network_to_dict(net: IntegerNetwork) -> dict:
    return {"n_in": int(net.n_in), "input_message_bits": int(net.input_message_bits),
            "hidden": [_layer(h) for h in net.hidden], "readout": _layer(net.readout)}


def _np(x) -> np.ndarray | None:
    return None if x is None else x.numpy()


def network_from_dict(d: dict, metadata: dict | None = None) -> IntegerNetwork:
    def layer(ld: dict) -> Layer:
        ff = Connection(_np(ld["ff"]["weights"]), ld["ff"]["weight_exp"], ld["ff"]["num_weight_bits"],
                        ld["ff"]["sign_mode"], _np(ld["ff"].get("delays")))
        n = ld["neuron"]
        nrn = LIFParams(n["n"], n["du"], n["dv"], n["vth"], _np(n["bias_mant"]), _np(n["bias_exp"]))
        rec = None
        if ld["rec"] is not None:
            r = ld["rec"]
            rec = Recurrence(_np(r["delays"]), _np(r["kernel"]), _np(r["weights"]), r["weight_exp"],
                             r["num_weight_bits"], r["sign_mode"])
        gates = None
        if ld.get("gates") is not None:
            g = ld["gates"]
            rr, zr = ({**g[f"{p}_rec"], "kernel": _np(g[f"{p}_rec"]["kernel"])} for p in ("r", "z"))
            gates = GateSet(Connection(_np(g["r_ff"]["weights"]), g["r_ff"]["weight_exp"], g["r_ff"]["num_weight_bits"],
                                       g["r_ff"]["sign_mode"], _np(g["r_ff"].get("delays"))),
                            Recurrence(rec.delays, **rr), Recurrence(rec.delays, **zr),
                            *(_np(g[k]) for k in ("bias_r_mant", "bias_r_exp", "bias_z_mant", "bias_z_exp", "w_z")),
                            g["z_shift"])
        return Layer(ff, nrn, rec, gates)

    return IntegerNetwork(d["n_in"], [layer(h) for h in d["hidden"]], layer(d["readout"]), d["input_message_bits"],
                          metadata=dict(metadata or {}))


def networks_equal(a: IntegerNetwork, b: IntegerNetwork) -> bool:
    """Same integers everywhere (what the simulator and Lava would run)."""
    da, db = network_to_dict(a), network_to_dict(b)

    def eq(x: Any, y: Any) -> bool:
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(eq(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return isinstance(y, list) and len(x) == len(y) and all(eq(p, q) for p, q in zip(x, y))
        if torch.is_tensor(x):
            return torch.is_tensor(y) and x.shape == y.shape and bool(torch.equal(x, y))
        return x == y

    return eq(da, db)


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------
def checkpoint_dict(model: SpikingNet, metadata: dict, history: list | None = None) -> dict:
    """The checkpoint of ``model`` (moved to the CPU) as a plain dict."""
    model = getattr(model, "module", model)
    qat = bool(model.qat)
    meta = {"dt": float(model.config.dt), "n_in": int(model.config.n_in),
            "input_message_bits": int(model.config.input_message_bits), "n_classes": int(model.config.n_out),
            "qat": qat, "crsnn_version": __version__, "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(metadata or {})}
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": plain_values(model.config.to_dict()),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "quant": {"qat": qat, "network": network_to_dict(model.to_integer())},
        "metadata": plain_values(meta),
        "history": plain_values(list(history or [])),
    }


def plain_values(x: Any, keep_tensors: bool = True) -> Any:
    """Only types ``torch.load(weights_only=True)`` accepts (dict/list/str/int/float/bool/None,
    and tensors, moved to the CPU); with ``keep_tensors=False`` only JSON types (tensors and
    anything else become ``str``)."""
    if isinstance(x, dict):
        return {str(k): plain_values(v, keep_tensors) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_values(v, keep_tensors) for v in x]
    if x is None or type(x) is bool:
        return x
    if isinstance(x, str):
        return str(x)  # also str subclasses such as torch.__version__
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    if keep_tensors and torch.is_tensor(x):
        return x.detach().cpu()
    return str(x)


def checkpoint_bytes(ckpt: dict) -> bytes:
    """A checkpoint dict serialised by ``torch.save``, in memory."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike, model: SpikingNet, metadata: dict | None = None,
                    history: list | None = None) -> Path:
    """Write the checkpoint atomically (:mod:`crsnn.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, checkpoint_bytes(checkpoint_dict(model, metadata or {}, history)))


def get_rng_state() -> dict:
    """Every random state training uses (torch CPU and CUDA, NumPy's and Python's global
    generators), as plain values a weights-only load accepts."""
    import random

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": int(version), "state": torch.tensor(list(internal), dtype=torch.int64),
                        "gauss": None if gauss is None else float(gauss)},
             "cuda": None}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    import random

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# modules whose globals in a pickle mean "this file runs code when unpickled"
_DANGEROUS_MODULES = {"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle",
                      "marshal", "types", "code", "codeops", "ctypes", "pty", "commands", "webbrowser", "platform"}
_DANGEROUS_BUILTINS = {"eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals",
                       "locals", "vars", "input", "breakpoint", "execfile"}


def _pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of every global a pickle references, found without unpickling it."""
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL" and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str) and "UNICODE" in op.name:
                strings.append(arg)
    except Exception:  # noqa: BLE001 - a truncated or odd pickle: report what was found so far
        pass
    return list(dict.fromkeys(found))


_SCAN_BYTES = 1 << 24  # the unsafe-pickle scan reads at most this much of a pickle


def _refused_globals(path: Path) -> list[str]:
    """The globals of a file's pickle (a raw pickle, or ``data.pkl`` inside a torch.save zip)
    that a weights-only load refuses. Reads at most :data:`_SCAN_BYTES` of the pickle, and only
    from a regular file (an endless file or a FIFO is never read on)."""
    try:
        with open_input(path, "checkpoint file") as f:
            if zipfile.is_zipfile(f):
                with zipfile.ZipFile(f) as z:
                    name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                    if name is None:
                        return []
                    with z.open(name) as member:
                        data = member.read(_SCAN_BYTES)
            else:
                f.seek(0)
                data = f.read(_SCAN_BYTES)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError, RuntimeError):
        return []
    allowed = ("torch._utils.", "collections.OrderedDict", "torch.FloatStorage", "torch.LongStorage",
               "torch.ByteStorage", "torch.IntStorage", "torch.DoubleStorage", "torch.BoolStorage",
               "torch.HalfStorage", "torch.ShortStorage", "torch.CharStorage", "torch.BFloat16Storage",
               "torch.serialization._get_layout", "torch.Size", "torch.device", "torch.dtype")
    plain = {f"{m}.{t}" for m in ("builtins", "__builtin__")
             for t in ("set", "frozenset", "list", "dict", "tuple", "bytearray", "complex", "slice", "int", "float")}
    return [g for g in _pickle_globals(data) if not g.startswith(allowed) and g not in plain]


def _is_dangerous(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    builtin = module in ("builtins", "__builtin__")
    return module.split(".")[0] in _DANGEROUS_MODULES or (builtin and attr in _DANGEROUS_BUILTINS)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict (``weights_only=True``), checked to be a crsnn checkpoint."""
    path = Path(path)
    try:
        check_regular_input(path, "checkpoint file")  # a FIFO would block torch.load, /dev/zero fill the memory
    except NotRegularFileError as e:
        raise CheckpointError(str(e)) from None
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        refused = _refused_globals(path)
        if refused:  # a pickle of Python objects: never unpickled here
            danger = [g for g in refused if _is_dangerous(g)]
            if danger:
                raise CheckpointError(
                    f"{path}: refused as unsafe: loading it would call {', '.join(danger[:3])} (it runs code when "
                    "unpickled); it is not a crsnn checkpoint: do not load it with weights_only=False") from None
            raise CheckpointError(f"{path}: not a crsnn checkpoint, refused as unsafe to unpickle (it holds pickled "
                                  f"Python objects such as {', '.join(refused[:3])}; crsnn checkpoints hold only "
                                  "tensors and plain values)") from None
        raise CheckpointError(f"{path}: unreadable or corrupt checkpoint (not a torch.save file)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError) as e:
        kind = type(e).__name__
        raise CheckpointError(f"{path}: unreadable or corrupt checkpoint ({kind})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a crsnn checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')!r} is not supported "
                              f"(this crsnn reads version {VERSION})")
    for key in ("config", "state_dict", "quant", "metadata"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: corrupt checkpoint (missing or malformed '{key}')")
    return ckpt


def load_checkpoint(path: str | os.PathLike, require_integer: bool = False,
                    device: str | torch.device = "cpu") -> tuple[SpikingNet, dict]:
    """Load a checkpoint written by ``crsnn-train``.

    Returns ``(model, info)``: ``model`` a :class:`~crsnn.models.network.SpikingNet` in eval mode
    with its quantization state (QAT flag, BatchNorm statistics, delay spread) restored, on
    ``device``; ``info`` a dict with ``config``, ``metadata``, ``history``, ``quantized`` (trained
    with QAT), ``dt`` (seconds per step), ``n_in`` (input channels), ``input_message_bits``,
    ``n_classes``, ``path``.

    Raises :class:`CheckpointError` (one-line message) for a missing, corrupt or foreign file, an
    integer state that does not match the weights, or -- with ``require_integer`` -- a float-only
    checkpoint (trained without quantization-aware training).
    """
    ckpt = read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(dict(ckpt["config"]))
        model = build_model(config)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: corrupt checkpoint (model does not load: {msg[:160]})") from None
    model.eval()
    qat = bool(ckpt["quant"].get("qat", False))
    if require_integer and not qat:
        raise CheckpointError(f"{path}: float-only checkpoint (trained without quantization-aware training); "
                              "integer state is required: retrain with --qat-start")
    try:
        stored = network_from_dict(ckpt["quant"]["network"])
        same = networks_equal(stored, model.to_integer())
    except Exception as e:  # noqa: BLE001 - any failure here means the file is inconsistent
        raise CheckpointError(f"{path}: corrupt checkpoint (integer state unreadable: {type(e).__name__})") from None
    if not same:
        raise CheckpointError(f"{path}: corrupt checkpoint (stored integer state does not match the weights)")
    model.to(device)
    meta = dict(ckpt["metadata"])
    info = {"config": config.to_dict(), "metadata": meta, "history": list(ckpt.get("history") or []),
            "quantized": qat, "dt": float(meta.get("dt", config.dt)), "n_in": config.n_in,
            "input_message_bits": config.input_message_bits, "n_classes": config.n_out, "path": str(path),
            "format_version": ckpt["version"]}
    return model, info


def integer_network(path: str | os.PathLike) -> IntegerNetwork:
    """The stored integer network of a QAT checkpoint (validated), with metadata."""
    model, info = load_checkpoint(path, require_integer=True)
    net = model.to_integer()
    net.metadata.update({"dt": info["dt"], "source": str(path)})
    return net


def update_metadata(path: str | os.PathLike, extra: dict) -> None:
    """Add ``extra`` to a checkpoint's metadata (atomic rewrite; nothing else changes)."""
    path = Path(path)
    write_bytes_atomic(path, checkpoint_bytes(with_metadata(path, extra)))


def with_metadata(path: str | os.PathLike, extra: dict) -> dict:
    """The checkpoint at ``path`` with ``extra`` added to its metadata (not written)."""
    ckpt = read_checkpoint(path)
    ckpt["metadata"].update(plain_values(extra))
    return ckpt
