"""The fused LIF loop (crsnn.models.recurrent): delay taps, the conv recurrence against torch's
conv1d, and the hand-written backward pass against plain autograd on a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crsnn import loihi2 as L2
from crsnn.models.recurrent import (LoopSpec, conv_kernel_grad, conv_rows, conv_rows_t,
                                    lif_loop, spread_taps)
from crsnn.models.surrogate import Surrogate


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- delay taps
@pytest.mark.parametrize("d", [0, 1, 7, 30, 62])
def test_integer_delay_with_tiny_sigma_puts_all_weight_at_latency_1_plus_d(d):
    taps = spread_taps(torch.tensor([float(d)], dtype=torch.float64), sigma=1e-9)
    k, w = taps.k[:, 0], taps.w[:, 0]
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-8)
    assert int(k[torch.argmax(w)]) == 1 + d
    assert float(w[k != 1 + d].abs().sum()) < 1e-8


@pytest.mark.parametrize("sigma", [3.0, 3.5])
def test_spread_is_a_triangle_centred_on_1_plus_d(sigma):
    d = torch.tensor([12.3, 40.0, 0.0], dtype=torch.float64)
    taps = spread_taps(d, sigma)
    s = 1 + sigma
    for j in range(3):
        k, w = taps.k[:, j].double(), taps.w[:, j]
        expect = torch.clamp(s - (k - (1 + d[j])).abs(), min=0) / s**2 * (k >= 1)
        assert torch.allclose(w, expect)
        assert int(k[w > 0].min()) >= 1  # tap 0 is dropped
        if d[j] >= s:  # nothing lost at tap 0: centred on 1 + d; unit area for an integer width
            # (exact for an integer width; sampling a non-integer one at integer taps is close)
            tol = 1e-9 if s == int(s) else 0.02
            assert float((w * k).sum() / w.sum()) == pytest.approx(1 + float(d[j]), abs=tol)
            assert float(w.sum()) == pytest.approx(1.0, abs=tol)


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("d", [0, 3, 11])
def test_a_recurrent_spike_is_integrated_1_plus_d_steps_later(integer, d):
    # one neuron driven above threshold at step 2 only; its self-connection (kernel [K]) alone is
    # enough to fire it again: it must fire at 2, 2 + (1 + d), 2 + 2 (1 + d), ...
    T = 40
    dtype = torch.float64
    theta = float(L2.scaled_threshold(100)) if integer else 1.0
    drive = 10 * theta / (64 if integer else 1)
    a = torch.zeros(T, 1, 1, dtype=dtype)
    a[2] = drive
    spec = LoopSpec(integer=integer, theta=theta, a_scale=64.0 if integer else 1.0, dv=4095,
                    sigma=1e-9)
    s, _ = lif_loop(a, torch.zeros(1, dtype=dtype), torch.tensor(0.0, dtype=dtype), spec,
                    kernel=torch.tensor([drive], dtype=dtype), delays=torch.tensor([float(d)], dtype=dtype))
    times = torch.nonzero(s[:, 0, 0]).flatten().tolist()
    assert times == list(range(2, T, 1 + d))


# ---------------------------------------------------------------- conv recurrence
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7])
def test_conv_rows_equal_torch_conv1d_same_padding(k):
    g = torch.Generator().manual_seed(k)
    n, b = 23, 6
    z = torch.rand(n, b, generator=g, dtype=torch.float64)
    kern = torch.randn(k, generator=g, dtype=torch.float64)
    ref = F.conv1d(z.t()[:, None, :], kern[None, None, :], padding="same")[:, 0, :].t()
    assert torch.allclose(conv_rows(z, kern.tolist()), ref, atol=1e-12)
    # transpose and kernel gradient against autograd through conv1d
    zz = z.clone().requires_grad_(True)
    kk = kern.clone().requires_grad_(True)
    gout = torch.randn(n, b, generator=g, dtype=torch.float64)
    out = F.conv1d(zz.t()[:, None, :], kk[None, None, :], padding="same")[:, 0, :].t()
    (out * gout).sum().backward()
    assert torch.allclose(conv_rows_t(gout, kern.tolist()), zz.grad, atol=1e-12)
    assert torch.allclose(conv_kernel_grad(gout[None], z[None], k), kk.grad, atol=1e-10)


# ---------------------------------------------------------------- backward vs autograd
class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, sur):
        ctx.save_for_backward(x)
        ctx.theta, ctx.sur = theta, sur
        return (x > theta).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.sur.grad((x - ctx.theta) / ctx.theta) / ctx.theta, None, None


def _reference(a, bias, beta, kernel, weights, delays, mask, sigma, sur, integer=False, dv=0, theta=1.0):
    """Slow autograd reference: dense future buffer, torch conv1d, surrogate spike function.
    Integer mode: exact integer forward (crsnn.loihi2), straight-through linear backward and the
    central-difference delay estimate."""
    T, N, B = a.shape
    dtype = a.dtype
    L = 64 + int(math.ceil(1 + sigma)) + 3
    k = torch.arange(L, dtype=dtype)
    if integer:
        di = torch.round(delays.detach()).clamp(0, 62)
        one = lambda off: (k[None, :] == (1 + di + off)[:, None]).to(dtype)  # noqa: E731
        left = (k[None, :] == torch.clamp(di, min=1)[:, None]).to(dtype)  # d = 0: one-sided
        w = one(0) + (delays - delays.detach())[:, None] * 0.5 * (one(1) - left)
        a_scale = 64.0
        beta_eff = (4096 - dv) / 4096 + (beta - beta.detach())
    else:
        s = 1 + sigma
        w = torch.clamp(s - (k[None, :] - (1 + delays)[:, None]).abs(), min=0) / s**2 * (k >= 1)
        a_scale = 1.0
        beta_eff = beta
    future = torch.zeros(T + L, N, B, dtype=dtype)
    v = torch.zeros(N, B, dtype=dtype)
    u = torch.zeros(N, B, dtype=dtype)
    S, VR = [], []
    for t in range(T):
        z = future[t]
        if kernel is not None:
            r = F.conv1d(z.t()[:, None, :], kernel[None, None, :], padding="same")[:, 0, :].t()
        else:
            r = weights @ z
        if mask is not None:
            r = r * mask[t]
        lin = beta_eff * v + a_scale * (a[t] + r) + bias[:, None]
        if integer:
            with torch.no_grad():
                u, exact = L2.lif_integrate(u, v.detach(), (a[t] + r).detach(), 4095, dv, bias.detach()[:, None])
            lin = lin + (exact - lin).detach()
        st = _Spike.apply(lin, theta, sur)
        v = lin * (1 - st.detach())
        S.append(st)
        VR.append(v)
        add = torch.zeros(T + L, N, B, dtype=dtype)
        add[t:t + L] = (w.t()[:, :, None] * st[None])
        future = future + add
    return torch.stack(S), torch.stack(VR)


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("kind", ["conv", "dense"])
@pytest.mark.parametrize("surrogate", ["atan:5", "triangle:1"])
def test_hand_written_backward_equals_autograd_reference(integer, kind, surrogate):
    g = torch.Generator().manual_seed(hash((integer, kind, surrogate)) % 2**31)
    T, N, B = 24, 9, 4
    dtype = torch.float64
    sur = Surrogate.parse(surrogate)
    theta = float(L2.scaled_threshold(64)) if integer else 1.0
    sigma = 0.0 if integer else 1.7
    dv = 1200
    if integer:
        a = torch.randint(-20, 90, (T, N, B), generator=g).to(dtype)
        kern = torch.randint(-60, 60, (3,), generator=g).to(dtype) * 2
        wts = torch.randint(-40, 40, (N, N), generator=g).to(dtype) * 2
        bias = torch.randint(-300, 300, (N,), generator=g).to(dtype)
    else:
        a = torch.rand(T, N, B, generator=g, dtype=dtype) * 1.5 - 0.2
        kern = torch.randn(3, generator=g, dtype=dtype)
        wts = torch.randn(N, N, generator=g, dtype=dtype) * 0.5
        bias = torch.randn(N, generator=g, dtype=dtype) * 0.1
    # delays away from .5 (integer rounding) and from triangle kinks
    delays = (torch.randint(0, 6, (N,), generator=g) + 0.2 + 0.1 * torch.rand(N, generator=g)).to(dtype)
    beta = torch.tensor(0.6, dtype=dtype)
    mask = (torch.rand(T, N, B, generator=g) > 0.2).to(dtype) / 0.8
    if integer:
        mask = None  # a dropout mask makes the integer forward non-integer; tested in float mode
    wout_s = torch.randn(T, N, B, generator=g, dtype=dtype)
    wout_v = torch.randn(T, N, B, generator=g, dtype=dtype) / theta

    def run(fn):
        leaves = [x.clone().requires_grad_(True) for x in (a, bias, beta, kern if kind == "conv" else wts, delays)]
        aa, bb, be, rw, dd = leaves
        s, vr = fn(aa, bb, be, rw, dd)
        ((s * wout_s).sum() + (vr * wout_v).sum()).backward()
        return s.detach(), vr.detach(), [x.grad for x in leaves]

    def fused(aa, bb, be, rw, dd):
        spec = LoopSpec(integer=integer, theta=theta, a_scale=64.0 if integer else 1.0, dv=dv, sigma=sigma,
                        surrogate=sur)
        return lif_loop(aa, bb, be, spec, kernel=rw if kind == "conv" else None,
                        weights=rw if kind == "dense" else None, delays=dd, mask=mask)

    def ref(aa, bb, be, rw, dd):
        return _reference(aa, bb, be, rw if kind == "conv" else None, rw if kind == "dense" else None, dd, mask,
                          sigma, sur, integer, dv, theta)

    s1, v1, g1 = run(fused)
    s2, v2, g2 = run(ref)
    assert s1.sum() > 0 and (s1 == 0).sum() > 0, "test input should make some but not all neurons spike"
    assert torch.equal(s1, s2)
    assert torch.allclose(v1, v2, rtol=1e-12, atol=1e-9)
    for name, x, y in zip(["a", "bias", "beta", "recurrent", "delays"], g1, g2):
        assert torch.allclose(x, y, rtol=1e-8, atol=1e-10), (name, x, y)
        assert float(y.abs().sum()) > 0, f"gradient of {name} is zero: the test checks nothing"


def test_readout_mode_never_spikes_and_integrates():
    T, N, B = 10, 3, 2
    a = torch.ones(T, N, B, dtype=torch.float64) * 5.0
    _, v = lif_loop(a, torch.zeros(N, dtype=torch.float64), 0.5, LoopSpec(integer=False, theta=1.0, spiking=False))
    expect = [5.0 * sum(0.5**i for i in range(t + 1)) for t in range(T)]
    assert np.allclose(v[:, 0, 0].numpy(), expect)
