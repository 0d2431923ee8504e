"""Rewrites of testdata models of several families, by path and in memory, checked by running
the original and the rewrite in onnxruntime from Python."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

import onnx_normopt
from conftest import MANIFEST, assert_same_outputs, model_path

# One model per family and exporter form: decoder LMs (LayerNormalization, decomposed
# ReduceMean->Sub, onnxruntime-fused Skip norms), vision and audio encoders.
FAMILIES = [
    "gpt2_dynamo18_fp32",
    "bloom_ts14_fp32",
    "falcon_ts14_fp32",
    "gpt_neox_ortfused_fp32",
    "vit_ts17_fp32",
    "clip_vision_dynamo18_fp32",
    "whisper_encoder_ts17_fp32",
]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def norms_in(name: str) -> int:
    return sum(MANIFEST[name]["ln_forms"].values())


@pytest.mark.parametrize("name", FAMILIES)
def test_rewrite_path(name, tmp_path):
    src = model_path(name)
    before = sha(src)
    dst = tmp_path / "out.onnx"
    report = onnx_normopt.rewrite(src, dst)
    assert sha(src) == before, "the input was modified"
    assert dst.is_file()
    # No staging leftovers beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]
    assert report.norms_rewritten == norms_in(name)
    assert len(report.rewritten) == report.norms_rewritten
    assert report.refusals == []
    assert all(s.status == "rewritten" for s in report.streams)
    assert report.verification is not None and report.verification.passed
    assert set(report.verification.runtimes) == {"tract", "onnxruntime"}
    assert "LayerNormalization" not in report.ops_after
    assert "SkipLayerNormalization" not in report.ops_after
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert not ops & {"LayerNormalization", "SkipLayerNormalization"}
    assert_same_outputs(name, src, dst)


@pytest.mark.parametrize("name", FAMILIES)
def test_rewrite_model_proto(name):
    original = onnx.load(str(model_path(name)))
    before = original.SerializeToString()
    rewritten, report = onnx_normopt.rewrite_model(original)
    assert type(rewritten) is type(original)
    assert original.SerializeToString() == before, "the input ModelProto was modified"
    assert report.model == "<in-memory model>"
    assert report.norms_rewritten == norms_in(name)
    assert report.verification is not None and report.verification.passed
    onnx.checker.check_model(rewritten)
    assert_same_outputs(name, original, rewritten)


def test_rewrite_model_bytes_gives_bytes():
    name = "gpt2_dynamo18_fp32"
    data = model_path(name).read_bytes()
    out, report = onnx_normopt.rewrite_model(data)
    assert isinstance(out, bytes)
    assert report.norms_rewritten == norms_in(name)
    assert_same_outputs(name, data, out)
    # bytearray / memoryview are bytes-like too.
    out2, _ = onnx_normopt.rewrite_model(memoryview(bytearray(data)), verify=False)
    assert out2 == out


@pytest.mark.parametrize(
    "name,target,emit",
    [
        ("gpt2_dynamo18_fp32", "crmsnorm", "standard"),
        ("vit_ts17_fp32", "crmsnorm", "standard"),
        ("bloom_ts14_fp32", "rmsnorm", "onnxruntime"),
        ("gpt2_dynamo18_fp32", "rmsnorm", "standard"),
    ],
)
def test_targets_and_emits(name, target, emit):
    original = onnx.load(str(model_path(name)))
    rewritten, report = onnx_normopt.rewrite_model(original, target=target, emit=emit)
    assert (report.target, report.emit) == (target, emit)
    assert report.verification.passed
    if target == "crmsnorm":
        assert all(s.new_width == s.width - 1 for s in report.streams)
    if emit == "onnxruntime":
        assert "SimplifiedLayerNormalization" in report.ops_after or any(
            k.endswith("SimplifiedLayerNormalization") for k in report.ops_after
        )
    assert_same_outputs(name, original, rewritten)


def test_no_fold_keeps_affine(tmp_path):
    name = "gpt2_dynamo18_fp32"
    report = onnx_normopt.rewrite(model_path(name), tmp_path / "o.onnx", fold=False)
    assert all(n.folded_into == [] for n in report.rewritten)
    assert_same_outputs(name, model_path(name), tmp_path / "o.onnx")


def test_external_data_by_path(tmp_path):
    """A model with external data: rewrite() keeps it external (DST.data), in memory it is a
    usage error that points to rewrite()."""
    name = "vit_ts17_fp32"
    m = onnx.load(str(model_path(name)))
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = src_dir / "m.onnx"
    onnx.save(m, str(src), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    before = (sha(src), sha(src_dir / "m.onnx.data"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    report = onnx_normopt.rewrite(src, out_dir / "r.onnx")
    assert (sha(src), sha(src_dir / "m.onnx.data")) == before
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.onnx", "r.onnx.data"]
    assert report.verification.passed
    assert_same_outputs(name, model_path(name), out_dir / "r.onnx")

    unloaded = onnx.load(str(src), load_external_data=False)
    with pytest.raises(onnx_normopt.UsageError, match="external data"):
        onnx_normopt.rewrite_model(unloaded)
    # onnx.load() brings the external data into memory: then the in-memory path works.
    rewritten, _ = onnx_normopt.rewrite_model(onnx.load(str(src)))
    assert_same_outputs(name, model_path(name), rewritten)


def test_verify_function(tmp_path):
    name = "bloom_ts14_fp32"
    dst = tmp_path / "b.onnx"
    onnx_normopt.rewrite(model_path(name), dst, verify=False)
    table = onnx_normopt.verify(model_path(name), dst, dims={"batch": 1, "seq": 5})
    assert table.passed
    assert table.dims == {"batch": 1, "seq": 5}
    assert {r.runtime for r in table.rows} == {"tract", "onnxruntime"}
    assert all(r.max_rel <= r.tolerance == 1e-4 for r in table.rows)
    assert table.ort_library  # onnxruntime ran
    tract_only = onnx_normopt.verify(model_path(name), dst, runtimes="tract", samples=1)
    assert tract_only.runtimes == ["tract"] and tract_only.samples == 1
    assert "PASS" in str(table)
    # A model that computes something else (noise on every weight matrix) fails, and the table
    # says where; it is returned, not raised.
    m = onnx.load(str(dst))
    rng = np.random.default_rng(0)
    for t in m.graph.initializer:
        if len(t.dims) == 2 and t.data_type == onnx.TensorProto.FLOAT:
            w = onnx.numpy_helper.to_array(t)
            noisy = (w + 0.1 * rng.standard_normal(w.shape)).astype(np.float32)
            t.CopyFrom(onnx.numpy_helper.from_array(noisy, t.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    other = onnx_normopt.verify(model_path(name), bad)
    assert not other.passed
    assert other.failures and all(r.max_rel > r.tolerance for r in other.failures)


def test_inspect_path_and_memory():
    name = "gpt2_dynamo18_fp32"
    by_path = onnx_normopt.inspect(model_path(name))
    in_memory = onnx_normopt.inspect(onnx.load(str(model_path(name))))
    assert by_path.norms_rewritten == in_memory.norms_rewritten == norms_in(name)
    assert by_path.verification is None
    d1, d2 = by_path.to_dict(), in_memory.to_dict()
    assert d2.pop("model") == "<in-memory model>"
    d1.pop("model")
    assert d1 == d2
    assert "stream 0" in str(by_path)
