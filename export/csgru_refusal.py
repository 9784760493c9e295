"""Why a network with CS-GRU layers has no NIR, portable NIR or netx form, in one line per format
(the exporters refuse it with this reason; the checkpoint itself is its deployment artifact, see
:mod:`crsnn.deploy.artifact`)."""

from __future__ import annotations

from crsnn.models.integer import IntegerNetwork

_WHY = {
    "nir": "NIR has no gated neuron, and a crsnn extension node would make a graph no other tool can run",
    "portable": "no NIR importer of another tool has a gated neuron",
    "netx": "lava-dl's netx format has no gated neuron",
}
_USE = ("the checkpoint is the deployable artifact: pass MODEL.pt to crsnn-run, crsnn-verify and crsnn-report "
        "in place of a NIR file")


def csgru_refusal(net: IntegerNetwork, fmt: str) -> str | None:
    """One line naming the first CS-GRU layer, why ``fmt`` (``nir``, ``portable`` or ``netx``) cannot
    hold it and what to use instead; None when ``net`` has no CS-GRU layer."""
    for li, layer in enumerate(net.hidden):
        if layer.is_csgru:
            return f"hidden layer {li} is a CS-GRU layer: {_WHY[fmt]}; {_USE}"
    return None
