"""The one Python 3.11 fix for lava-nc 0.10.0 (crsnn.lava_compat)."""

import sys

from crsnn import lava_compat


def test_patch_source_replaces_only_mutable_bytencoder_defaults():
    src = ("@dataclass\nclass CoreEncoder:\n    x: ByteEncoder = ByteEncoder()\n    y: int = 0\n"
           "payload: ty.List[ByteEncoder]\n")
    out = lava_compat.patch_source(src)
    assert "x: ByteEncoder = __import__('dataclasses').field(default_factory=ByteEncoder)" in out
    assert "y: int = 0" in out and "payload: ty.List[ByteEncoder]" in out
    assert lava_compat.patch_source("a = 1\n") == "a = 1\n"


def test_lava_compiles_on_this_python_with_independent_encoders():
    lava_compat.import_lava()
    from lava.magma.compiler.var_model import AxonEncoder, CoreEncoder
    import lava.magma.compiler.compiler  # noqa: F401  (imports var_model)

    a, b = CoreEncoder(), CoreEncoder()
    assert a.x is not b.x and a.x == b.x
    assert AxonEncoder().hi.base == 0
    if sys.version_info >= (3, 11):
        assert any(isinstance(f, lava_compat._VarModelFinder) for f in sys.meta_path)
