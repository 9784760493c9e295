"""The integer network description: what the simulator runs, Lava builds, and export writes.

A network is ``input -> hidden layer 1 -> ... -> hidden layer L -> readout``:

- the input is a vector of ``n_in`` channels per time step, either binary spikes
  (``input_message_bits = 0``) or graded payloads ``0 .. 2**input_message_bits - 1``;
- every layer is a feedforward :class:`Connection` (dense integer weights, weight exponent and,
  optionally, one integer delay per synapse: DCLS-style networks) into a population of Loihi CUBA
  LIF neurons (:class:`LIFParams`);
- a hidden layer may have a :class:`Recurrence`: each neuron's spike is delayed by its own integer
  axonal delay ``d_j`` (time steps) and then reaches the layer's own neurons through either a 1-D
  convolution over the neuron axis (one shared kernel, "same" padding: CRSNN) or a dense N x N
  matrix (DelRec);
- the readout is a layer without recurrence whose voltage ``v`` is recorded (a "non-spiking" LIF:
  its threshold is normally the largest one);
- a hidden layer with :class:`GateSet` ``gates`` is a CS-GRU layer: its neurons are the
  fixed-point gated neurons of :func:`crsnn.loihi2.csgru_step` instead of LIFs. ``ff`` and ``rec``
  (required, a conv recurrence) feed its input current; ``gates`` holds the reset gate's
  feedforward connection and conv recurrence, the update gate's conv recurrence (both through the
  same per-neuron axonal delays as ``rec``), the gate biases and the update gate's per-neuron
  weight on the current. Its ``neuron`` gives ``n``, ``vth`` and the current's bias
  (``du = 4095``, ``dv = 0``: unused, and validated so).

All values are the integers Lava is given (see :mod:`crsnn.loihi2` for their meaning).
:meth:`IntegerNetwork.validate` checks every value against Loihi 2 / Lava limits and raises
:class:`NetworkValidationError` naming the layer, the parameter and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crsnn import loihi2 as L2


class NetworkValidationError(ValueError):
    """A parameter of an :class:`IntegerNetwork` does not fit Loihi 2 / Lava."""


def _int_array(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(np.mod(a, 1) == 0)):
        raise NetworkValidationError(f"{name}: expected integers, got dtype {a.dtype}")
    return a.astype(np.int64)


@dataclass
class Connection:
    """A dense synaptic connection.

    weights: (n_out, n_in) integers as handed to Lava (raw: Lava clips and truncates them, see
        :func:`crsnn.loihi2.effective_weights`).
    weight_exp: the sum of effective weights is shifted by this many bits (signed).
    num_weight_bits: 1..8. sign_mode: None = inferred from the matrix, exactly like Lava.
    delays: None (every synapse has latency 1 step, Lava ``Dense``), or (n_out, n_in) integers
        0..62 (time steps): input j emitted at step t reaches neuron i at step
        t + 1 + delays[i, j] (Lava ``DelayDense``). With a negative ``weight_exp`` the sum of each
        (neuron, delay value) group is floored on its own, like Lava.
    """

    weights: np.ndarray
    weight_exp: int = 0
    num_weight_bits: int = L2.WEIGHT_BITS
    sign_mode: L2.SignMode | None = None
    delays: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.weights = _int_array(self.weights, "weights")
        self.weight_exp = int(self.weight_exp)
        self.num_weight_bits = int(self.num_weight_bits)
        if self.sign_mode is not None:
            self.sign_mode = L2.SignMode(self.sign_mode)
        if self.delays is not None:
            self.delays = _int_array(self.delays, "synaptic delays")

    @property
    def has_delays(self) -> bool:
        """Whether the connection has per-synapse delays (some may be 0)."""
        return self.delays is not None

    def delay_groups(self) -> list[tuple[int, np.ndarray]]:
        """``[(d, mask)]``: each distinct delay value (time steps) with the boolean (n_out, n_in)
        mask of its synapses, ascending; ``[(0, all)]`` without delays."""
        if self.delays is None:
            return [(0, np.ones(self.weights.shape, dtype=bool))]
        return [(int(d), self.delays == d) for d in np.unique(self.delays)]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weights.shape)  # type: ignore[return-value]

    def resolved_sign_mode(self) -> L2.SignMode:
        return self.sign_mode if self.sign_mode is not None else L2.infer_sign_mode(self.weights)

    def effective(self) -> np.ndarray:
        """(n_out, n_in) int64: the weights Lava's fixed-point model uses."""
        return L2.effective_weights(self.weights, self.resolved_sign_mode(), self.num_weight_bits)


def conv_matrix(kernel: np.ndarray, n: int) -> np.ndarray:
    """The (n, n) matrix of a 1-D "same" convolution over the neuron axis with one shared kernel
    (PyTorch ``conv1d`` convention, a cross-correlation): neuron ``i`` receives
    ``sum_m K[m] * x[i + m - (k - 1) // 2]`` (zero outside 0..n-1; for even k the extra tap is on
    the right, as ``padding='same'``)."""
    k = len(kernel)
    c = (k - 1) // 2
    w = np.zeros((n, n), dtype=np.int64)
    rows = np.arange(n)
    for m in range(k):
        cols = rows + m - c
        ok = (cols >= 0) & (cols < n)
        w[rows[ok], cols[ok]] = kernel[m]
    return w


@dataclass
class Recurrence:
    """The recurrent path of a hidden layer: per-neuron axonal delay, then conv or dense weights.

    delays: (n,) integers 0..62, one per presynaptic neuron; a spike of neuron j at step t reaches
        the layer's input at step t + 1 + delays[j].
    kernel: (k,) integers for a convolutional recurrence (CRSNN), or None.
    weights: (n, n) integers for a dense recurrence (DelRec), or None. Exactly one of the two.
    weight_exp, num_weight_bits, sign_mode: as in :class:`Connection` (the sign mode is inferred
        from the full n x n matrix when None).
    """

    delays: np.ndarray
    kernel: np.ndarray | None = None
    weights: np.ndarray | None = None
    weight_exp: int = 0
    num_weight_bits: int = L2.WEIGHT_BITS
    sign_mode: L2.SignMode | None = None

    def __post_init__(self) -> None:
        self.delays = _int_array(self.delays, "recurrent delays").reshape(-1)
        if (self.kernel is None) == (self.weights is None):
            raise NetworkValidationError("Recurrence: give exactly one of `kernel` (conv) or `weights` (dense)")
        if self.kernel is not None:
            self.kernel = _int_array(self.kernel, "recurrent kernel").reshape(-1)
        if self.weights is not None:
            self.weights = _int_array(self.weights, "recurrent weights")
        self.weight_exp = int(self.weight_exp)
        self.num_weight_bits = int(self.num_weight_bits)
        if self.sign_mode is not None:
            self.sign_mode = L2.SignMode(self.sign_mode)

    @property
    def n(self) -> int:
        return int(self.delays.shape[0])

    @property
    def is_conv(self) -> bool:
        return self.kernel is not None

    def matrix(self) -> np.ndarray:
        """(n, n) raw integer weight matrix (the banded conv matrix for a conv recurrence)."""
        return conv_matrix(self.kernel, self.n) if self.is_conv else self.weights

    def resolved_sign_mode(self) -> L2.SignMode:
        return self.sign_mode if self.sign_mode is not None else L2.infer_sign_mode(self.matrix())

    def effective_kernel(self) -> np.ndarray:
        """(k,) int64 effective kernel (conv recurrence only)."""
        return L2.effective_weights(self.kernel, self.resolved_sign_mode(), self.num_weight_bits)

    def effective(self) -> np.ndarray:
        """(n, n) int64 effective weight matrix."""
        return L2.effective_weights(self.matrix(), self.resolved_sign_mode(), self.num_weight_bits)


@dataclass
class LIFParams:
    """Integer CUBA LIF parameters of one population (Lava ``LIF`` with fixed-point model).

    du, dv: current / voltage decay 0..4095 (shared). vth: threshold mantissa 0..131071 (shared).
    bias_mant: (n,) 13-bit signed mantissas; bias_exp: 0..7 (shared, or (n,)).
    """

    n: int
    du: int = L2.DECAY_MAX
    dv: int = 0
    vth: int = 1
    bias_mant: np.ndarray | int = 0
    bias_exp: np.ndarray | int = 0

    def __post_init__(self) -> None:
        self.n, self.du, self.dv, self.vth = int(self.n), int(self.du), int(self.dv), int(self.vth)
        self.bias_mant = np.broadcast_to(_int_array(self.bias_mant, "bias_mant"), (self.n,)).copy()
        self.bias_exp = np.broadcast_to(_int_array(self.bias_exp, "bias_exp"), (self.n,)).copy()

    def bias(self) -> np.ndarray:
        """(n,) int64 effective bias in v units."""
        return L2.scaled_bias(self.bias_mant, self.bias_exp)


@dataclass
class GateSet:
    """The gates of a CS-GRU layer (see :func:`crsnn.loihi2.csgru_step`), integers as deployed.

    r_ff: (n, n_in) feedforward connection into the reset gate (``W_r``).
    r_rec, z_rec: conv recurrences into the reset and update gates (``U_r``, ``U_z``); their
        delays must equal the layer's ``rec.delays`` (one axonal delay per neuron).
    bias_r_mant, bias_r_exp, bias_z_mant, bias_z_exp: gate biases, 13-bit mantissa and exponent
        0..7 like the LIF bias, in Q12 pre-activation units (``mant << exp``; 4096 = 1.0).
    w_z: (n,) 8-bit signed per-neuron weights of the update gate on the current (``W_z``, a
        diagonal map: a conv of the current would need the neurons to exchange graded values
        within one step, which Loihi 2's one-step synaptic latency does not allow); z_shift: their
        right shift 0..24.
    """

    r_ff: Connection
    r_rec: Recurrence
    z_rec: Recurrence
    bias_r_mant: np.ndarray | int = 0
    bias_r_exp: np.ndarray | int = 0
    bias_z_mant: np.ndarray | int = 0
    bias_z_exp: np.ndarray | int = 0
    w_z: np.ndarray | int = 0
    z_shift: int = 0

    def __post_init__(self) -> None:
        n = self.r_rec.n
        for name in ("bias_r_mant", "bias_r_exp", "bias_z_mant", "bias_z_exp", "w_z"):
            setattr(self, name, np.broadcast_to(_int_array(getattr(self, name), name), (n,)).copy())
        self.z_shift = int(self.z_shift)

    @property
    def n(self) -> int:
        return self.r_rec.n

    def bias_r(self) -> np.ndarray:
        """(n,) int64 reset-gate bias, Q12."""
        return L2.scaled_bias(self.bias_r_mant, self.bias_r_exp)

    def bias_z(self) -> np.ndarray:
        """(n,) int64 update-gate bias, Q12."""
        return L2.scaled_bias(self.bias_z_mant, self.bias_z_exp)


@dataclass
class Layer:
    """A population fed by ``ff`` (and, for hidden layers, optionally by ``rec``); with ``gates``
    a CS-GRU layer (see :class:`GateSet`)."""

    ff: Connection
    neuron: LIFParams
    rec: Recurrence | None = None
    gates: GateSet | None = None

    @property
    def n(self) -> int:
        return self.neuron.n

    @property
    def is_csgru(self) -> bool:
        return self.gates is not None


@dataclass
class IntegerNetwork:
    """input (n_in channels) -> hidden layers -> readout. See the module docstring."""

    n_in: int
    hidden: list[Layer]
    readout: Layer
    input_message_bits: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[Layer]:
        """Hidden layers then the readout."""
        return [*self.hidden, self.readout]

    @property
    def n_out(self) -> int:
        return self.readout.n

    @property
    def has_csgru(self) -> bool:
        """Whether any hidden layer is a CS-GRU layer (gated neurons, not Lava's LIF)."""
        return any(layer.is_csgru for layer in self.hidden)

    def max_input(self) -> int:
        """Largest input value per channel and step (1 for binary spikes)."""
        return 1 if self.input_message_bits == 0 else 2**self.input_message_bits - 1

    # ----------------------------------------------------------------------------------------
    def validate(self) -> "IntegerNetwork":
        """Check every parameter against the Loihi 2 / Lava limits in :mod:`crsnn.loihi2`.

        Raises :class:`NetworkValidationError` with all problems found, each naming the layer,
        the parameter, the offending value and the allowed range. Returns ``self``.
        """
        errors: list[str] = []

        def bad(where: str, what: str, got: Any, allowed: str, fix: str = "") -> None:
            errors.append(f"{where}: {what} = {got} outside {allowed}" + (f" ({fix})" if fix else ""))

        if self.n_in < 1:
            bad("input", "n_in", self.n_in, "[1, inf)")
        if not 0 <= self.input_message_bits <= L2.MAX_MESSAGE_BITS:
            bad("input", "input_message_bits", self.input_message_bits, f"[0, {L2.MAX_MESSAGE_BITS}]")
        n_prev = self.n_in
        max_payload = self.max_input()
        for li, layer in enumerate(self.layers):
            where = f"layer {li}" if li < len(self.hidden) else "readout"
            nrn = layer.neuron
            if layer.ff.shape != (nrn.n, n_prev):
                errors.append(f"{where}: feedforward weights have shape {layer.ff.shape}, expected ({nrn.n}, {n_prev})")
            conns = [("feedforward", layer.ff, max_payload), ("recurrent", layer.rec, 1)]
            if layer.gates is not None:
                g = layer.gates
                conns += [("reset-gate feedforward", g.r_ff, max_payload), ("reset-gate recurrent", g.r_rec, 1),
                          ("update-gate recurrent", g.z_rec, 1)]
                if g.r_ff.shape != (nrn.n, n_prev):
                    errors.append(f"{where}: reset-gate feedforward weights have shape {g.r_ff.shape}, "
                                  f"expected ({nrn.n}, {n_prev})")
                errors += _gate_errors(where, layer, max_payload)
            for conn_name, conn, payload in conns:
                if conn is None:
                    continue
                if not 1 <= conn.num_weight_bits <= L2.WEIGHT_BITS:
                    bad(where, f"{conn_name} num_weight_bits", conn.num_weight_bits, f"[1, {L2.WEIGHT_BITS}]")
                    continue
                if not L2.WEIGHT_EXP_MIN <= conn.weight_exp <= L2.WEIGHT_EXP_MAX:
                    bad(where, f"{conn_name} weight_exp", conn.weight_exp,
                        f"[{L2.WEIGHT_EXP_MIN}, {L2.WEIGHT_EXP_MAX}]", "rescale the weights or the threshold")
                raw = conn.kernel if isinstance(conn, Recurrence) and conn.is_conv else conn.weights
                if raw.size and (raw.min() < L2.RAW_WEIGHT_MIN or raw.max() > L2.RAW_WEIGHT_MAX):
                    bad(where, f"{conn_name} weights", f"[{raw.min()}, {raw.max()}]",
                        f"[{L2.RAW_WEIGHT_MIN}, {L2.RAW_WEIGHT_MAX}]",
                        "Lava would clip them silently; requantize with a larger weight_exp")
                if isinstance(conn, Recurrence) and (
                    conn.n != nrn.n or (not conn.is_conv and conn.weights.shape != (nrn.n, nrn.n))
                ):
                    errors.append(f"{where}: recurrence is sized for {conn.n} neurons, layer has {nrn.n}")
                    continue
                if isinstance(conn, Connection) and conn.delays is not None:
                    d = conn.delays
                    if d.shape != conn.shape:
                        errors.append(f"{where}: {conn_name} delays have shape {d.shape}, expected {conn.shape} "
                                      "(one per synapse: (n_out, n_in))")
                    elif d.size and (d.min() < L2.SYNAPSE_DELAY_MIN or d.max() > L2.SYNAPSE_DELAY_MAX):
                        i, j = np.argwhere((d < L2.SYNAPSE_DELAY_MIN) | (d > L2.SYNAPSE_DELAY_MAX))[0]
                        bad(where, f"{conn_name} delay of synapse ({i}, {j})", int(d[i, j]),
                            f"[{L2.SYNAPSE_DELAY_MIN}, {L2.SYNAPSE_DELAY_MAX}] steps",
                            "clamp the synaptic delays during training (Loihi 2's delay range)")
                acc = L2.max_abs_accumulation(conn.effective(), payload) if raw.size else 0
                if acc >= 2**31:
                    bad(where, f"{conn_name} worst-case accumulation", acc, "[0, 2**31)",
                        "fewer inputs, smaller weights or fewer message bits")
            if layer.rec is not None or layer.gates is not None:
                if li == len(self.hidden):
                    errors.append("readout: a readout layer cannot have a recurrence")
                d = layer.rec.delays if layer.rec is not None else np.zeros(0, np.int64)
                if d.size and (d.min() < L2.DELAY_MIN or d.max() > L2.DELAY_MAX):
                    j = int(np.argmax((d < L2.DELAY_MIN) | (d > L2.DELAY_MAX)))
                    bad(where, f"recurrent delay of neuron {j}", int(d[j]), f"[{L2.DELAY_MIN}, {L2.DELAY_MAX}] steps",
                        "clamp delays during training (Loihi 2 axonal delay range)")
                if layer.rec is not None and layer.rec.is_conv and layer.rec.kernel.size < 1:
                    bad(where, "conv kernel size", layer.rec.kernel.size, "[1, inf)")
            for pname, val, lo, hi in (("du", nrn.du, 0, L2.DECAY_MAX), ("dv", nrn.dv, 0, L2.DECAY_MAX),
                                       ("vth", nrn.vth, 0, L2.VTH_MAX)):
                if not lo <= val <= hi:
                    bad(where, pname, val, f"[{lo}, {hi}]")
            bm, be = nrn.bias_mant, nrn.bias_exp
            if bm.size and (bm.min() < L2.BIAS_MANT_MIN or bm.max() > L2.BIAS_MANT_MAX):
                bad(where, "bias_mant", f"[{bm.min()}, {bm.max()}]", f"[{L2.BIAS_MANT_MIN}, {L2.BIAS_MANT_MAX}]",
                    "use a larger bias_exp")
            if be.size and (be.min() < L2.BIAS_EXP_MIN or be.max() > L2.BIAS_EXP_MAX):
                bad(where, "bias_exp", f"[{be.min()}, {be.max()}]", f"[{L2.BIAS_EXP_MIN}, {L2.BIAS_EXP_MAX}]")
            n_prev = nrn.n
        if errors:
            raise NetworkValidationError("invalid integer network:\n  - " + "\n  - ".join(errors))
        return self

    def validate_input(self, x: np.ndarray) -> np.ndarray:
        """Check an input batch: (batch, steps, n_in) integers within the message range.
        Returns it as int64."""
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[2] != self.n_in:
            raise NetworkValidationError(f"input: expected shape (batch, steps, {self.n_in}), got {x.shape}")
        x = _int_array(x, "input")
        if x.size and (x.min() < 0 or x.max() > self.max_input()):
            raise NetworkValidationError(
                f"input: values in [{x.min()}, {x.max()}] outside [0, {self.max_input()}] for "
                f"input_message_bits = {self.input_message_bits} (clip or re-bin the input, or use more message bits)")
        return x


def _gate_errors(where: str, layer: Layer, max_payload: int) -> list[str]:
    """What does not fit in a CS-GRU layer's gates (see :class:`GateSet`), one message each."""
    from crsnn.bounds import shifted_bound

    g, nrn, rec = layer.gates, layer.neuron, layer.rec
    assert g is not None
    out: list[str] = []
    if rec is None or not rec.is_conv:
        return [f"{where}: a CS-GRU layer needs a conv recurrence into its current (rec with a kernel)"]
    for name, r in (("reset-gate", g.r_rec), ("update-gate", g.z_rec)):
        if not r.is_conv:
            out.append(f"{where}: the {name} recurrence must be a conv kernel")
        if r.n != rec.n or not np.array_equal(r.delays, rec.delays):
            out.append(f"{where}: the {name} recurrence must use the layer's axonal delays (one per neuron)")
    if nrn.du != L2.DECAY_MAX or nrn.dv != 0:
        out.append(f"{where}: a CS-GRU layer has du = {nrn.du}, dv = {nrn.dv}; expected {L2.DECAY_MAX} and 0 "
                   "(its gates replace the decays)")
    for name, mant, exp in (("bias_r", g.bias_r_mant, g.bias_r_exp), ("bias_z", g.bias_z_mant, g.bias_z_exp)):
        if mant.size and (mant.min() < L2.BIAS_MANT_MIN or mant.max() > L2.BIAS_MANT_MAX):
            out.append(f"{where}: {name} mantissa = [{mant.min()}, {mant.max()}] outside "
                       f"[{L2.BIAS_MANT_MIN}, {L2.BIAS_MANT_MAX}] (use a larger exponent)")
        if exp.size and (exp.min() < L2.BIAS_EXP_MIN or exp.max() > L2.BIAS_EXP_MAX):
            out.append(f"{where}: {name} exponent = [{exp.min()}, {exp.max()}] outside "
                       f"[{L2.BIAS_EXP_MIN}, {L2.BIAS_EXP_MAX}]")
    if g.w_z.size and (g.w_z.min() < L2.DIAG_MIN or g.w_z.max() > L2.DIAG_MAX):
        out.append(f"{where}: update-gate weights w_z = [{g.w_z.min()}, {g.w_z.max()}] outside "
                   f"[{L2.DIAG_MIN}, {L2.DIAG_MAX}] (use a larger z_shift)")
    if not L2.DIAG_SHIFT_MIN <= g.z_shift <= L2.DIAG_SHIFT_MAX:
        out.append(f"{where}: z_shift = {g.z_shift} outside [{L2.DIAG_SHIFT_MIN}, {L2.DIAG_SHIFT_MAX}]")
    if out:
        return out

    def bound(conn, payload: int) -> int:
        eff = conn.effective()
        return shifted_bound(L2.max_abs_accumulation(eff, payload), conn.weight_exp) if eff.size else 0

    # each gate input is the int32 sum of two connection outputs: it must not wrap
    for name, total in (("current", bound(layer.ff, max_payload) + bound(rec, 1)),
                        ("reset gate", bound(g.r_ff, max_payload) + bound(g.r_rec, 1)),
                        ("update gate", bound(g.z_rec, 1))):
        if total >= 2**31:
            out.append(f"{where}: worst-case summed input of the {name} = {total} outside [0, 2**31) "
                       "(smaller weights or exponents)")
    return out
