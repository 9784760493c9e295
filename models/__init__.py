"""crsnn.models: network definitions.

- :mod:`crsnn.models.integer`    the integer network description (what the simulator, NIR export
  and Lava run)
- :mod:`crsnn.models.network`    the trainable CRSNN / DelRec (:class:`SpikingNet`, :class:`ModelConfig`,
  ``to_integer()``, parameter counts)
- :mod:`crsnn.models.layers`     hidden LIF layer (feedforward / conv / dense recurrence with axonal
  delays) and leaky readout, float and QAT forward passes
- :mod:`crsnn.models.recurrent`  the fused LIF time loop (hand-written BPTT) and the delay taps
- :mod:`crsnn.models.quant`      straight-through quantizers onto the Loihi 2 grids
- :mod:`crsnn.models.surrogate`  surrogate spike derivatives
"""
