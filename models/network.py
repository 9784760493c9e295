"""The trainable CRSNN / DelRec network: configuration, float and quantization-aware forward
passes, conversion to :class:`crsnn.models.integer.IntegerNetwork`, and parameter counts.

Input ``x``: (batch, steps, n_in) non-negative integer counts (clipped to the input message range:
1 for binary spikes, ``2**input_message_bits - 1`` for graded spikes). Output: the readout
voltage (batch, steps, n_out) in float units (logits per step).

Modes:

- ``forward_float(x)``: float training arithmetic;
- ``forward_qat(x)``: Loihi integer arithmetic with straight-through gradients; in eval mode
  ``qat_readout_int(x)`` (the same in ``v`` units) equals
  ``simulate(model.to_integer(), x).readout_v`` exactly;
- ``forward(x)``: whichever of the two :attr:`SpikingNet.qat` selects (what DDP wraps);
- ``forward_integer(x)``: runs the integer simulator on ``to_integer()``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from crsnn import loihi2 as L2
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, Recurrence

from .layers import TARGETS, HiddenLayer, Readout, dropout_mask, leak_from_tau, to_numpy_int
from .surrogate import Surrogate

MODELS = ("crsnn", "delrec", "ff", "dcls", "csgru")
LOSSES = ("sum_softmax", "mean", "max")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`SpikingNet` (stored in checkpoints as a dict).

    model: ``crsnn`` (conv recurrence), ``delrec`` (dense recurrence), ``ff`` (no recurrence),
        ``dcls`` (a learnable delay per feedforward synapse, DCLS-style, see
        :mod:`crsnn.models.dcls`; no recurrence unless ``recurrent`` asks for the CRSNN's) or
        ``csgru`` (CS-GRU cells with conv recurrences through learnable axonal delays, see
        :mod:`crsnn.models.csgru`).
    recurrent: per hidden layer, whether it has the model's recurrence (default: all; none for
        ``dcls``); for ``csgru``, whether the layer is a CS-GRU cell (else a feedforward LIF layer).
    tau / tau_out: membrane time constants of hidden / readout neurons in steps
        (``beta = 1 - 1/tau``). vth: hidden threshold mantissa (float threshold 1.0 = ``vth << 6``).
    readout_scale: ``v`` units per float unit of the readout voltage.
    delay_init: ``["uniform", lo, hi]``, ``["halfnormal", std]`` or ``["constant", d]`` (steps).
    sigma0, sigma_gamma: delay spread schedule ``sigma_e = sigma0 * (gamma**(100/epochs))**e``.
    dt: seconds per time step (metadata, for export).
    max_delay: ``dcls`` only: the feedforward synaptic delays are integers 0..max_delay steps
        (the float kernel has max_delay + 1 taps).
    target: quantization profile, ``loihi2`` or ``netx`` (weights at exponent -1..0 and biases at
        exponent 6, what lava-dl's netx format can carry; feedforward networks only).
    """

    n_in: int
    n_out: int
    hidden: list = field(default_factory=lambda: [256, 256])
    model: str = "crsnn"
    kernel: int = 3
    recurrent: list | None = None
    batchnorm: bool = True
    dropout: float = 0.0
    rec_dropout: float = 0.0
    tau: float = 2.0
    tau_out: float = 2.0
    learn_beta: bool = False
    surrogate: str = "atan:5"
    vth: int = 1024
    readout_scale: int = 4096
    input_message_bits: int = 0
    delay_init: list = field(default_factory=lambda: ["uniform", 0.0, 10.0])
    sigma0: float = 10.0
    sigma_gamma: float = 0.95
    loss: str = "sum_softmax"
    dt: float = 0.01
    max_delay: int = 25
    target: str = "loihi2"

    def __post_init__(self) -> None:
        self.hidden = [int(h) for h in self.hidden]
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden: give at least one layer size >= 1")
        if self.recurrent is None:
            self.recurrent = [self.model not in ("ff", "dcls")] * len(self.hidden)
        self.recurrent = [bool(r) for r in self.recurrent]
        if len(self.recurrent) != len(self.hidden):
            raise ValueError("recurrent: one flag per hidden layer")
        if not 0 <= self.input_message_bits <= L2.MAX_MESSAGE_BITS:
            raise ValueError(f"input_message_bits must be in 0..{L2.MAX_MESSAGE_BITS}")
        if self.kernel < 1:
            raise ValueError("kernel must be >= 1")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.target == "netx" and any(self.recurrence_of(i) for i in range(len(self.hidden))):
            raise ValueError("target netx: lava-dl's netx format cannot express recurrent axonal delays; "
                             "use --recurrent-layers none (or the default model dcls / ff)")
        self.max_delay = int(self.max_delay)
        if not L2.SYNAPSE_DELAY_MIN <= self.max_delay <= L2.SYNAPSE_DELAY_MAX:
            raise ValueError(f"max_delay must be in {L2.SYNAPSE_DELAY_MIN}..{L2.SYNAPSE_DELAY_MAX} steps "
                             f"(Loihi 2's synaptic delay range), got {self.max_delay}")
        self.delay_init = list(self.delay_init)
        Surrogate.parse(self.surrogate)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**d)

    @property
    def max_input(self) -> int:
        return 1 if self.input_message_bits == 0 else 2**self.input_message_bits - 1

    def recurrence_of(self, i: int) -> str | None:
        if not self.recurrent[i] or self.model == "ff":
            return None
        return {"delrec": "dense", "csgru": "csgru"}.get(self.model, "conv")


def sigma_at(epoch: int, epochs: int, sigma0: float, gamma: float) -> float:
    """DelRec's spread schedule: ``sigma0 * (gamma**(100/epochs))**epoch``."""
    return float(sigma0 * (gamma ** (100.0 / max(1, epochs))) ** epoch)


class SpikingNet(nn.Module):
    """input -> hidden :class:`HiddenLayer` s -> :class:`Readout` (see the module docstring)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        beta = leak_from_tau(config.tau)
        layers = []
        n_prev = config.n_in
        for i, n in enumerate(config.hidden):
            args = (n_prev, n, config.recurrence_of(i), config.kernel, config.batchnorm, beta, config.learn_beta,
                    tuple(config.delay_init), config.vth)
            if config.model == "dcls":
                from .dcls import DCLSHiddenLayer

                layers.append(DCLSHiddenLayer(*args, max_delay=config.max_delay))
            elif config.recurrence_of(i) == "csgru":
                from .csgru import CSGRUHiddenLayer

                layers.append(CSGRUHiddenLayer(*args))
            else:
                layers.append(HiddenLayer(*args))
            n_prev = n
        self.layers = nn.ModuleList(layers)
        self.readout = Readout(n_prev, config.n_out, leak_from_tau(config.tau_out), config.learn_beta,
                               config.readout_scale)
        for layer in [*self.layers, self.readout]:
            layer.target = config.target
        self.surrogate = Surrogate.parse(config.surrogate)
        self.register_buffer("sigma", torch.tensor(float(config.sigma0), dtype=torch.float64))
        self.register_buffer("qat_flag", torch.tensor(False))

    # ---------------------------------------------------------------- modes
    @property
    def qat(self) -> bool:
        return bool(self.qat_flag)

    def set_qat(self, on: bool = True) -> "SpikingNet":
        self.qat_flag.fill_(bool(on))
        return self

    def set_epoch(self, epoch: int, epochs: int) -> float:
        """Anneal the delay spread for this epoch; returns sigma."""
        s = sigma_at(epoch, epochs, self.config.sigma0, self.config.sigma_gamma)
        self.sigma.fill_(s)
        return s

    def clamp_delays_(self) -> None:
        for layer in self.layers:
            layer.clamp_delays_()

    def _input(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.config.n_in:
            raise ValueError(f"expected input (batch, steps, {self.config.n_in}), got {tuple(x.shape)}")
        x = x.to(dtype).clamp(0, self.config.max_input)
        return x.permute(1, 2, 0).contiguous()  # (T, n_in, B)

    def _ff_dropout(self, s: torch.Tensor) -> torch.Tensor:
        if self.config.dropout <= 0 or not self.training:
            return s
        return s * dropout_mask(s, self.config.dropout)

    def forward_float(self, x: torch.Tensor, return_hidden: bool = False):
        """Float forward: readout voltage (B, T, n_out) float32 (and hidden spikes (B, T, n))."""
        h = self._input(x, torch.float32)
        hidden = []
        for layer in self.layers:
            h = layer.forward_float(h, float(self.sigma), self.surrogate, self.config.rec_dropout)
            hidden.append(h)
            h = self._ff_dropout(h)
        v = self.readout.forward_float(h).permute(2, 0, 1)
        return (v, [s.permute(2, 0, 1) for s in hidden]) if return_hidden else v

    def qat_readout_int(self, x: torch.Tensor, return_hidden: bool = False):
        """QAT forward in Loihi units: readout ``v`` (B, T, n_out) float64 holding integers."""
        h = self._input(x, torch.float64)
        hidden = []
        for layer in self.layers:
            h = layer.forward_qat(h, self.surrogate, self.config.rec_dropout)
            hidden.append(h)
            h = self._ff_dropout(h)
        v = self.readout.forward_qat(h).permute(2, 0, 1)
        return (v, [s.permute(2, 0, 1) for s in hidden]) if return_hidden else v

    def forward_qat(self, x: torch.Tensor) -> torch.Tensor:
        """QAT forward: readout voltage (B, T, n_out) in float units (``v / readout_scale``)."""
        return self.qat_readout_int(x) / float(self.config.readout_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_qat(x) if self.qat else self.forward_float(x)

    # ---------------------------------------------------------------- loss / prediction
    def logits(self, v: torch.Tensor) -> torch.Tensor:
        """Per-sample class scores from the readout voltage (B, T, n_out) (float units)."""
        return readout_logits(v, self.config.loss)

    # ---------------------------------------------------------------- integer network
    def to_integer(self) -> IntegerNetwork:
        """The deployable integer network: exactly the integers :meth:`forward_qat` uses."""
        hidden = []
        with torch.no_grad():
            for layer in self.layers:
                if hasattr(layer, "integer_layer"):  # CS-GRU cells describe themselves
                    hidden.append(layer.integer_layer())
                    continue
                q = layer.quantized()
                w_ff, ff_delays = to_numpy_int(q["ff"].w_int), q.get("ff_delays")
                if ff_delays is not None:  # dcls; a zero-weight synapse gets delay 0 (it does nothing)
                    ff_delays = np.where(w_ff == 0, 0, ff_delays.cpu().numpy())
                ff = Connection(w_ff, q["ff"].exp, L2.WEIGHT_BITS, L2.SignMode.MIXED, delays=ff_delays)
                nrn = LIFParams(layer.n, L2.DECAY_MAX, q["dv"], layer.vth, to_numpy_int(q["bias"].mant),
                                q["bias"].exp)
                rec = None
                if q["rec"] is not None:
                    w = to_numpy_int(q["rec"].w_int)
                    kw = {"kernel": w} if layer.recurrence == "conv" else {"weights": w}
                    rec = Recurrence(delays=q["delays"].cpu().numpy(), weight_exp=q["rec"].exp,
                                     num_weight_bits=L2.WEIGHT_BITS, sign_mode=L2.SignMode.MIXED, **kw)
                hidden.append(Layer(ff, nrn, rec))
            q = self.readout.quantized()
            ro = Layer(Connection(to_numpy_int(q["ff"].w_int), q["ff"].exp, L2.WEIGHT_BITS, L2.SignMode.MIXED),
                       LIFParams(self.readout.n, L2.DECAY_MAX, q["dv"], L2.VTH_MAX,
                                 to_numpy_int(q["bias"].mant), q["bias"].exp))
        net = IntegerNetwork(self.config.n_in, hidden, ro, self.config.input_message_bits,
                             metadata={"model": self.config.model, "dt": self.config.dt,
                                       "readout_scale": self.config.readout_scale,
                                       "loss": self.config.loss})
        return net.validate()

    def clip_input_numpy(self, x) -> np.ndarray:
        """The integer input the network sees: (B, T, n_in) int64 clipped to the message range."""
        x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
        return np.clip(np.rint(x), 0, self.config.max_input).astype(np.int64)

    def forward_integer(self, x, net: IntegerNetwork | None = None) -> torch.Tensor:
        """Run the integer simulator; readout voltage (B, T, n_out) float64 in float units."""
        from crsnn.sim.torch_sim import simulate_torch

        net = net or self.to_integer()
        v = simulate_torch(net, self.clip_input_numpy(x)).readout_v
        return torch.from_numpy(v.astype(np.float64)) / float(self.config.readout_scale)

    # ---------------------------------------------------------------- optimisation helpers
    def param_groups(self, kernel_scale: float | None = None) -> list[dict]:
        """Trainable parameters in optimiser groups, each ``{"name", "params", "lr_scale",
        "decay"}``: the group's learning rate is ``lr_scale`` times the base (weight) learning rate,
        except ``delays`` (``lr_scale`` None: the delay learning rate applies, in steps per update);
        ``decay``: whether weight decay applies.

        - ``feedforward``: the Linear weights (hidden and readout), scale 1, decayed;
        - ``norm``: BatchNorm scales / shifts and biases, scale 1, not decayed;
        - ``kernel<i>``: the shared conv kernel of hidden layer ``i``, scale
          ``kernel_scale`` or, by default, :func:`kernel_lr_scale` ``(n, k)`` = sqrt(n / k);
          not decayed (three numbers that every neuron uses are not over-fitting capacity);
        - ``recurrent``: DelRec's dense matrices, scale 1, decayed;
        - ``leak``: learned leak factors, scale 1, not decayed;
        - ``delays``: the axonal delays and the ``dcls`` synaptic delays (steps), not decayed.
        Empty groups are left out."""
        groups: dict[str, dict] = {}

        def add(name: str, p: nn.Parameter, scale: float | None, decay: bool) -> None:
            g = groups.setdefault(name, {"name": name, "params": [], "lr_scale": scale, "decay": decay})
            g["params"].append(p)

        for i, layer in enumerate([*self.layers, self.readout]):
            for pname, p in layer.named_parameters():
                if not p.requires_grad:
                    continue
                if pname in ("delays", "ff_delays"):
                    add("delays", p, None, False)
                elif pname.startswith("rec_kernel"):  # rec_kernel (U_i), rec_kernel_r, rec_kernel_z
                    scale = kernel_scale if kernel_scale is not None else kernel_lr_scale(layer.n, layer.kernel_size)
                    add(f"kernel{i}", p, float(scale), False)
                elif pname == "rec_weight":
                    add("recurrent", p, 1.0, True)
                elif pname == "beta":
                    add("leak", p, 1.0, False)
                elif pname in ("weight", "gate_weight"):
                    add("feedforward", p, 1.0, True)
                else:
                    add("norm", p, 1.0, False)
        return list(groups.values())

    def counts(self) -> dict:
        return parameter_counts(self.config)


def kernel_lr_scale(n: int, k: int) -> float:
    """Default learning-rate multiplier of a CRSNN layer's shared conv kernel: ``sqrt(n / k)``.

    Why: Adam moves every parameter by about its learning rate per update, whatever the gradient's
    size. A DelRec neuron's recurrent input is a sum over ``n`` dense weights, so it can change by
    about ``sqrt(n) * lr`` per update (independent signs); a CRSNN neuron's is a sum over the ``k``
    kernel taps only, ``sqrt(k) * lr``. Without the multiplier the kernel trains ``sqrt(n / k)``
    times slower than the recurrence it replaces (4.6x at n = 64, k = 3): on the gap-timing task
    the recurrence then stays too weak to carry the delayed spikes (see docs/training.md,
    "Defaults that learn"). With it, both recurrences can change their input to a neuron at the same pace.
    """
    return math.sqrt(max(1, int(n)) / max(1, int(k)))


def readout_logits(v: torch.Tensor, loss: str = "sum_softmax") -> torch.Tensor:
    """(B, T, n_out) readout voltage -> (B, n_out) scores. ``sum_softmax``: ``sum_t softmax(v_t)``
    (CRSNN / DelRec on SHD; the cross-entropy then applies its own log-softmax), ``mean``: the
    time-average voltage, ``max``: its maximum over time."""
    if loss == "sum_softmax":
        return torch.softmax(v, dim=2).sum(dim=1)
    if loss == "mean":
        return v.mean(dim=1)
    if loss == "max":
        return v.max(dim=1).values
    raise ValueError(f"unknown loss {loss!r}")


def parameter_counts(config: ModelConfig) -> dict:
    """Trainable parameters per layer (feedforward incl. ``dcls`` synaptic delays, recurrent incl.
    delays, neuron), totals, and the recurrent parameters a CRSNN and a DelRec of the same size
    would have."""
    rows = []
    n_prev = config.n_in
    for i, n in enumerate(config.hidden):
        ff = n_prev * n * (2 if config.model == "dcls" else 1) + (2 * n if config.batchnorm else n)
        kind = config.recurrence_of(i)
        rec = 0 if kind is None else (config.kernel + n if kind == "conv" else n * n + n)
        if kind == "csgru":  # + W_r; U_i, U_r, U_z, delays, w_z and the two gate biases
            ff += n_prev * n
            rec = 3 * config.kernel + 4 * n
        rows.append({"layer": f"hidden {i}", "n": n, "recurrence": kind or "none", "feedforward": ff,
                     "recurrent": rec, "crsnn_recurrent": config.kernel + n, "delrec_recurrent": n * n + n})
        n_prev = n
    rows.append({"layer": "readout", "n": config.n_out, "recurrence": "none",
                 "feedforward": n_prev * config.n_out + config.n_out, "recurrent": 0,
                 "crsnn_recurrent": 0, "delrec_recurrent": 0})
    total_rec = sum(r["recurrent"] for r in rows)
    total = sum(r["feedforward"] + r["recurrent"] for r in rows)
    return {"layers": rows, "recurrent": total_rec, "total": total}


def format_counts(config: ModelConfig) -> str:
    """A printable table of :func:`parameter_counts` with the CRSNN / DelRec ratio."""
    c = parameter_counts(config)
    lines = [f"{config.model} {config.n_in} -> {' -> '.join(map(str, config.hidden))} -> {config.n_out}"
             f" (kernel {config.kernel}, batchnorm {'on' if config.batchnorm else 'off'})",
             f"{'layer':<10}{'neurons':>8}{'recurrence':>12}{'feedforward':>13}{'recurrent':>11}"
             f"{'CRSNN rec':>11}{'DelRec rec':>12}{'ratio':>8}"]
    for r in c["layers"]:
        ratio = f"{r['delrec_recurrent'] / r['crsnn_recurrent']:.1f}x" if r["crsnn_recurrent"] else ""
        lines.append(f"{r['layer']:<10}{r['n']:>8}{r['recurrence']:>12}{r['feedforward']:>13,}{r['recurrent']:>11,}"
                     f"{r['crsnn_recurrent']:>11,}{r['delrec_recurrent']:>12,}{ratio:>8}")
    lines.append(f"total parameters {c['total']:,} (recurrent {c['recurrent']:,})")
    return "\n".join(lines)


def build_model(config: ModelConfig | dict) -> SpikingNet:
    """A :class:`SpikingNet` from a :class:`ModelConfig` or its dict."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return SpikingNet(config)
