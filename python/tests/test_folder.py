"""``rewrite_dir``: an export-like folder (two rewritable testdata models, one in a sub-folder,
a Post-LN BERT that is refused, a text file), rewritten with the CLI's folder-mode semantics
(the same Rust implementation) and checked by running every output in onnxruntime."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Dict

import pytest

import onnx_normopt
from conftest import assert_same_outputs, cli, model_path

GPT2, VIT, BERT = "gpt2_dynamo18_fp32", "vit_ts17_fp32", "bert_ts17_fp32"


def make_folder(root: Path) -> Path:
    """``model.onnx`` (GPT-2), ``onnx/vision_model.onnx`` (ViT), ``onnx/encoder_model.onnx``
    (BERT, Post-LN: refused), ``notes.txt``."""
    d = root / "export"
    (d / "onnx").mkdir(parents=True)
    shutil.copy(model_path(GPT2), d / "model.onnx")
    shutil.copy(model_path(VIT), d / "onnx" / "vision_model.onnx")
    shutil.copy(model_path(BERT), d / "onnx" / "encoder_model.onnx")
    (d / "notes.txt").write_text("not a model\n")
    return d


def digests(d: Path) -> Dict[str, str]:
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_rewrite_dir(tmp_path):
    src = make_folder(tmp_path)
    before = digests(src)
    out = tmp_path / "out"
    rep = onnx_normopt.rewrite_dir(src, out)
    assert digests(src) == before, "the input folder was modified"
    # The same files, no staging folder left beside the output.
    assert sorted(digests(out)) == sorted(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "out"]

    assert isinstance(rep, onnx_normopt.FolderReport)
    assert [f.file for f in rep.files] == [
        "model.onnx",
        "onnx/encoder_model.onnx",
        "onnx/vision_model.onnx",
    ]
    status = {f.file: f.status for f in rep.files}
    assert status == {
        "model.onnx": "rewritten",
        "onnx/encoder_model.onnx": "refused",
        "onnx/vision_model.onnx": "rewritten",
    }
    assert [f.file for f in rep.rewritten] == ["model.onnx", "onnx/vision_model.onnx"]
    bert = rep.refused[0]
    # The headline is the structural reason, not the consequence for the embedding LayerNorm.
    assert bert.reason and bert.reason.startswith("Post-LN"), bert.reason
    assert bert.report is not None
    assert any("Post-LN" in r.why for r in bert.report.refusals)
    assert bert.norms_rewritten == 0 and bert.norms_refused == 5
    assert rep.copied == ["notes.txt"]
    assert rep.target == "rmsnorm"
    for f in rep.rewritten:
        assert f.norms_rewritten > 0 and f.norms_refused == 0
        assert f.verification.startswith("passed (tract+onnxruntime"), f.verification
        assert f.report is not None and f.report.verification is not None
        assert f.report.verification.passed
    # Refused and other files are copied byte for byte; rewritten models run like the input.
    after = digests(out)
    assert after["onnx/encoder_model.onnx"] == before["onnx/encoder_model.onnx"]
    assert after["notes.txt"] == before["notes.txt"]
    assert after["model.onnx"] != before["model.onnx"]
    assert_same_outputs(GPT2, src / "model.onnx", out / "model.onnx")
    assert_same_outputs(VIT, src / "onnx" / "vision_model.onnx", out / "onnx" / "vision_model.onnx")
    # The table the CLI prints.
    text = str(rep)
    assert "onnx/encoder_model.onnx" in text and "refused" in text
    assert "1 other file(s) copied unchanged" in text
    # to_dict() is the report's JSON.
    d = rep.to_dict()
    assert [f["file"] for f in d["files"]] == [f.file for f in rep.files]


def test_rewrite_dir_report_matches_cli(tmp_path):
    src = make_folder(tmp_path)
    py_json = tmp_path / "py.json"
    cli_json = tmp_path / "cli.json"
    rep = onnx_normopt.rewrite_dir(
        src, tmp_path / "py_out", verify=False, report=py_json, target="crmsnorm"
    )
    cli(str(src), "-o", str(tmp_path / "cli_out"), "--no-verify", "--target", "crmsnorm",
        "--report", str(cli_json), "-q")
    a, b = json.loads(py_json.read_text()), json.loads(cli_json.read_text())
    assert a["output"].endswith("py_out") and b["output"].endswith("cli_out")
    a.pop("output"), b.pop("output")
    assert a == b
    assert rep.to_dict() == {**a, "output": str(tmp_path / "py_out")}
    assert all(f.verification == "not verified (--no-verify)" for f in rep.rewritten)
    # The two outputs are the same files, byte for byte (provenance included).
    assert digests(tmp_path / "py_out") == digests(tmp_path / "cli_out")


def test_rewrite_dir_nothing_to_rewrite(tmp_path):
    src = tmp_path / "berts"
    src.mkdir()
    shutil.copy(model_path(BERT), src / "model.onnx")
    (src / "config.json").write_text("{}")
    out = tmp_path / "out"
    with pytest.raises(onnx_normopt.NothingToRewrite) as e:
        onnx_normopt.rewrite_dir(src, out)
    assert "nothing rewritten: every model was refused; nothing written" in str(e.value)
    assert len(e.value.reasons) == 1 and e.value.reasons[0].startswith("model.onnx: ")
    assert e.value.folder_report is not None
    assert [f.status for f in e.value.folder_report.files] == ["refused"]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["berts"]


def test_rewrite_dir_verification_error_writes_nothing(tmp_path):
    src = make_folder(tmp_path)
    out = tmp_path / "out"
    # A tolerance of 0 cannot be met by float rounding: both rewrites fail verification, and
    # nothing is written (not even the refused model's copy).
    with pytest.raises(onnx_normopt.VerificationError) as e:
        onnx_normopt.rewrite_dir(src, out, rtol=0.0)
    assert "verification failed for 2 file(s); nothing written" in str(e.value)
    fr = e.value.folder_report
    assert fr is not None
    assert {f.file: f.status for f in fr.files} == {
        "model.onnx": "verification failed",
        "onnx/encoder_model.onnx": "refused",
        "onnx/vision_model.onnx": "verification failed",
    }
    assert e.value.table is not None and not e.value.table.passed
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_rewrite_dir_usage_errors(tmp_path):
    src = make_folder(tmp_path)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(onnx_normopt.UsageError, match="must not exist or must be empty"):
        onnx_normopt.rewrite_dir(src, full)
    assert [p.name for p in full.iterdir()] == ["x"]
    with pytest.raises(onnx_normopt.UsageError, match="must not be inside"):
        onnx_normopt.rewrite_dir(src, src / "out")
    assert not (src / "out").exists()
    with pytest.raises(onnx_normopt.UsageError, match="not a folder"):
        onnx_normopt.rewrite_dir(model_path(GPT2), tmp_path / "o")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(onnx_normopt.UsageError, match="no .onnx file"):
        onnx_normopt.rewrite_dir(empty, tmp_path / "o")
    with pytest.raises(onnx_normopt.UsageError, match="target"):
        onnx_normopt.rewrite_dir(src, tmp_path / "o", target="layernorm")


def test_rewrite_dir_invalid_model(tmp_path):
    """A file that is not a valid model is copied unchanged, with its reason, and the other
    models are still rewritten; a folder where no model could be rewritten and one is invalid
    is bad input, and nothing is written."""
    src = make_folder(tmp_path)
    (src / "broken.onnx").write_bytes(b"\x08\x07not a model")
    out = tmp_path / "out"
    rep = onnx_normopt.rewrite_dir(src, out, verify=False)
    assert [f.file for f in rep.invalid] == ["broken.onnx"]
    assert "not a valid ONNX model" in (rep.invalid[0].reason or "")
    assert (out / "broken.onnx").read_bytes() == (src / "broken.onnx").read_bytes()
    assert rep.rewritten
    only = tmp_path / "only"
    only.mkdir()
    (only / "broken.onnx").write_bytes(b"\x08\x07not a model")
    with pytest.raises(onnx_normopt.InvalidModelError, match="invalid"):
        onnx_normopt.rewrite_dir(only, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_rewrite_records_provenance_like_the_cli(tmp_path):
    """``rewrite`` and ``rewrite_model`` go through the same provenance as the CLI: the output's
    metadata names the tool and the input's digest, and a second rewrite explains itself."""
    import onnx

    src = model_path(GPT2)
    out = tmp_path / "o.onnx"
    onnx_normopt.rewrite(src, out, verify=False)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["onnx_normopt.input_file"] == src.name
    assert meta["onnx_normopt.input_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["onnx_normopt.target"] == "rmsnorm"
    with pytest.raises(onnx_normopt.NothingToRewrite, match="already rewritten by onnx-normopt"):
        onnx_normopt.rewrite(out, tmp_path / "again.onnx")
    proto = onnx.load(str(src))
    m, _ = onnx_normopt.rewrite_model(proto, verify=False)
    meta = {p.key: p.value for p in m.metadata_props}
    # A model given in memory is named as the report names it.
    assert meta["onnx_normopt.input_file"] == "<in-memory model>"
    sha = hashlib.sha256(proto.SerializeToString()).hexdigest()
    assert meta["onnx_normopt.input_sha256"] == sha
    with pytest.raises(onnx_normopt.NothingToRewrite, match="already rewritten"):
        onnx_normopt.rewrite_model(m)
