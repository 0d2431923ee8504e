"""The exceptions, one class per exit status of the ``onnx-normopt`` command line.

=====================  ===========  ==========================================================
class                  exit status  raised when
=====================  ===========  ==========================================================
``UsageError``         2            an argument is wrong (bad target, output = input, ...)
``InvalidModelError``  2            the file or bytes are not a valid ONNX model, or break a
                                    rule of the format (the message names the file and node)
``WriteError``         2            the output could not be written (nothing is left behind)
``VerificationError``  1            the rewritten model differs from the original, or could
                                    not be verified; nothing was written
``NothingToRewrite``   3            no LayerNorm could be rewritten exactly; ``.reasons``
                                    says why, nothing was written
``InternalError``      1            a bug in onnx-normopt (never the user's file)
=====================  ===========  ==========================================================

All derive from ``NormoptError``, which carries ``exit_code``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ._report import FolderReport, Report, VerifyTable

__all__ = [
    "NormoptError",
    "UsageError",
    "InvalidModelError",
    "WriteError",
    "VerificationError",
    "NothingToRewrite",
    "InternalError",
]


class NormoptError(Exception):
    """Base class of the errors of onnx_normopt; ``exit_code`` is the CLI's exit status."""

    exit_code: int = 1


class UsageError(NormoptError, ValueError):
    """An argument is wrong: unknown target or emit, the output is the input, the output
    folder does not exist, an in-memory model with external data (exit status 2)."""

    exit_code = 2


class InvalidModelError(NormoptError, ValueError):
    """The input is not a valid ONNX model (unreadable, not protobuf, no graph, a tensor whose
    data does not match its dims, an external-data path outside the model's folder...).
    The message names the file and the node or tensor (exit status 2)."""

    exit_code = 2


class WriteError(NormoptError, OSError):
    """The output could not be written; no partial output was left (exit status 2)."""

    exit_code = 2


class VerificationError(NormoptError):
    """The rewritten model's outputs differ from the original's beyond the tolerance, or the
    verification could not be carried out. Nothing was written (exit status 1).

    ``table`` is the verification table when the models ran (None when they could not),
    ``report`` the rewrite's report. For ``rewrite_dir``, ``report`` is ``None``,
    ``folder_report`` says what happened to each file and ``table`` is the first failed file's
    table."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        table: Optional["VerifyTable"] = None,
        report: Optional["Report"] = None,
        folder_report: Optional["FolderReport"] = None,
    ) -> None:
        super().__init__(message)
        self.table = table
        self.report = report
        self.folder_report = folder_report


class NothingToRewrite(NormoptError):
    """No LayerNorm of the model could be rewritten exactly (e.g. a Post-LN model such as
    BERT). Nothing was written (exit status 3).

    ``reasons`` lists why, one line per norm left alone (``"NODE (FORM): WHY"``); ``report``
    is the full report (streams, refusals) when the analysis ran. For ``rewrite_dir``,
    ``reasons`` has one line per refused file (``"FILE: WHY"``) and ``folder_report`` says what
    happened to each file."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        reasons: Optional[List[str]] = None,
        report: Optional["Report"] = None,
        folder_report: Optional["FolderReport"] = None,
    ) -> None:
        super().__init__(message)
        self.reasons: List[str] = list(reasons or [])
        self.report = report
        self.folder_report = folder_report


class InternalError(NormoptError):
    """A broken invariant inside onnx-normopt (a bug: please report it with the model)."""

    exit_code = 1
