"""What the exporters write about reset and refractoriness: nothing. snnTorch's and Norse's
graphs of a reset-by-subtraction network are identical, field for field and in metadata, to their
reset-to-zero graphs, so crsnn-import cannot tell them apart; it refuses a subtract reset or a
refractory period only where node metadata states one."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from crsnn.export.nir_foreign import check_mappable
from crsnn.export.nir_reader import NIRImportError


def _same(a: nir.NIRGraph, b: nir.NIRGraph) -> bool:
    if set(a.nodes) != set(b.nodes) or sorted(a.edges) != sorted(b.edges) or dict(a.metadata or {}) != dict(b.metadata or {}):
        return False
    for k, na in a.nodes.items():
        da, db = na.to_dict(), b.nodes[k].to_dict()
        if set(da) != set(db):
            return False
        for f in da:
            va, vb = da[f], db[f]
            if isinstance(va, dict) or isinstance(vb, dict):
                if str(va) != str(vb):
                    return False
            elif not np.array_equal(np.asarray(va, dtype=object if isinstance(va, str) else None),
                                    np.asarray(vb, dtype=object if isinstance(vb, str) else None)):
                return False
    return True


def test_snntorch_writes_subtract_and_zero_reset_alike():
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    def graph(mech: str) -> nir.NIRGraph:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 4), snn.Leaky(beta=torch.full((4,), 0.9), threshold=torch.ones(4),
                                                                    init_hidden=True, reset_mechanism=mech, output=True))
        return export_to_nir(net, torch.zeros(1, 8), ignore_dims=[0])

    sub, zero = graph("subtract"), graph("zero")
    assert _same(sub, zero)
    assert all(not dict(n.metadata or {}) for n in sub.nodes.values())
    assert np.all(np.asarray(sub.nodes["1"].v_reset) == 0)


def test_norse_writes_subtract_and_value_reset_alike_and_drops_v_reset():
    import norse.torch as nt
    from norse.torch.functional.reset import reset_subtract, reset_value
    from norse.torch.utils.export_nir import to_nir

    def graph(method, v_reset: float) -> nir.NIRGraph:
        torch.manual_seed(0)
        p = nt.LIFBoxParameters(tau_mem_inv=torch.full((4,), 100.0), v_th=torch.ones(4), v_leak=torch.zeros(4),
                                v_reset=torch.full((4,), v_reset), reset_method=method)
        return to_nir(nt.SequentialState(torch.nn.Linear(8, 4), nt.LIFBoxCell(p)), torch.zeros(1, 8))

    base = graph(reset_value, 0.0)
    assert _same(base, graph(reset_subtract, 0.0))
    assert _same(base, graph(reset_value, 0.5))  # a non-zero v_reset is not written either
    lif = next(n for n in base.nodes.values() if isinstance(n, nir.LIF))
    assert np.all(np.asarray(lif.v_reset) == 0) and not dict(lif.metadata or {})


@pytest.mark.parametrize("meta, what", [({"reset_mechanism": "subtract"}, "reset by subtraction"),
                                        ({"reset": "subtract"}, "reset by subtraction"),
                                        ({"refractory_steps": 2}, "refractory period"),
                                        ({"t_refrac": "0.002"}, "refractory period")])
def test_metadata_that_states_subtract_reset_or_refractoriness_is_refused(meta, what):
    node = nir.LIF(tau=np.ones(2) * 10, r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                   v_reset=np.zeros(2), metadata=meta)
    with pytest.raises(NIRImportError, match=what):
        check_mappable("lif", node)
    check_mappable("lif", nir.LIF(tau=np.ones(2) * 10, r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                                  v_reset=np.zeros(2), metadata={"reset_mechanism": "zero", "refractory_steps": 0}))
