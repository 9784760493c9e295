#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
#
# Idempotent and fast when nothing changed: a stamp file records a hash of every input
# (this script, requirements.txt, pyproject.toml); if it matches, nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP="$VENV/.crsnn-setup-stamp"
LAVA_SPEC="lava-nc==0.10.0"
LAVA_DL_SPEC="lava-dl==0.6.0"
# Test clients of crsnn-import / crsnn-export --portable: other libraries' own NIR exporters and
# importers. Installed with --no-deps: norse declares torchvision (a CUDA build of torch would
# follow); what they import (torch, numpy, nir, matplotlib) is pinned in requirements.txt and
# nirtorch, their NIR graph tracer, is pinned here.
INTEROP_SPECS=(snntorch==1.0.0 nirtorch==2.6 norse==1.1.0 rockpool==3.1.0)
# NeuroBench, against whose metric definitions crsnn-report's are tested: --no-deps, as it declares
# torchaudio (a torch of its own would follow), tonic and numba, none of which the modules used here
# (benchmarks, models, metrics) import; snnTorch, tqdm and numpy are above.
NEUROBENCH_SPEC="neurobench==2.3.0"
# The documentation site (`make docs`): mkdocs and its material theme, with the Markdown packages
# the pages use. None of them depends on torch; torch is named with them so that pip cannot change it.
DOCS_SPECS=(mkdocs==1.6.1 mkdocs-material==9.8.2 mkdocs-material-extensions==1.3.1
            pymdown-extensions==13.1.2 markdown==3.11.4)

want=$(cat scripts/setup.sh requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    exit 0
fi

echo "[setup] creating $VENV with $("$PYTHON" --version)"
"$PYTHON" -m venv "$VENV"
pip_install() {  # quiet pip; drops pip's notes about local index folders this machine lacks
    "$VENV/bin/python" -m pip --disable-pip-version-check -q install "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
pip_install --upgrade "pip>=23" "setuptools>=64" wheel
# torch first and alone, so that nothing later can pick another build of it.
pip_install "$(grep -E '^torch==' requirements.txt)"
pip_install -r requirements.txt
# lava-nc declares Requires-Python <3.11 but runs on 3.11 (see crsnn/lava_compat.py for the
# one incompatibility, handled at import time); its dependencies are pinned above.
pip_install --no-deps --ignore-requires-python "$LAVA_SPEC"
# lava-dl (netx, for `crsnn-export --format netx` and `crsnn-verify` of its files) pins Python 3.10
# and torch < 2.4; netx needs none of its dependencies (see crsnn/lava_dl_compat.py).
pip_install --no-deps --ignore-requires-python "$LAVA_DL_SPEC"
pip_install --no-deps "${INTEROP_SPECS[@]}"
pip_install --no-deps "$NEUROBENCH_SPEC"
pip_install "${DOCS_SPECS[@]}" "$(grep -E '^torch==' requirements.txt)"
# Editable install of crsnn (setuptools' generic note about editable installs is silenced:
# the package_dir mapping in pyproject.toml is what it warns about, and it is intended).
PYTHONWARNINGS="ignore::UserWarning" pip_install --no-deps --no-build-isolation -e .
"$VENV/bin/python" - <<'PY'
import torch, numpy, lava, nir
import snntorch.export_nir, snntorch.import_nir, norse.torch, rockpool.nn.modules.torch.nir  # crsnn-import's test clients
import mkdocs, material  # make docs
import neurobench.benchmarks, neurobench.metrics.static, neurobench.metrics.workload  # tests of crsnn-report
assert torch.__version__.startswith("2.13.0"), f"torch was changed to {torch.__version__}"
print(f"[setup] ok: torch {torch.__version__}, numpy {numpy.__version__}, nir {nir.__version__ if hasattr(nir, '__version__') else '?'}")
PY
# The integer simulator's compiled CPU loop (built on first use anyway; without a C compiler the
# simulator runs its torch operations: same results, slower).
"$VENV/bin/python" -m crsnn.sim.native | sed 's/^/[setup] /' || echo "[setup] note: the simulator's compiled loop did not build (see above); it will run slower"
echo "$want" > "$STAMP"
