"""``python -m crsnn.sim.check_lava --networks N --seed S [--device cpu|cuda|auto]``: the integer
simulator against Lava.

Builds N random networks covering the Loihi 2 parameter space (:mod:`crsnn.sim.random_networks`,
per-synapse feedforward delays included: ``--synaptic-delays``; CS-GRU layers, crsnn's fixed-point
gated neurons, included: ``--csgru``),
runs each on the integer simulator (:func:`crsnn.sim.torch_sim.simulate_torch`, on ``--device``)
and on Lava's fixed-point CPU simulator with the same random input (a batch of samples side by
side), and compares every hidden spike and every readout voltage. The last line is::

    bit-exact: K/N networks, M mismatching spikes, V mismatching readout values

and the exit status is 0 only if K == N and M == V == 0.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from tqdm import tqdm

from crsnn.deploy.lava_network import run_lava
from crsnn.sim.compare import compare_runs
from crsnn.sim.torch_sim import resolve_device, runs_compiled_loop, simulate_torch
from crsnn.sim.random_networks import describe, random_input, random_network


def check_network(seed: int, index: int, max_batch: int = 3, timeout_s: float = 300.0,
                  device: str = "cpu", synaptic_delays: float = 0.0, csgru: float = 0.0) -> tuple[str, object, dict]:
    """Draw network ``index`` of ``seed``, run both executors (the simulator on ``device``), return
    (description, Mismatch, stats). ``synaptic_delays``: probability of per-synapse feedforward
    delays per connection; ``csgru``: probability that a hidden layer is a CS-GRU layer
    (:func:`crsnn.sim.random_networks.random_network`)."""
    rng = np.random.default_rng([seed, index])
    net, steps = random_network(rng, synaptic_delays=synaptic_delays, csgru=csgru)
    batch = int(rng.integers(1, max_batch + 1))
    x = random_input(rng, net, batch, steps)
    t0 = time.perf_counter()
    ref = simulate_torch(net, x, device=device)
    t1 = time.perf_counter()
    lava = run_lava(net, x, timeout_s=timeout_s)
    t2 = time.perf_counter()
    mm = compare_runs(ref.hidden_spikes, ref.readout_v, lava.hidden_spikes, lava.readout_v)
    stats = {
        "batch": batch,
        "spikes": int(sum(int(s.sum()) for s in ref.hidden_spikes)),
        "spike_slots": int(sum(s.size for s in ref.hidden_spikes)),
        "readout_saturated": int((np.abs(ref.readout_v) >= 2**23 - 1).sum() + ref.readout_spikes.sum()),
        "sim_s": t1 - t0,
        "lava_s": t2 - t1,
    }
    return describe(net, steps), mm, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crsnn.sim.check_lava", description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=int, default=20, help="number of random networks (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the network generator (default 0)")
    ap.add_argument("--batch", type=int, default=3, help="largest batch of samples per network (default 3)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a Lava run is killed")
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                    help="where the integer simulator runs (default auto: CUDA when available)")
    ap.add_argument("--synaptic-delays", type=float, default=0.3,
                    help="probability that a feedforward connection has per-synapse delays (default 0.3; 0: none)")
    ap.add_argument("--csgru", type=float, default=0.2,
                    help="probability that a hidden layer is a CS-GRU layer (default 0.2; 0: none)")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per network")
    args = ap.parse_args(argv)
    if args.networks < 1:
        ap.error("--networks must be >= 1")
    if not 0.0 <= args.synaptic_delays <= 1.0:
        ap.error("--synaptic-delays must be a probability in [0, 1]")
    if not 0.0 <= args.csgru <= 1.0:
        ap.error("--csgru must be a probability in [0, 1]")
    try:
        device = str(resolve_device(args.device))
    except ValueError as exc:
        ap.error(str(exc))

    exact = spikes = readout = total_spikes = total_slots = saturated = 0
    sim_s = lava_s = 0.0
    bar = tqdm(range(args.networks), desc="sim vs Lava", unit="net", file=sys.stderr)
    for i in bar:
        desc, mm, st = check_network(args.seed, i, args.batch, args.timeout, device, args.synaptic_delays,
                                     args.csgru)
        exact += mm.exact
        spikes += mm.spikes
        readout += mm.readout_values
        total_spikes += st["spikes"]
        total_slots += st["spike_slots"]
        saturated += st["readout_saturated"]
        sim_s += st["sim_s"]
        lava_s += st["lava_s"]
        bar.set_postfix(exact=f"{exact}/{i + 1}")
        if args.verbose or not mm.exact:
            status = "ok" if mm.exact else f"MISMATCH ({mm.spikes} spikes, {mm.readout_values} readout; first: {mm.first})"
            tqdm.write(f"net {i:3d} [{desc}, batch {st['batch']}, {st['spikes']} spikes]: {status}")
    print(f"hidden spikes compared: {total_slots} (of which {total_spikes} spikes, "
          f"{100.0 * total_spikes / max(1, total_slots):.1f} %); saturated/spiking readout values: {saturated}")
    path = "compiled loop" if runs_compiled_loop(device) else "torch operations"
    if args.csgru > 0 and path == "compiled loop":
        path += "; torch operations for networks with CS-GRU layers"
    print(f"time: integer simulator ({device}, {path}) {sim_s:.2f} s, Lava {lava_s:.2f} s (incl. start-up)")
    print(f"bit-exact: {exact}/{args.networks} networks, {spikes} mismatching spikes, {readout} mismatching readout values")
    return 0 if (exact == args.networks and spikes == 0 and readout == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
