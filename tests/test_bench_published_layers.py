"""The reference layers of ``bench/published_layers.py`` compute what crsnn's recurrent loop
computes, so that ``bench/vs_published.py`` times equal work: same spikes, voltages and recurrent
input as :func:`crsnn.models.recurrent.lif_loop` in float mode, for a spread concentrated on
integer delays (sigma = 0) and for a wide triangle (sigma > 0, float delays)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from crsnn.models.recurrent import LoopSpec, conv_rows, lif_loop, spread_taps

_PATH = Path(__file__).resolve().parent.parent / "bench" / "published_layers.py"
_spec = importlib.util.spec_from_file_location("published_layers", _PATH)
pl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pl)

T, B, N = 40, 3, 12


def _layer(recurrence: str, delays: torch.Tensor, sigma: float) -> "pl.PublishedRecurrentLIF":
    torch.manual_seed(1)
    layer = pl.PublishedRecurrentLIF(N, recurrence, kernel=3, beta=0.6, sigma=sigma).double().eval()
    with torch.no_grad():
        layer.delays.copy_(delays)
        if recurrence == "dense":
            layer.rec_weight.mul_(1.5)  # strong enough that the recurrence changes the spikes
        else:
            layer.rec_kernel.copy_(torch.tensor([0.9, -0.4, 1.1], dtype=torch.float64))
    return layer


def _crsnn(layer: "pl.PublishedRecurrentLIF", a: torch.Tensor, sigma: float):
    """crsnn's float loop on the same current, parameters and spread; (T, B, N) outputs."""
    spec = LoopSpec(integer=False, theta=1.0, sigma=sigma)
    rp = layer.rec_weight if layer.recurrence == "dense" else layer.rec_kernel
    s, v = lif_loop(a.permute(0, 2, 1).contiguous(), torch.zeros(N, dtype=a.dtype),
                    torch.tensor(layer.beta, dtype=a.dtype), spec,
                    kernel=rp if layer.recurrence == "conv" else None,
                    weights=rp if layer.recurrence == "dense" else None, delays=layer.delays)
    return s.permute(0, 2, 1), v.permute(0, 2, 1)


def _expected_rec(layer: "pl.PublishedRecurrentLIF", s: torch.Tensor, sigma: float) -> torch.Tensor:
    """Recurrent input from crsnn's own delay taps and conv: z_t[j] = sum_k w_jk s_{t-k}[j],
    r_t = W z_t or K (*) z_t. s: (T, B, N) -> (T, B, N)."""
    taps = spread_taps(layer.delays, sigma, torch.float64)
    z = torch.zeros_like(s)
    cols = torch.arange(N)
    for t in range(T):
        for r in range(taps.k.shape[0]):
            src = t - taps.k[r]
            ok = src >= 0
            z[t][:, cols[ok]] += taps.w[r][ok] * s[src[ok], :, cols[ok]].t()
    if layer.recurrence == "dense":
        return z @ layer.rec_weight.t()
    return torch.stack([conv_rows(z[t].t().contiguous(), layer.rec_kernel.tolist()).t() for t in range(T)])


@pytest.mark.parametrize("recurrence", ["dense", "conv"])
@pytest.mark.parametrize("sigma,integer", [(0.0, True), (0.7, False)])
def test_published_layer_equals_crsnn_loop(recurrence: str, sigma: float, integer: bool, one_torch_thread) -> None:
    torch.manual_seed(0)
    d = torch.randint(0, 9, (N,)).double() if integer else torch.rand(N, dtype=torch.float64) * 8
    layer = _layer(recurrence, d, sigma)
    a = torch.rand(T, B, N, dtype=torch.float64) * 1.2  # (T, B, N) feedforward current
    with torch.no_grad():
        s_pub, rec_pub, v_pub = layer(a, record=True)
        s_ref, v_ref = _crsnn(layer, a, sigma)
    assert 0.05 < float(s_pub.mean()) < 0.9
    assert float(rec_pub.abs().sum()) > 1.0  # the recurrence is exercised
    torch.testing.assert_close(s_pub, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(v_pub, v_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rec_pub, _expected_rec(layer, s_pub, sigma), rtol=1e-12, atol=1e-12)
    if integer:  # the spread is one tap of weight 1 at latency 1 + d
        m = pl.triangle_spread(layer.delays, 0.0)
        assert torch.equal(m.argmax(1), (1 + d).long()) and torch.equal(m.sum(1), torch.ones(N, dtype=m.dtype))


def test_published_net_trains_and_loads_crsnn(one_torch_thread) -> None:
    """Backward runs through the dense buffer (delays get a gradient), and a crsnn model's
    parameters load into the reference network of the same shape."""
    from crsnn.models.network import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(n_in=10, n_out=4, hidden=[16, 16], model="crsnn", kernel=3, delay_init=["uniform", 1, 5])
    net = pl.PublishedNet(10, [16, 16], 4, recurrence="conv", sigma=2.0).load_crsnn(build_model(cfg))
    x = torch.poisson(torch.full((2, 20, 10), 0.5))
    net.train()
    v = net(x)
    assert v.shape == (2, 20, 4)
    torch.softmax(v, 2).sum(1)[:, 0].sum().backward()
    for rec in net.recs:
        assert rec.delays.grad is not None and rec.rec_kernel.grad is not None
