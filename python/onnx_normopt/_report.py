"""The reports: plain read-only views over the JSON the Rust library writes.

``Report`` is what ``onnx-normopt MODEL -o OUT --report R.json`` writes, ``VerifyTable`` what
``onnx-normopt verify A B --json`` prints. ``.to_dict()`` returns exactly that JSON (as Python
objects); the attributes are typed views of it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = [
    "Report",
    "Stream",
    "Leaf",
    "Norm",
    "Refusal",
    "VerifyTable",
    "Row",
    "InputSummary",
    "NotRun",
    "FolderReport",
    "FolderFile",
]


@dataclass(frozen=True)
class Leaf:
    """A source or writer of a residual stream, and how it was centred."""

    value: str
    """The stream value it produces."""
    kind: str
    """embedding, linear, patch embedding, constant, embedding LayerNorm, explicit centering."""
    node: str
    """The node."""
    how: str
    """What was done ("not applied" when the stream was refused)."""

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "Leaf":
        return cls(d.get("value", ""), d.get("kind", ""), d.get("node", ""), d.get("how", ""))


@dataclass(frozen=True)
class Norm:
    """A LayerNorm that was rewritten."""

    name: str
    """The node's name."""
    form_in: str
    """Its form in the input (e.g. ``LayerNormalization``)."""
    form_out: str
    """Its form in the output (e.g. ``RMSNormalization``, ``decomposed RMSNorm``)."""
    epsilon: float
    """ε, copied."""
    folded_into: List[str]
    """The nodes γ and β were folded into."""
    kept_affine: Optional[str]
    """Why γ/β stayed on the norm, when they did."""

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "Norm":
        return cls(
            d.get("name", ""),
            d.get("form_in", ""),
            d.get("form_out", ""),
            float(d.get("epsilon", 0.0)),
            list(d.get("folded_into", [])),
            d.get("kept_affine"),
        )


@dataclass(frozen=True)
class Refusal:
    """A LayerNorm left alone, and why."""

    norm: str
    """The node's name."""
    form: str
    """Its form."""
    why: str
    """The reason, naming the nodes involved."""

    def __str__(self) -> str:
        return f"{self.norm} ({self.form}): {self.why}"

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "Refusal":
        return cls(d.get("norm", ""), d.get("form", ""), d.get("why", ""))


@dataclass(frozen=True)
class Stream:
    """One residual stream: its width, status, sources/writers and norms."""

    id: int
    width: Optional[int]
    """Width D."""
    new_width: Optional[int]
    """Width after the rewrite (D-1 for CRMSNorm)."""
    status: str
    """``"rewritten"`` or ``"refused"``."""
    reasons: List[str]
    """Why it was refused."""
    leaves: List[Leaf]
    """Sources and writers, and how each was centred."""
    norms: List[Norm]
    """The norms rewritten on it."""
    norm_names: List[str]
    """Names of the norms reading it."""

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "Stream":
        return cls(
            int(d.get("id", 0)),
            d.get("width"),
            d.get("new_width"),
            d.get("status", ""),
            list(d.get("reasons", [])),
            [Leaf._from(x) for x in d.get("leaves", [])],
            [Norm._from(x) for x in d.get("norms", [])],
            list(d.get("norm_names", [])),
        )


@dataclass(frozen=True)
class InputSummary:
    """How one input was generated for verification."""

    name: str
    dtype: str
    shape: List[int]
    values: str

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "InputSummary":
        return cls(d.get("name", ""), d.get("dtype", ""), list(d.get("shape", [])), d.get("values", ""))


@dataclass(frozen=True)
class Row:
    """One output of B compared with the same output of A, in one runtime, over all samples."""

    runtime: str
    """``"tract"`` or ``"onnxruntime"``."""
    index: int
    """The output's position."""
    output: str
    """The output's name."""
    dtype: str
    shape: List[int]
    max_abs: float
    """max |B - A|."""
    max_rel: float
    """max |B - A| / max |A|: the figure compared with ``tolerance``."""
    max_ref: float
    """max |A|."""
    tolerance: float
    nonfinite: int
    """Non-finite mismatches."""
    passed: bool
    """Within tolerance, same shape, no non-finite mismatch (``"pass"`` in the JSON)."""
    detail: Optional[str]

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "Row":
        return cls(
            d.get("runtime", ""),
            int(d.get("index", 0)),
            d.get("output", ""),
            d.get("dtype", ""),
            list(d.get("shape", [])),
            float(d.get("max_abs", 0.0)),
            float(d.get("max_rel", 0.0)),
            float(d.get("max_ref", 0.0)),
            float(d.get("tolerance", 0.0)),
            int(d.get("nonfinite", 0)),
            bool(d.get("pass", False)),
            d.get("detail"),
        )


@dataclass(frozen=True)
class NotRun:
    """A runtime that was asked for but could not run these models, and why."""

    runtime: str
    why: str

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "NotRun":
        return cls(d.get("runtime", ""), d.get("why", ""))


def _sci(x: float) -> str:
    return "0" if x == 0 else f"{x:.2e}"


@dataclass(frozen=True)
class VerifyTable:
    """The verification of model B against model A: one row per runtime and output.

    ``passed`` is true when every row passed. ``str(table)`` is the table the CLI prints;
    ``to_dict()`` is the JSON of ``onnx-normopt verify A B --json``.
    """

    a: str
    """The reference model."""
    b: str
    """The model compared with it."""
    runtimes: List[str]
    """The runtimes that ran."""
    samples: int
    seed: int
    dims: Dict[str, int]
    """The dynamic dimensions used."""
    inputs: List[InputSummary]
    ort_library: Optional[str]
    """The onnxruntime library used, if onnxruntime ran."""
    ort_optimize: bool
    rows: List[Row]
    notes: List[str]
    not_run: List[NotRun]
    elapsed_ms: int
    _raw: Dict[str, Any] = field(repr=False, compare=False)
    _text: Optional[str] = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        """Whether every row passed (and there is at least one)."""
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self) -> List[Row]:
        """The rows that failed."""
        return [r for r in self.rows if not r.passed]

    def max_rel(self, runtime: Optional[str] = None) -> float:
        """The largest max|Δ|/max|ref| over the rows (of one runtime when given)."""
        rs = [r.max_rel for r in self.rows if runtime is None or r.runtime == runtime]
        return max(rs) if rs else 0.0

    def to_dict(self) -> Dict[str, Any]:
        """The table as the CLI's JSON (a deep copy)."""
        return copy.deepcopy(self._raw)

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        lines = [f"verify {self.b} against {self.a}: {'PASS' if self.passed else 'FAIL'}"]
        for r in self.rows:
            lines.append(
                f"  {r.runtime:<12} {r.output:<24} {r.dtype:<5} max|Δ| {_sci(r.max_abs):>9}  "
                f"max|Δ|/max|ref| {_sci(r.max_rel):>9}  tol {_sci(r.tolerance):>9}  "
                f"{'ok' if r.passed else 'FAIL'}{'  ' + r.detail if r.detail else ''}"
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    @classmethod
    def _from(cls, d: Mapping[str, Any], text: Optional[str] = None) -> "VerifyTable":
        return cls(
            str(d.get("a", "")),
            str(d.get("b", "")),
            list(d.get("runtimes", [])),
            int(d.get("samples", 0)),
            int(d.get("seed", 0)),
            dict(d.get("dims", {})),
            [InputSummary._from(x) for x in d.get("inputs", [])],
            d.get("ort_library"),
            bool(d.get("ort_optimize", False)),
            [Row._from(x) for x in d.get("rows", [])],
            list(d.get("notes", [])),
            [NotRun._from(x) for x in d.get("not_run", [])],
            int(d.get("elapsed_ms", 0)),
            copy.deepcopy(dict(d)),
            text,
        )



@dataclass(frozen=True)
class Report:
    """What a rewrite did (or would do): streams, rewritten and refused norms, bytes added,
    op counts, and the verification table when verification ran.

    ``str(report)`` is the summary the CLI prints; ``to_dict()`` is exactly the JSON of
    ``onnx-normopt MODEL -o OUT --report R.json`` (or ``inspect --json``).
    """

    model: str
    """The input model (``<in-memory model>`` for ``rewrite_model``)."""
    target: str
    """``"rmsnorm"`` or ``"crmsnorm"``."""
    emit: str
    """``"standard"``, ``"onnxruntime"`` or ``"custom"``."""
    norms_found: List[Tuple[str, int]]
    """Norms found, by form: ``[("LayerNormalization", 5)]``."""
    streams: List[Stream]
    refusals: List[Refusal]
    """The norms left alone, with the reason for each."""
    norms_rewritten: int
    centering_nodes: int
    """Explicit centering nodes added."""
    bytes_added: int
    """Bytes of new initializers (untied copies, new biases)."""
    ops_before: Dict[str, int]
    ops_after: Dict[str, int]
    verification: Optional[VerifyTable]
    """The verification of the output against the input, when it ran."""
    _raw: Dict[str, Any] = field(repr=False, compare=False)
    _text: str = field(default="", repr=False, compare=False)

    @property
    def rewritten(self) -> List[Norm]:
        """Every norm rewritten, over all streams."""
        return [n for s in self.streams for n in s.norms]

    def to_dict(self) -> Dict[str, Any]:
        """The report as the CLI's ``--report`` JSON (a deep copy)."""
        return copy.deepcopy(self._raw)

    def __str__(self) -> str:
        return self._text

    @classmethod
    def _from(cls, d: Mapping[str, Any], text: str = "") -> "Report":
        v = d.get("verification")
        return cls(
            str(d.get("model", "")),
            str(d.get("target", "")),
            str(d.get("emit", "")),
            [(str(k), int(n)) for k, n in d.get("norms_found", [])],
            [Stream._from(x) for x in d.get("streams", [])],
            [Refusal._from(x) for x in d.get("refusals", [])],
            int(d.get("norms_rewritten", 0)),
            int(d.get("centering_nodes", 0)),
            int(d.get("bytes_added", 0)),
            dict(d.get("ops_before", {})),
            dict(d.get("ops_after", {})),
            VerifyTable._from(v) if v else None,
            copy.deepcopy(dict(d)),
            text,
        )


@dataclass(frozen=True)
class FolderFile:
    """One model of a folder rewrite (``rewrite_dir``) and what happened to it."""

    file: str
    """Its path relative to the input folder (``/``-separated)."""
    status: str
    """``"rewritten"``, ``"refused"`` or ``"invalid"`` (both copied unchanged), or
    ``"verification failed"``."""
    reason: Optional[str]
    """Why it was refused or failed."""
    norms_rewritten: int
    norms_refused: int
    verification: str
    """One line about its verification (``"passed (tract+onnxruntime, ...)"``, ``"not
    verified (...)"``, ``"- (copied unchanged)"``)."""
    data_file: Optional[str]
    """The external data file the rewritten model references, relative to the output."""
    report: Optional[Report]
    """The pass's report for this model (``None`` when the pass did not run)."""

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "FolderFile":
        r = d.get("report")
        return cls(
            str(d.get("file", "")),
            str(d.get("status", "")),
            d.get("reason"),
            int(d.get("norms_rewritten", 0)),
            int(d.get("norms_refused", 0)),
            str(d.get("verification", "")),
            d.get("data_file"),
            Report._from(r) if r else None,
        )


@dataclass(frozen=True)
class FolderReport:
    """What a folder rewrite (``rewrite_dir``, ``onnx-normopt DIR -o OUT_DIR``) did.

    ``str(report)`` is the table the CLI prints at the end; ``to_dict()`` is exactly the JSON
    of ``onnx-normopt DIR -o OUT_DIR --report R.json``.
    """

    input: str
    output: str
    target: str
    files: List[FolderFile]
    """One entry per ``.onnx`` file, in path order."""
    copied: List[str]
    """Other files, copied unchanged (relative paths)."""
    replaced_data_files: List[str]
    """External data files read only by rewritten models, replaced by their own."""
    _raw: Dict[str, Any] = field(repr=False, compare=False)
    _text: str = field(default="", repr=False, compare=False)

    @property
    def rewritten(self) -> List[FolderFile]:
        """The files rewritten."""
        return [f for f in self.files if f.status == "rewritten"]

    @property
    def refused(self) -> List[FolderFile]:
        """The files refused (copied unchanged)."""
        return [f for f in self.files if f.status == "refused"]

    @property
    def invalid(self) -> List[FolderFile]:
        """The files that are not valid models (copied unchanged, the reason in ``reason``)."""
        return [f for f in self.files if f.status == "invalid"]

    def to_dict(self) -> Dict[str, Any]:
        """The report as the CLI's folder ``--report`` JSON (a deep copy)."""
        return copy.deepcopy(self._raw)

    def __str__(self) -> str:
        return self._text

    @classmethod
    def _from(cls, d: Mapping[str, Any], text: str = "") -> "FolderReport":
        return cls(
            str(d.get("input", "")),
            str(d.get("output", "")),
            str(d.get("target", "")),
            [FolderFile._from(x) for x in d.get("files", [])],
            list(d.get("copied", [])),
            list(d.get("replaced_data_files", [])),
            copy.deepcopy(dict(d)),
            text,
        )
