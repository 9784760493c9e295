"""Random integer networks that cover the Loihi 2 parameter space, for checking the simulator
against Lava.

Coverage (each drawn per network or per layer): 1-3 hidden layers; 20-100 steps; binary or
graded input (1-8 message bits); raw weights over the whole 8-bit range [-256, 255], 1-8 weight
bits, explicit or inferred sign modes (including all-positive / all-negative matrices), weight
exponents over [-8, 7]; decays 0..4095 with their extremes; thresholds from 0 to 131071; biases
from 0 to their limits; conv recurrences with kernel sizes 1-7 and dense recurrences; axonal
delays over the whole range 0..62 (both ends forced in some layers); readouts that sometimes
saturate; optionally (``synaptic_delays``) per-synapse feedforward delays over 0..62 (uniform,
short, or a few distinct values, both ends forced in some connections). The weight exponent of each connection is aimed at moderate activity (with a random
offset), so that most networks spike and the comparison is not vacuous.
"""

from __future__ import annotations

import numpy as np

from crsnn import loihi2 as L2
from crsnn.models.integer import Connection, GateSet, IntegerNetwork, Layer, LIFParams, Recurrence

#: Threshold-equivalent of one gate unit for :func:`_aim_exp`: a gate pre-activation of 1.0 is
#: 4096 = 64 << 6 (Q12), what a LIF threshold mantissa of 64 is to its voltage.
_GATE_VTH = L2.GATE_ONE >> L2.ACT_SHIFT


def _pick(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def _raw_weights(rng: np.random.Generator, shape) -> np.ndarray:
    kind = _pick(rng, ["full", "full", "positive", "negative", "sparse", "small"])
    if kind == "full":
        w = rng.integers(L2.RAW_WEIGHT_MIN, L2.RAW_WEIGHT_MAX + 1, shape)
    elif kind == "positive":
        w = rng.integers(0, L2.RAW_WEIGHT_MAX + 1, shape)
    elif kind == "negative":
        w = rng.integers(L2.RAW_WEIGHT_MIN, 1, shape)
    elif kind == "sparse":
        w = rng.integers(L2.RAW_WEIGHT_MIN, L2.RAW_WEIGHT_MAX + 1, shape) * (rng.random(shape) < 0.3)
    else:
        w = rng.integers(-8, 9, shape)
    return w.astype(np.int64)


def _conn_params(rng: np.random.Generator) -> dict:
    return {
        "num_weight_bits": int(_pick(rng, [8, 8, 8, 7, 6, 5, 4, 3, 2, 1])),
        "sign_mode": _pick(rng, [None, None, None, L2.SignMode.MIXED, L2.SignMode.EXCITATORY, L2.SignMode.INHIBITORY]),
    }


def _aim_exp(rng: np.random.Generator, eff: np.ndarray, fan_rate: float, payload: float, vth: int, du: int) -> int:
    """Weight exponent giving a per-step drive of roughly ``r`` thresholds, r log-uniform."""
    nz = eff[eff != 0]
    rms = float(np.sqrt(np.mean(nz.astype(np.float64) ** 2))) if nz.size else 1.0
    typical = max(1.0, rms * np.sqrt(max(1.0, eff.shape[1] * fan_rate)) * payload)
    memory = 1.0 / max(1e-3, 1.0 - L2.leak_from_du(du))  # current accumulation for slow du
    target = max(1.0, float(vth)) * float(np.exp(rng.uniform(np.log(0.3), np.log(4.0))))
    e = int(np.round(np.log2(target / (typical * min(memory, 50.0))))) + int(rng.integers(-1, 2))
    return int(np.clip(e, L2.WEIGHT_EXP_MIN, L2.WEIGHT_EXP_MAX))


def _neuron(rng: np.random.Generator, n: int, readout: bool) -> LIFParams:
    du = int(_pick(rng, [L2.DECAY_MAX, L2.DECAY_MAX, 0, int(rng.integers(0, 4096)), int(rng.integers(3000, 4096))]))
    dv = int(_pick(rng, [0, L2.DECAY_MAX, int(rng.integers(0, 4096)), int(rng.integers(0, 600))]))
    if readout:
        vth = int(_pick(rng, [L2.VTH_MAX, L2.VTH_MAX, L2.VTH_MAX, int(rng.integers(1, 2000))]))
    else:
        vth = int(_pick(rng, [0, 1, L2.VTH_MAX, int(np.exp(rng.uniform(0, np.log(L2.VTH_MAX)))),
                              int(np.exp(rng.uniform(0, np.log(L2.VTH_MAX))))]))
    kind = _pick(rng, ["zero", "small", "limits", "random"])
    if kind == "zero":
        bm, be = np.zeros(n, np.int64), 0
    elif kind == "small":
        bm, be = rng.integers(-64, 65, n), int(rng.integers(0, 3))
    elif kind == "limits":
        bm = rng.choice([L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX, L2.BIAS_MANT_MIN + 1, L2.BIAS_MANT_MAX - 1, 0], n)
        be = int(rng.integers(L2.BIAS_EXP_MIN, L2.BIAS_EXP_MAX + 1))
    else:
        bm, be = rng.integers(L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX + 1, n), rng.integers(0, 8, n)
    return LIFParams(n=n, du=du, dv=dv, vth=vth, bias_mant=bm, bias_exp=be)


def _recurrence(rng: np.random.Generator, n: int, vth: int, du: int, odd_kernels: bool = False) -> Recurrence:
    delays = rng.integers(L2.DELAY_MIN, L2.DELAY_MAX + 1, n)
    if rng.random() < 0.5 and n >= 2:
        delays[rng.integers(0, n)] = L2.DELAY_MIN
        delays[rng.integers(0, n)] = L2.DELAY_MAX
    if rng.random() < 0.2:
        delays = rng.integers(0, 4, n)  # short loops: strong recurrent dynamics
    params = _conn_params(rng)
    if rng.random() < 0.7:
        k = int(rng.integers(1, min(7, n) + 1))
        if odd_kernels and k % 2 == 0:
            k -= 1
        raw = _raw_weights(rng, (k,))
        rec = Recurrence(delays=delays, kernel=raw, **params)
    else:
        rec = Recurrence(delays=delays, weights=_raw_weights(rng, (n, n)), **params)
    rec.weight_exp = _aim_exp(rng, rec.effective(), 0.2, 1.0, vth, du)
    return rec


def _synapse_delays(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(n_out, n_in) per-synapse delays (time steps) in 0..62."""
    kind = _pick(rng, ["uniform", "short", "few", "zero"], p=[0.4, 0.3, 0.25, 0.05])
    if kind == "uniform":
        d = rng.integers(L2.SYNAPSE_DELAY_MIN, L2.SYNAPSE_DELAY_MAX + 1, shape)
    elif kind == "short":
        d = rng.integers(0, 6, shape)
    elif kind == "few":
        d = rng.choice(rng.integers(0, L2.SYNAPSE_DELAY_MAX + 1, 3), shape)
    else:
        d = np.zeros(shape, dtype=np.int64)
    if kind != "zero" and rng.random() < 0.5 and d.size >= 2:
        d.flat[rng.integers(0, d.size)] = L2.SYNAPSE_DELAY_MIN
        d.flat[rng.integers(0, d.size)] = L2.SYNAPSE_DELAY_MAX
    return d.astype(np.int64)


def _gate_bias(rng: np.random.Generator, n: int) -> tuple[np.ndarray, int]:
    """Gate bias mantissas and exponent (Q12): zero, around +-1.0, or at the limits."""
    kind = _pick(rng, ["zero", "moderate", "limits"])
    if kind == "zero":
        return np.zeros(n, np.int64), 0
    if kind == "moderate":
        return rng.integers(-4096, 4097, n), int(rng.integers(0, 3))
    return rng.choice([L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX, 0], n), int(rng.integers(L2.BIAS_EXP_MIN, L2.BIAS_EXP_MAX + 1))


def _odd_kernel(rng: np.random.Generator, n: int) -> np.ndarray:
    k = int(rng.integers(1, min(7, n) + 1))
    return _raw_weights(rng, (k - (1 - k % 2),))


def csgru_layer(rng: np.random.Generator, n: int, n_prev: int, payload: float) -> Layer:
    """A random CS-GRU layer (:class:`~crsnn.models.integer.GateSet`): odd conv kernels 1..7 for
    the three recurrences over one set of axonal delays 0..62 (both ends forced sometimes),
    feedforward and recurrent exponents aimed at moderate drive of the current (threshold units)
    and of the gates (about 1.0 in Q12, with a random offset), gate biases from zero to their
    limits, update-gate weights over the 8-bit range with a shift aimed at a pre-activation of
    about 1.0 per threshold of current."""
    vth = int(_pick(rng, [1, int(rng.integers(8, 2000)), int(rng.integers(8, 2000)), L2.VTH_MAX]))
    nrn = _neuron(rng, n, readout=False)
    nrn = LIFParams(n=n, du=L2.DECAY_MAX, dv=0, vth=vth, bias_mant=nrn.bias_mant, bias_exp=nrn.bias_exp)
    delays = rng.integers(L2.DELAY_MIN, L2.DELAY_MAX + 1, n)
    if rng.random() < 0.5 and n >= 2:
        delays[rng.integers(0, n)] = L2.DELAY_MIN
        delays[rng.integers(0, n)] = L2.DELAY_MAX
    if rng.random() < 0.3:
        delays = rng.integers(0, 4, n)

    def ff(target_vth: int) -> Connection:
        c = Connection(_raw_weights(rng, (n, n_prev)), **_conn_params(rng))
        c.weight_exp = _aim_exp(rng, c.effective(), 0.3, payload, target_vth, L2.DECAY_MAX)
        return c

    def rec(target_vth: int) -> Recurrence:
        r = Recurrence(delays=delays, kernel=_odd_kernel(rng, n), **_conn_params(rng))
        r.weight_exp = max(0, _aim_exp(rng, r.effective(), 0.2, 1.0, target_vth, L2.DECAY_MAX))
        return r

    w_i, u_i, w_r, u_r, u_z = ff(vth), rec(vth), ff(_GATE_VTH), rec(_GATE_VTH), rec(_GATE_VTH)
    (brm, bre), (bzm, bze) = _gate_bias(rng, n), _gate_bias(rng, n)
    w_z = rng.integers(L2.DIAG_MIN, L2.DIAG_MAX + 1, n)
    aim = np.log2(max(1.0, float(np.abs(w_z).mean())) * L2.scaled_threshold(vth) / L2.GATE_ONE)
    z_shift = int(np.clip(round(aim) + int(rng.integers(-2, 3)), L2.DIAG_SHIFT_MIN, L2.DIAG_SHIFT_MAX))
    gates = GateSet(r_ff=w_r, r_rec=u_r, z_rec=u_z, bias_r_mant=brm, bias_r_exp=bre, bias_z_mant=bzm,
                    bias_z_exp=bze, w_z=w_z, z_shift=z_shift)
    return Layer(ff=w_i, neuron=nrn, rec=u_i, gates=gates)


def random_network(rng: np.random.Generator, max_neurons: int = 48, odd_kernels: bool = False,
                   synaptic_delays: float = 0.0, csgru: float = 0.0) -> tuple[IntegerNetwork, int]:
    """A random valid network and a number of steps (20..100). ``max_neurons`` bounds each
    population. ``odd_kernels``: conv kernels of odd size only (what NIR export accepts; the
    integer core and Lava also run even ones). ``synaptic_delays``: probability that a
    feedforward connection (hidden or readout) gets per-synapse delays (0 draws no extra random
    numbers, so the networks of a seed stay those drawn without this option). ``csgru``: probability
    that a hidden layer is a CS-GRU layer (:func:`csgru_layer`; 0 draws nothing extra either)."""
    n_in = int(rng.integers(2, 41))
    msg_bits = int(_pick(rng, [0, 0, 1, 2, 3, 4, 8]))
    payload = 1.0 if msg_bits == 0 else (2**msg_bits - 1) / 2.0
    n_prev, hidden = n_in, []
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.integers(2, max_neurons + 1))
        if csgru > 0 and rng.random() < csgru:
            hidden.append(csgru_layer(rng, n, n_prev, payload))
            n_prev, payload = n, 1.0
            continue
        nrn = _neuron(rng, n, readout=False)
        ff = Connection(_raw_weights(rng, (n, n_prev)), **_conn_params(rng))
        ff.weight_exp = _aim_exp(rng, ff.effective(), 0.3, payload, nrn.vth, nrn.du)
        if synaptic_delays > 0 and rng.random() < synaptic_delays:
            ff.delays = _synapse_delays(rng, ff.shape)
        rec = _recurrence(rng, n, nrn.vth, nrn.du, odd_kernels) if rng.random() < 0.85 else None
        hidden.append(Layer(ff=ff, neuron=nrn, rec=rec))
        n_prev, payload = n, 1.0
    n_out = int(rng.integers(2, 11))
    nrn = _neuron(rng, n_out, readout=True)
    ff = Connection(_raw_weights(rng, (n_out, n_prev)), **_conn_params(rng))
    # readout: aim at a fraction of the full voltage range; sometimes hard into saturation
    ff.weight_exp = _aim_exp(rng, ff.effective(), 0.3, 1.0, min(nrn.vth, 2**14), nrn.du) + int(rng.integers(0, 4))
    ff.weight_exp = int(np.clip(ff.weight_exp, L2.WEIGHT_EXP_MIN, L2.WEIGHT_EXP_MAX))
    if synaptic_delays > 0 and rng.random() < synaptic_delays:
        ff.delays = _synapse_delays(rng, ff.shape)
    net = IntegerNetwork(n_in=n_in, hidden=hidden, readout=Layer(ff=ff, neuron=nrn), input_message_bits=msg_bits)
    steps = int(rng.integers(20, 101))
    return net.validate(), steps


def random_input(rng: np.random.Generator, net: IntegerNetwork, batch: int, steps: int) -> np.ndarray:
    """(batch, steps, n_in) int64 input: sparse events with graded payloads up to the maximum."""
    rate = float(rng.uniform(0.05, 0.6))
    active = rng.random((batch, steps, net.n_in)) < rate
    vals = rng.integers(1, net.max_input() + 1, (batch, steps, net.n_in))
    return (active * vals).astype(np.int64)


def describe(net: IntegerNetwork, steps: int) -> str:
    """One line: sizes, recurrence kinds, delay and exponent ranges."""
    parts = [f"in {net.n_in}{'' if net.input_message_bits == 0 else f'/{net.input_message_bits}b'}"]
    def syn(layer) -> str:
        d = layer.ff.delays
        return "" if d is None else f" sd{int(d.min())}-{int(d.max())}"

    for layer in net.hidden:
        r = layer.rec
        kind = "ff" if r is None else (f"conv{r.kernel.size}" if r.is_conv else "dense")
        kind = f"csgru{r.kernel.size}" if layer.is_csgru else kind
        d = "" if r is None else f" d{int(r.delays.min())}-{int(r.delays.max())}"
        parts.append(f"{layer.n}{kind}{d}{syn(layer)}")
    parts.append(f"out {net.n_out}{syn(net.readout)}")
    return " -> ".join(parts) + f", {steps} steps"


def random_crsnn(rng: np.random.Generator, n_in: int, hidden: list[int], n_out: int, kernel: int = 3,
                 dense: bool = False, input_message_bits: int = 0, max_delay: int = L2.DELAY_MAX,
                 input_rate: float = 0.05, hidden_rate: float = 0.05) -> IntegerNetwork:
    """A random CRSNN-shaped network (every hidden layer recurrent: conv kernel ``kernel``, or
    dense when ``dense``; delays uniform in 0..max_delay) with 8-bit mixed weights and exponents
    aimed at moderate activity for inputs active with probability ``input_rate`` per channel and
    step: for benchmarks at realistic sizes."""
    payload = 1.0 if input_message_bits == 0 else (2**input_message_bits - 1) / 2.0
    n_prev, layers = n_in, []
    for n in hidden:
        nrn = LIFParams(n=n, du=L2.DECAY_MAX, dv=int(rng.integers(200, 1200)), vth=int(rng.integers(200, 2000)))
        ff = Connection(rng.integers(-256, 256, (n, n_prev)), sign_mode=L2.SignMode.MIXED)
        ff.weight_exp = _aim_exp(rng, ff.effective(), input_rate if not layers else hidden_rate, payload,
                                 nrn.vth, nrn.du)
        shape = dict(weights=rng.integers(-256, 256, (n, n))) if dense else dict(kernel=rng.integers(-256, 256, kernel))
        rec = Recurrence(delays=rng.integers(0, max_delay + 1, n), sign_mode=L2.SignMode.MIXED, **shape)
        rec.weight_exp = _aim_exp(rng, rec.effective(), hidden_rate, 1.0, nrn.vth, nrn.du)
        layers.append(Layer(ff=ff, neuron=nrn, rec=rec))
        n_prev, payload = n, 1.0
    nrn = LIFParams(n=n_out, du=L2.DECAY_MAX, dv=100, vth=L2.VTH_MAX)
    ff = Connection(rng.integers(-256, 256, (n_out, n_prev)), sign_mode=L2.SignMode.MIXED)
    ff.weight_exp = _aim_exp(rng, ff.effective(), hidden_rate, 1.0, 2**12, nrn.du)
    return IntegerNetwork(n_in=n_in, hidden=layers, readout=Layer(ff=ff, neuron=nrn),
                          input_message_bits=input_message_bits).validate()
