"""onnx_normopt: rewrite Pre-LN transformer ONNX models into exactly equivalent Pre-RMSNorm
(or Pre-CRMSNorm) models, and prove it by running both in tract and onnxruntime.

The same Rust pass as the ``onnx-normopt`` command line, called in process::

    import onnx, onnx_normopt
    m, report = onnx_normopt.rewrite_model(onnx.load("model.onnx"))
    onnx.save(m, "out.onnx")

Functions:

- ``rewrite(src, dst, ...)``: file to file, like ``onnx-normopt SRC -o DST`` (external data
  kept, staged write, the input never touched, nothing written unless verified).
- ``rewrite_dir(src_dir, dst_dir, ...)``: every ``.onnx`` file of an export folder, like
  ``onnx-normopt DIR -o OUT_DIR`` (other files copied, refused models copied unchanged, the
  whole folder written only when every rewrite verified).
- ``rewrite_model(model, ...)``: an ``onnx.ModelProto`` or serialized bytes in, the same kind
  out, with the report.
- ``inspect(model)``: what the rewrite would do, and why any LayerNorm would be left alone.
- ``verify(a, b, ...)``: compare two models on the same random inputs in tract and onnxruntime.

Errors are exceptions whose classes mirror the CLI's exit statuses: ``UsageError`` and
``InvalidModelError`` (2), ``VerificationError`` (1), ``NothingToRewrite`` (3). The GIL is
released while a model is rewritten or verified. onnxruntime is loaded from ``ORT_DYLIB_PATH``
when set, else from the installed ``onnxruntime`` Python package; without either, models are
verified in tract alone (the table's notes say so).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, TypeVar, Union

from . import _onnx_normopt as _native
from ._errors import (
    InternalError,
    InvalidModelError,
    NormoptError,
    NothingToRewrite,
    UsageError,
    VerificationError,
    WriteError,
)
from ._report import (
    FolderFile,
    FolderReport,
    InputSummary,
    Leaf,
    Norm,
    NotRun,
    Refusal,
    Report,
    Row,
    Stream,
    VerifyTable,
)

__version__: str = _native.__version__

__all__ = [
    "rewrite",
    "rewrite_dir",
    "rewrite_model",
    "inspect",
    "verify",
    "Report",
    "FolderReport",
    "FolderFile",
    "VerifyTable",
    "Stream",
    "Leaf",
    "Norm",
    "Refusal",
    "Row",
    "InputSummary",
    "NotRun",
    "NormoptError",
    "UsageError",
    "InvalidModelError",
    "WriteError",
    "VerificationError",
    "NothingToRewrite",
    "InternalError",
    "ort_library",
]

PathLike = Union[str, "os.PathLike[str]"]
M = TypeVar("M")

_KINDS = {
    "usage": UsageError,
    "invalid": InvalidModelError,
    "write": WriteError,
    "internal": InternalError,
}


def _error(e: Mapping[str, Any]) -> NormoptError:
    """The public exception for a native error ``{kind, message, reasons, report, table}``."""
    kind, message = str(e.get("kind")), str(e.get("message", ""))
    report = Report._from(e["report"]) if e.get("report") else None
    folder = FolderReport._from(e["folder_report"]) if e.get("folder_report") else None
    if kind == "nothing":
        return NothingToRewrite(message, list(e.get("reasons") or []), report, folder)
    if kind == "verification":
        table = VerifyTable._from(e["table"]) if e.get("table") else None
        return VerificationError(message, table, report, folder)
    return _KINDS.get(kind, InternalError)(message)


def _result(text: str) -> Mapping[str, Any]:
    """The ``ok`` part of a native answer, or raise its error."""
    answer: Dict[str, Any] = json.loads(text)
    if "error" in answer:
        raise _error(answer["error"])
    ok: Mapping[str, Any] = answer["ok"]
    return ok


def _args(**kwargs: Any) -> str:
    return json.dumps(kwargs)


def ort_library() -> Optional[str]:
    """The onnxruntime shared library verification uses by default: ``None`` when
    ``ORT_DYLIB_PATH`` is set (the library then follows it), else the
    ``onnxruntime/capi/libonnxruntime*`` of the installed ``onnxruntime`` package, found
    without importing it (``None`` when it is not installed)."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return None
    return _package_ort_library()


@functools.lru_cache(maxsize=1)
def _package_ort_library() -> Optional[str]:
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for loc in spec.submodule_search_locations or []:
        capi = Path(loc) / "capi"
        # The versioned file first (libonnxruntime.so.1.22.0), then any other spelling.
        found = sorted(capi.glob("libonnxruntime.so*"), key=lambda p: -len(p.name))
        found += sorted(capi.glob("libonnxruntime*.dylib")) + sorted(capi.glob("onnxruntime.dll"))
        for p in found:
            if p.is_file():
                return str(p)
    return None


def _runtimes(runtimes: Union[str, Iterable[str]]) -> str:
    names = {runtimes} if isinstance(runtimes, str) else set(runtimes)
    names = {"onnxruntime" if n == "ort" else n for n in names}
    if names == {"tract", "onnxruntime"}:
        return "both"
    if names == {"tract"}:
        return "tract"
    if names == {"onnxruntime"}:
        return "onnxruntime"
    raise UsageError(
        f"runtimes must be a non-empty subset of ('tract', 'onnxruntime'), got {runtimes!r}"
    )


def _dims(dims: Optional[Mapping[str, int]]) -> Optional[Dict[str, int]]:
    if dims is None:
        return None
    out = {}
    for k, v in dict(dims).items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UsageError(f"dims maps dimension names to sizes >= 0, got {k!r}: {v!r}")
        out[k] = v
    return out


def _rtol(rtol: Optional[float]) -> Optional[float]:
    if rtol is None:
        return None
    try:
        return float(rtol)
    except (TypeError, ValueError):
        raise UsageError(f"rtol must be a number, got {rtol!r}") from None


def _path(p: Any, what: str) -> str:
    try:
        return os.fsdecode(os.fspath(p))
    except TypeError:
        raise UsageError(f"{what} must be a path (str or os.PathLike), got {type(p).__name__}") from None


def _choice(value: Any, name: str, allowed: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


_TARGETS = ("rmsnorm", "crmsnorm")
_EMITS = ("standard", "onnxruntime", "custom")


def _check_args(
    runtimes: Union[str, Iterable[str]],
    dims: Optional[Mapping[str, int]],
    rtol: Optional[float],
    samples: int,
    seed: int,
    ort_lib: Optional[PathLike],
) -> Dict[str, Any]:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UsageError(f"samples must be an int >= 1, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be an int >= 0, got {seed!r}")
    return dict(
        runtimes=_runtimes(runtimes),
        dims=_dims(dims),
        rtol=_rtol(rtol),
        samples=samples,
        seed=seed,
        ort_lib=None if ort_lib is None else _path(ort_lib, "ort_lib"),
        default_ort_lib=ort_library(),
    )


def _model_bytes(model: Any, what: str) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        raise UsageError(
            f"{what} takes a model (onnx.ModelProto or bytes), not a path: for files use "
            "onnx_normopt.rewrite(src, dst) / inspect(path)"
        )
    ser = getattr(model, "SerializeToString", None)
    if ser is None:
        raise UsageError(
            f"{what} takes an onnx.ModelProto (anything with SerializeToString) or bytes, "
            f"got {type(model).__name__}"
        )
    try:
        return bytes(ser())
    except ValueError as e:  # protobuf refuses messages over 2 GiB
        raise UsageError(
            f"the model cannot be serialized in memory ({e}): save it with external data "
            "and use onnx_normopt.rewrite(src, dst)"
        ) from None


def rewrite(
    src: PathLike,
    dst: PathLike,
    *,
    target: str = "rmsnorm",
    emit: str = "standard",
    fold: bool = True,
    verify: Optional[bool] = True,
    dims: Optional[Mapping[str, int]] = None,
    report: Optional[PathLike] = None,
    rtol: Optional[float] = None,
    runtimes: Union[str, Iterable[str]] = ("tract", "onnxruntime"),
    samples: int = 3,
    seed: int = 0,
    ort_lib: Optional[PathLike] = None,
    progress: bool = False,
    fsync: bool = True,
) -> Report:
    """Rewrite the Pre-LN model ``src`` into an exactly equivalent Pre-RMSNorm model ``dst``.

    The same as ``onnx-normopt SRC -o DST``: every residual stream is kept zero-mean by
    centring the weights that write into it, so each LayerNorm on it equals an RMSNorm with
    the same γ, β, ε; γ and β fold into the linear layers that read the norm.

    - The input is opened read-only and never modified. External data is resolved inside the
      model's folder only, and kept external in the output (``DST.data`` beside ``DST``).
    - The output is staged in a private folder beside ``dst`` and renamed into place only when
      complete and verified: a failure never leaves a partial or unverified output.
    - Verification runs both models on the same random inputs in tract and onnxruntime and
      checks every output within max|Δ|/max|ref| ≤ 1e-4 (f32).

    Args:
        src: The input model (a path; its external data files beside it).
        dst: Where to write the rewritten model (must differ from ``src``; its folder must
            exist).
        target: ``"rmsnorm"`` (Pre-RMSNorm, same width) or ``"crmsnorm"`` (Pre-CRMSNorm,
            streams compressed to width D-1).
        emit: How RMSNorm is written: ``"standard"`` (ONNX RMSNormalization at opset >= 23,
            else standard ops; passes onnx.checker), ``"onnxruntime"`` (its contrib ops
            SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization, fastest in
            onnxruntime), or with ``target="crmsnorm"``, ``"custom"`` (one op
            ai.onnx_normopt:CRMSNormalization, which only tract runs).
        fold: Fold γ and β into the linear readers (default) instead of keeping them on the
            RMSNorm.
        verify: Verify before writing (default, at any size: a model whose two whole copies
            do not fit the default memory budget is verified piece by piece). ``False``
            skips it; ``None`` follows the CLI's rule (the same).
        dims: Sizes of dynamic input dimensions for verification, by name
            (``{"batch": 1, "seq": 16}``; an unnamed axis is ``"INPUT[AXIS]"``). Defaults:
            batch-like axes 2, others 8.
        report: Also write the report as JSON to this path (the CLI's ``--report``).
        rtol: Tolerance on max|Δ|/max|ref| for float outputs (defaults: f32 1e-4, f64 1e-8,
            f16 1e-2, bf16 5e-2).
        runtimes: The runtimes to verify in: ``("tract", "onnxruntime")``, ``"tract"`` or
            ``"onnxruntime"``.
        samples: Number of random input samples.
        seed: Seed of the random inputs.
        ort_lib: The onnxruntime shared library (default: ``ORT_DYLIB_PATH``, else the
            installed ``onnxruntime`` package's; see ``ort_library()``).
        progress: Show a progress bar on stderr while the output is written (drawn only when
            stderr is a terminal). Off by default: the call prints nothing.
        fsync: Wait for the output to reach the disk before renaming it into place.

    Returns:
        The ``Report``: streams, rewritten and refused norms, bytes added, op counts, and the
        verification table (``report.verification``).

    Raises:
        UsageError: a wrong argument (output equal to input, missing output folder, ...).
        InvalidModelError: ``src`` is unreadable or not a valid ONNX model.
        NothingToRewrite: no LayerNorm can be rewritten exactly (``.reasons``); nothing written.
        VerificationError: the rewritten model differs (``.table``); nothing written.
        WriteError: the output could not be written; nothing left behind.
    """
    args = _check_args(runtimes, dims, rtol, samples, seed, ort_lib)
    ok = _result(
        _native.rewrite(
            _args(
                src=_path(src, "src"),
                dst=_path(dst, "dst"),
                target=_choice(target, "target", _TARGETS),
                emit=_choice(emit, "emit", _EMITS),
                fold=bool(fold),
                verify=None if verify is None else bool(verify),
                report=None if report is None else _path(report, "report"),
                progress=bool(progress),
                fsync=bool(fsync),
                **args,
            )
        )
    )
    return Report._from(ok["report"], ok["summary"])


def rewrite_dir(
    src_dir: PathLike,
    dst_dir: PathLike,
    *,
    target: str = "rmsnorm",
    emit: str = "standard",
    fold: bool = True,
    verify: Optional[bool] = True,
    dims: Optional[Mapping[str, int]] = None,
    report: Optional[PathLike] = None,
    rtol: Optional[float] = None,
    runtimes: Union[str, Iterable[str]] = ("tract", "onnxruntime"),
    samples: int = 3,
    seed: int = 0,
    ort_lib: Optional[PathLike] = None,
    progress: bool = False,
    fsync: bool = True,
) -> FolderReport:
    """Rewrite every ``.onnx`` file of the folder ``src_dir`` into ``dst_dir``, like
    ``onnx-normopt DIR -o OUT_DIR`` (the same implementation).

    For export folders (Optimum's ``model.onnx`` or encoder/decoder files beside
    ``config.json``, transformers.js's ``onnx/``): the folder is walked recursively, each model
    is rewritten and verified as ``rewrite`` does, with the same options.

    - Every other file is copied unchanged; external data files stay valid (a rewritten model
      writes its own data file, a refused model keeps the original's).
    - A model that cannot be rewritten is copied unchanged and listed with its reason; so is a
      ``.onnx`` file that is not a valid model (``report.invalid``), and the others are still
      rewritten.
    - Nothing appears under ``dst_dir`` unless the whole run succeeds: the folder is staged
      beside it and renamed into place at the end. ``src_dir`` is never modified.

    Args:
        src_dir: The input folder.
        dst_dir: The output folder: must not exist or must be empty, and must not be inside
            ``src_dir``; its parent must exist.
        report: Also write the folder report as JSON to this path (the CLI's ``--report``).
        verify: Verify every rewritten model (default, at any size). ``False`` skips it;
            ``None`` follows the CLI's rule (the same).
        progress: Print the CLI's progress lines and table on stderr (off by default).
        target, emit, fold, dims, rtol, runtimes, samples, seed, ort_lib, fsync: as for
            ``rewrite``.

    Returns:
        The ``FolderReport``: one entry per model (status, reason, norms, verification, the
        model's ``Report``), the files copied, the data files replaced. ``str(report)`` is the
        CLI's table.

    Raises:
        UsageError: ``dst_dir`` is not empty, is inside ``src_dir``, ``src_dir`` is not a
            folder or holds no ``.onnx`` file, ...
        InvalidModelError: no model could be rewritten and some ``.onnx`` file is not a valid
            model (or a file cannot be read).
        NothingToRewrite: every model was refused (``.reasons``: one ``"FILE: WHY"`` line
            each; ``.folder_report``); nothing written.
        VerificationError: a rewritten model differs from its original (``.folder_report``,
            ``.table``); nothing written.
        WriteError: the output could not be written; nothing left behind.
    """
    args = _check_args(runtimes, dims, rtol, samples, seed, ort_lib)
    ok = _result(
        _native.rewrite_dir(
            _args(
                src=_path(src_dir, "src_dir"),
                dst=_path(dst_dir, "dst_dir"),
                target=_choice(target, "target", _TARGETS),
                emit=_choice(emit, "emit", _EMITS),
                fold=bool(fold),
                verify=None if verify is None else bool(verify),
                report=None if report is None else _path(report, "report"),
                progress=bool(progress),
                fsync=bool(fsync),
                **args,
            )
        )
    )
    return FolderReport._from(ok["folder_report"], ok["summary"])


def rewrite_model(
    model: M,
    *,
    target: str = "rmsnorm",
    emit: str = "standard",
    fold: bool = True,
    verify: bool = True,
    dims: Optional[Mapping[str, int]] = None,
    rtol: Optional[float] = None,
    runtimes: Union[str, Iterable[str]] = ("tract", "onnxruntime"),
    samples: int = 3,
    seed: int = 0,
    ort_lib: Optional[PathLike] = None,
    progress: bool = False,
) -> Tuple[M, Report]:
    """Rewrite an in-memory Pre-LN model into an exactly equivalent Pre-RMSNorm model.

    ``model`` is an ``onnx.ModelProto`` (anything with ``SerializeToString()``; this package
    does not need ``onnx``) or its serialized bytes; the result is of the same kind
    (``type(model).FromString(...)`` for a message, ``bytes`` for bytes-like input)::

        import onnx, onnx_normopt
        m, report = onnx_normopt.rewrite_model(onnx.load("model.onnx"))
        onnx.save(m, "out.onnx")

    Verification (on by default) runs the original and the rewrite in tract and onnxruntime,
    through a private temporary folder that is removed afterwards. The arguments are those of
    ``rewrite``. A model whose tensors live in external data files cannot be rewritten in
    memory: use ``rewrite(src, dst)`` on its path (``onnx.load`` loads external data into
    memory by default, which is fine below 2 GiB).

    Returns:
        ``(rewritten model, Report)``; ``report.model`` is ``"<in-memory model>"``.

    Raises:
        UsageError, InvalidModelError, NothingToRewrite, VerificationError (see ``rewrite``).
    """
    data = _model_bytes(model, "rewrite_model")
    args = _check_args(runtimes, dims, rtol, samples, seed, ort_lib)
    out, text = _native.rewrite_bytes(
        data,
        _args(
            target=_choice(target, "target", _TARGETS),
            emit=_choice(emit, "emit", _EMITS),
            fold=bool(fold),
            verify=bool(verify),
            progress=bool(progress),
            **args,
        ),
    )
    ok = _result(text)
    report = Report._from(ok["report"], ok["summary"])
    if isinstance(model, (bytes, bytearray, memoryview)):
        return out, report  # type: ignore[return-value]
    return type(model).FromString(out), report  # type: ignore[attr-defined]


def inspect(model: Union[PathLike, bytes, Any], *, target: str = "rmsnorm") -> Report:
    """Analyse a model without changing it: its residual streams, their LayerNorms and forms,
    what the rewrite would do, and why any LayerNorm would be left alone
    (``onnx-normopt inspect MODEL --json``).

    ``model`` is a path, an ``onnx.ModelProto`` or serialized bytes. ``str(report)`` is the
    CLI's text. A model that cannot be rewritten is reported (``report.refusals``), not raised.

    Raises:
        UsageError, InvalidModelError.
    """
    target = _choice(target, "target", _TARGETS)
    if isinstance(model, (str, os.PathLike)):
        text = _native.inspect(_args(src=_path(model, "model"), target=target), None)
    else:
        text = _native.inspect(_args(target=target), _model_bytes(model, "inspect"))
    ok = _result(text)
    return Report._from(ok["report"], ok["summary"])


def verify(
    a: PathLike,
    b: PathLike,
    *,
    runtimes: Union[str, Iterable[str]] = ("tract", "onnxruntime"),
    dims: Optional[Mapping[str, int]] = None,
    rtol: Optional[float] = None,
    samples: int = 3,
    seed: int = 0,
    ort_lib: Optional[PathLike] = None,
) -> VerifyTable:
    """Compare model ``b`` with the reference model ``a`` on the same random inputs, in tract
    and onnxruntime (``onnx-normopt verify A B``).

    Inputs are generated from ``a``'s input types: floats ~ N(0, 1), masks all ones, ids below
    the size of the embedding table they index. Every output of ``b`` is compared with
    ``a``'s: max|Δ| and max|Δ|/max|ref| against the tolerance of its type (f32 1e-4, or
    ``rtol``). A table that does not pass is returned (check ``table.passed``), not raised.

    Returns:
        The ``VerifyTable``: one row per runtime and output; ``str(table)`` is the CLI's table.

    Raises:
        InvalidModelError: a file is unreadable or not a model.
        VerificationError: the models could not be compared (different inputs or outputs,
            a runtime failed on a model, onnxruntime required but missing).
    """
    args = _check_args(runtimes, dims, rtol, samples, seed, ort_lib)
    ok = _result(_native.verify(_args(a=_path(a, "a"), b=_path(b, "b"), **args)))
    return VerifyTable._from(ok["table"], ok["summary"])
