"""crsnn.export: NIR graphs that mean exactly the trained integer network.

The convention (format ``crsnn-nir/1``)
--------------------------------------
NIR describes continuous-time primitives and has no time step, no integers and no edge latency.
A crsnn graph fixes all three:

- **Time unit = one time step.** Every time constant (``tau``, ``tau_syn``, ``tau_mem``) and every
  ``Delay`` value is in time steps; the graph metadata ``dt`` gives the step in seconds.
  Discretisation is forward Euler with that step: ``v[t] = v + (v_leak - v + r*I) / tau``.
- **Latency.** Every edge that ends in a neuron node (feedforward ``Affine``, recurrent ``Conv1d`` /
  ``Linear``) delivers one step later: a spike emitted at step t is integrated at step t + 1. A
  ``Delay`` node adds its value: a recurrent spike of neuron j reaches the layer at t + 1 + d_j.
  ``Delay`` values are integers (int64 arrays), 0..62 (Loihi 2's axonal delay range).
- **Per-synapse feedforward delays** (``dcls`` networks: input j reaches neuron i at
  t + 1 + d_ij) are one branch per distinct delay value d from the source to the neuron,
  ``[Delay(d)] -> Affine/Linear(W_d)``, summed at the neuron; weight nodes carry
  ``synaptic_delay`` = d in their metadata (see :mod:`crsnn.export.nir_synaptic_delays`).
- **Shapes.** Every signal is one channel of N neurons, shape ``(1, N)`` (``Conv1d`` is
  channels-first, and NIR has no node that reshapes ``(N,)`` into ``(1, N)``): ``Input``/``Output``
  types are ``[1, N]``, ``Affine``/``Linear`` weights ``(1, N_out, N_in)``, neuron parameters
  ``(1, N)``, ``Delay`` values ``(1, N)``, ``Conv1d`` weight ``(1, 1, k)`` with ``padding='same'``
  (PyTorch semantics: for even k the extra tap is on the right).
- **Float parameters mean the integer network.** Voltages are in *activation units* (Loihi's
  ``v`` divided by 64, the ``<< 6`` alignment), so that:

  - weights: ``W = effective_integer_weight * 2**weight_exp`` (exact in float);
  - bias (on the ``Affine``): ``b = (bias_mant << bias_exp) / 64``;
  - neuron (``du = 4095``, no current memory): ``LIF(tau = 4096/dv, r = tau, v_leak = 0,
    v_threshold = vth, v_reset = 0)``, i.e. ``v[t] = (1 - dv/4096) v + I``; ``dv = 0`` is an
    ``IF(r = 1, v_threshold = vth, v_reset = 0)``; with current memory (``du < 4095``) a
    ``CubaLIF`` with ``tau_syn = 4096/(du + 1)`` and ``w_in = tau_syn`` (and ``tau_mem``, ``r`` as
    above);
  - the readout (threshold 131071, never reached unless saturated) is an ``LI`` (or ``I`` when
    ``dv = 0``, ``CubaLI`` with current memory) whose voltage is the network's output.

  A reader that ignores metadata gets the trained network up to the rounding of the decays
  (Loihi truncates toward zero each step) and the 24-bit limits.
- **Metadata makes it exact.** Graph: ``format``, ``dt`` (seconds), ``input_message_bits``
  (0 = binary spikes, else graded payload bits), ``crsnn_version`` and the training metadata.
  Neuron nodes: ``du``, ``dv``, ``vth``, ``bias_mant`` (array), ``bias_exp`` (array). Weight nodes:
  ``weight_exp``, ``num_weight_bits``, ``sign_mode`` (1 mixed, 2 excitatory, 3 inhibitory). The
  integer weights are recovered exactly as ``W / 2**weight_exp``.

Node names: ``input``, ``affine_<l>``, ``lif_<l>`` (or ``if_``/``cubalif_``), ``delay_<l>``,
``conv_<l>`` (CRSNN) or ``linear_<l>`` (DelRec), ``affine_readout``, ``readout``, ``output``;
per-synapse delay branches ``sdelay_<l>_<d>`` and ``slinear_<l>_<d>``.
"""
