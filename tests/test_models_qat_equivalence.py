"""QAT forward == integer simulator, bit for bit: after a brief float + QAT training, the QAT
readout voltages (and hidden spikes) of the model equal crsnn.sim.integer_sim.simulate on
model.to_integer(), for CRSNN and DelRec (and variants)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crsnn import loihi2 as L2
from crsnn.models.network import ModelConfig, build_model
from crsnn.sim.integer_sim import simulate
from crsnn.train.synthetic import DelayTask

from briefly_trained import train_steps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TASK = DelayTask(n_steps=40, n_channels=10, gap_step=3, noise_rate=0.08)  # busy input: many spikes

VARIANTS = {
    "crsnn": dict(model="crsnn", hidden=[24, 20], kernel=3),
    "delrec": dict(model="delrec", hidden=[24, 20]),
    "crsnn-k5-nobn-rec1": dict(model="crsnn", hidden=[16, 24], kernel=5, batchnorm=False, recurrent=[False, True],
                               gain=5.0),
    "delrec-graded-3bit": dict(model="delrec", hidden=[20], input_message_bits=3),
    "ff": dict(model="ff", hidden=[24, 16]),
}


def _briefly_trained(variant: str, seed: int = 0):
    torch.manual_seed(seed)
    kw = dict(n_in=TASK.n_channels, n_out=TASK.n_classes, input_message_bits=TASK.input_message_bits,
              delay_init=["uniform", 0, 12], sigma0=3.0, dropout=0.1, rec_dropout=0.1)
    kw.update(VARIANTS[variant])
    gain = kw.pop("gain", 1.0)
    model = build_model(ModelConfig(**kw))
    with torch.no_grad():  # without BatchNorm, larger weights make the sparse input drive spikes
        for layer in model.layers:
            layer.weight.mul_(gain)
    init_delays = [l.delays.detach().clone() for l in model.layers if l.recurrence]
    x, y = TASK.generate(8 * 32, seed=seed)
    return train_steps(model, torch.from_numpy(x), torch.from_numpy(y)), init_delays


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_qat_readout_equals_integer_simulator_exactly(variant):
    model, init_delays = _briefly_trained(variant)
    x, _ = TASK.generate(48, seed=123)
    if model.config.input_message_bits == 3:
        x = np.minimum(x.astype(np.int64) * 2, 7)  # use the graded range
    xt = torch.from_numpy(np.asarray(x))
    with torch.no_grad():
        v_qat, spikes_qat = model.qat_readout_int(xt, return_hidden=True)
    net = model.to_integer()
    res = simulate(net, model.clip_input_numpy(xt))
    v_qat = v_qat.numpy()
    assert np.array_equal(v_qat, np.rint(v_qat)), "QAT voltages must be integers"
    assert np.array_equal(v_qat.astype(np.int64), res.readout_v)
    for s_qat, s_sim in zip(spikes_qat, res.hidden_spikes):
        assert np.array_equal(s_qat.numpy().astype(bool), s_sim)
        assert 0 < s_sim.mean() < 0.5, "hidden layers should spike (a non-trivial comparison)"
    assert res.readout_v.std() > 0 and not res.readout_spikes.any()
    # the float-unit QAT output is the same voltage scaled
    with torch.no_grad():
        assert torch.equal(model.forward_qat(xt), torch.from_numpy(res.readout_v).double() / model.config.readout_scale)
    # deployable integers: delays 0..62 and trained (moved away from the initial rounding)
    for layer, rec_layer, d0 in zip([l for l in model.layers if l.recurrence],
                                    [h for h in net.hidden if h.rec is not None], init_delays):
        d = rec_layer.rec.delays
        assert d.dtype == np.int64 and d.min() >= L2.DELAY_MIN and d.max() <= L2.DELAY_MAX
        assert not torch.equal(layer.delays.detach(), d0)
    net.validate()


def test_readout_exponent_can_be_negative_and_stays_exact():
    model, _ = _briefly_trained("crsnn")
    with torch.no_grad():
        model.readout.weight.mul_(1e-3)  # tiny weights -> negative weight exponent, floor shifts
    net = model.to_integer()
    assert net.readout.ff.weight_exp < 0
    x, _ = TASK.generate(16, seed=5)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        v = model.qat_readout_int(xt).numpy().astype(np.int64)
    assert np.array_equal(v, simulate(net, x).readout_v)
