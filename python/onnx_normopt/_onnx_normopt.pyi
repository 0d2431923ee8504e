# Stub of the native half of onnx_normopt (python/src/lib.rs). Private: use the functions of
# the onnx_normopt package, which validate arguments and turn NativeError into the public
# exception classes.
from typing import Dict, Optional, Tuple

__version__: str

class NativeError(Exception):
    """args: (kind, message, reasons, report_json, table_json)."""

def rewrite(
    src: str,
    dst: str,
    *,
    target: str,
    emit: str,
    fold: bool,
    verify: Optional[bool],
    report: Optional[str],
    progress: bool,
    fsync: bool,
    runtimes: str,
    dims: Optional[Dict[str, int]],
    rtol: Optional[float],
    samples: int,
    seed: int,
    ort_lib: Optional[str],
    default_ort_lib: Optional[str],
) -> Tuple[str, str]: ...
def rewrite_bytes(
    data: bytes,
    *,
    target: str,
    emit: str,
    fold: bool,
    verify: Optional[bool],
    progress: bool,
    runtimes: str,
    dims: Optional[Dict[str, int]],
    rtol: Optional[float],
    samples: int,
    seed: int,
    ort_lib: Optional[str],
    default_ort_lib: Optional[str],
) -> Tuple[bytes, str, str]: ...
def inspect(src: Optional[str], *, target: str, data: Optional[bytes] = None) -> Tuple[str, str]: ...
def verify(
    a: str,
    b: str,
    *,
    runtimes: str,
    dims: Optional[Dict[str, int]],
    rtol: Optional[float],
    samples: int,
    seed: int,
    ort_lib: Optional[str],
    default_ort_lib: Optional[str],
) -> Tuple[str, str]: ...
