"""Shared helpers of the Python package's tests: the testdata models and their manifest, the
CLI binary, and running models in onnxruntime from Python.

The tests run against the installed wheel (scripts/test-python installs it into a fresh venv and
runs pytest from this folder, so `import onnx_normopt` is the wheel, not ../onnx_normopt).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import onnxruntime as ort
import pytest

ROOT = Path(os.environ.get("ONNX_NORMOPT_ROOT", Path(__file__).resolve().parents[2]))
MODELS = ROOT / "testdata" / "models"
MANIFEST = {Path(e["file"]).stem: e for e in json.loads((ROOT / "testdata" / "manifest.json").read_text())}
CLI = Path(os.environ.get("ONNX_NORMOPT_CLI", ROOT / "target" / "release" / "onnx-normopt"))


def model_path(name: str) -> Path:
    return MODELS / f"{name}.onnx"


def feeds(name: str, seed: int = 0) -> Dict[str, np.ndarray]:
    """Inputs for a testdata model from its manifest entry: ids below the vocabulary, or
    floats ~ N(0, 1)."""
    e = MANIFEST[name]["input"]
    rng = np.random.default_rng(seed)
    shape = tuple(e["shape"])
    if e["dtype"] == "int64":
        x = rng.integers(0, e["vocab"], size=shape, dtype=np.int64)
    elif e["dtype"] == "float32":
        x = rng.standard_normal(shape).astype(np.float32)
    elif e["dtype"] == "float16":
        x = rng.standard_normal(shape).astype(np.float16)
    else:  # pragma: no cover - the manifest has no other input types
        raise AssertionError(f"unexpected input dtype {e['dtype']}")
    return {e["name"]: x}


def run_ort(model, inputs: Dict[str, np.ndarray]):
    """Run a model (a path, bytes or an onnx.ModelProto) in onnxruntime from Python, with graph
    optimisations off so that the graph runs as written."""
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model if isinstance(model, bytes) else str(model), so, providers=["CPUExecutionProvider"])
    return s.run(None, inputs)


def max_rel(ref, out) -> float:
    """max |out - ref| / max |ref| over all outputs (in float64)."""
    worst = 0.0
    for r, o in zip(ref, out):
        assert r.shape == o.shape
        r64, o64 = r.astype(np.float64), o.astype(np.float64)
        worst = max(worst, float(np.max(np.abs(o64 - r64)) / np.max(np.abs(r64))))
    return worst


def assert_same_outputs(name: str, original, rewritten, seeds=(0, 1)) -> float:
    """Run both models in onnxruntime on the same inputs; every output within the manifest's
    tolerance (1e-4 for fp32). Returns the worst error."""
    tol = MANIFEST[name]["tol"]
    worst = 0.0
    for seed in seeds:
        x = feeds(name, seed)
        err = max_rel(run_ort(original, x), run_ort(rewritten, x))
        assert err <= tol, f"{name}: max|Δ|/max|ref| = {err:.3e} > {tol}"
        worst = max(worst, err)
    return worst


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the onnx-normopt binary (built by scripts/test-python) with the same onnxruntime
    library as the Python package."""
    if not CLI.is_file():
        pytest.fail(f"{CLI} is missing: run `cargo build --release` (scripts/test-python does)")
    env = dict(os.environ)
    import onnx_normopt

    lib: Optional[str] = onnx_normopt.ort_library()
    if lib and not env.get("ORT_DYLIB_PATH"):
        env["ORT_DYLIB_PATH"] = lib
    p = subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"onnx-normopt {' '.join(args)} exited {p.returncode}:\n{p.stderr}")
    return p
