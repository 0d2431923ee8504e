# Stub of the native half of onnx_normopt (python/src/lib.rs). Private: use the functions of
# the onnx_normopt package, which check the arguments and turn errors into its exceptions.
#
# Each function takes its arguments as one JSON object (plus the model's bytes) and answers
# one JSON object: {"ok": {...}} or {"error": {"kind", "message", "reasons", "report", "table",
# "folder_report"}}.
from typing import Optional, Tuple

__version__: str

def rewrite(args_json: str, /) -> str:
    """{src, dst, target, emit, fold, verify, report, progress, fsync, runtimes, dims, rtol,
    samples, seed, ort_lib, default_ort_lib} -> {"ok": {"report", "summary"}}."""

def rewrite_dir(args_json: str, /) -> str:
    """The arguments of rewrite, src and dst being folders -> {"ok": {"folder_report",
    "summary"}}; errors carry "folder_report" (the folder report so far)."""

def rewrite_bytes(data: bytes, args_json: str, /) -> Tuple[Optional[bytes], str]:
    """The model's bytes and the arguments of rewrite (without src, dst, report, fsync) ->
    (the rewritten model's bytes or None on error, {"ok": {"report", "summary"}})."""

def inspect(args_json: str, data: Optional[bytes], /) -> str:
    """{src, target} or the model's bytes -> {"ok": {"report", "summary"}}."""

def verify(args_json: str, /) -> str:
    """{a, b, runtimes, dims, rtol, samples, seed, ort_lib, default_ort_lib} ->
    {"ok": {"table", "summary"}}."""
