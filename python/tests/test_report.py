"""The Python reports are the CLI's JSON: `rewrite(..., report=R)` and `.to_dict()` match
`onnx-normopt SRC -o DST --report R.json`; inspect and verify match their `--json`."""

from __future__ import annotations

import json

import pytest

import onnx_normopt
from conftest import cli, model_path


def comparable(d: dict) -> dict:
    """A report without what differs between two runs: the staged output's path (it names
    the process), the wall time of verification, and the memory-budget estimate, which only
    the CLI makes (it verifies in a child process under that budget; the package verifies in
    its own process, as the library does)."""
    d = json.loads(json.dumps(d))
    v = d.get("verification") or d
    v.pop("b", None)
    v.pop("elapsed_ms", None)
    v.pop("budget", None)
    return d


@pytest.mark.parametrize(
    "name,target", [("gpt2_dynamo18_fp32", "rmsnorm"), ("vit_ts17_fp32", "crmsnorm"), ("gpt_neox_ortfused_fp32", "rmsnorm")]
)
def test_report_matches_cli(name, target, tmp_path):
    src = model_path(name)
    py_report = onnx_normopt.rewrite(src, tmp_path / "py.onnx", target=target, report=tmp_path / "py.json")
    cli(str(src), "-o", str(tmp_path / "cli.onnx"), "--target", target, "--report", str(tmp_path / "cli.json"), "-q")
    from_cli = json.loads((tmp_path / "cli.json").read_text())
    written = json.loads((tmp_path / "py.json").read_text())
    assert py_report.to_dict() == written
    assert comparable(written) == comparable(from_cli)
    # Same model bytes as the CLI writes.
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    # The typed view agrees with the JSON.
    assert py_report.norms_rewritten == from_cli["norms_rewritten"]
    assert py_report.bytes_added == from_cli["bytes_added"]
    assert [s.status for s in py_report.streams] == [s["status"] for s in from_cli["streams"]]
    assert [n.name for n in py_report.rewritten] == [n["name"] for s in from_cli["streams"] for n in s["norms"]]
    rows = from_cli["verification"]["rows"]
    assert [(r.runtime, r.output, r.max_rel) for r in py_report.verification.rows] == [
        (r["runtime"], r["output"], r["max_rel"]) for r in rows
    ]


def test_in_memory_report_matches_cli(tmp_path):
    name = "bloom_ts14_fp32"
    _, report = onnx_normopt.rewrite_model(model_path(name).read_bytes())
    cli(str(model_path(name)), "-o", str(tmp_path / "cli.onnx"), "--report", str(tmp_path / "cli.json"), "-q")
    from_cli = comparable(json.loads((tmp_path / "cli.json").read_text()))
    mine = comparable(report.to_dict())
    assert mine.pop("model") == "<in-memory model>"
    assert mine["verification"].pop("a") == "<in-memory model>"
    from_cli.pop("model")
    from_cli["verification"].pop("a")
    assert mine == from_cli


def test_refusal_report_matches_cli(tmp_path):
    name = "bert_dynamo18_fp32"
    with pytest.raises(onnx_normopt.NothingToRewrite) as e:
        onnx_normopt.rewrite(model_path(name), tmp_path / "py.onnx")
    from_cli = json.loads(cli("inspect", "--json", str(model_path(name))).stdout)
    assert e.value.report.to_dict() == from_cli
    assert onnx_normopt.inspect(model_path(name)).to_dict() == from_cli
    p = cli(str(model_path(name)), "-o", str(tmp_path / "cli.onnx"), check=False)
    assert p.returncode == e.value.exit_code == 3
    assert list(tmp_path.iterdir()) == []


def test_verify_table_matches_cli(tmp_path):
    name = "gpt2_dynamo18_fp32"
    out = tmp_path / "o.onnx"
    onnx_normopt.rewrite(model_path(name), out, verify=False)
    table = onnx_normopt.verify(model_path(name), out, dims={"seq": 4}, seed=7)
    from_cli = json.loads(cli("verify", str(model_path(name)), str(out), "--dim", "seq=4", "--seed", "7", "--json").stdout)
    mine = comparable(table.to_dict())
    from_cli = comparable(from_cli)
    assert mine == from_cli
    assert table.passed and table.seed == 7 and table.dims["seq"] == 4
