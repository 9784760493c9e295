"""crsnn: convolutional-recurrent spiking networks with learnable axonal delays, from PyTorch
training to Lava and Loihi 2, with a bit-exact integer reference simulator.

Subpackages (each a top-level folder of the repository):

- ``crsnn.loihi2``  the one module of Loihi 2 fixed-point rules (shared by everything below)
- ``crsnn.models``  network definitions (the integer network description, PyTorch layers)
- ``crsnn.train``   training with quantization-aware training
- ``crsnn.export``  NIR export / import
- ``crsnn.deploy``  NIR / integer network -> lava-nc processes (CPU simulator, Loihi 2)
- ``crsnn.sim``     fast batched integer simulator and the Lava comparison
"""

__version__ = "0.1.0"
