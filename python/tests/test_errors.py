"""Each exception class, raised with its reason; nothing written on failure; no panic crosses
into Python."""

from __future__ import annotations

import random

import onnx
import pytest

import onnx_normopt
from conftest import model_path

BERTS = ["bert_ts17_fp32", "bert_dynamo18_fp32", "bert_ts14_fp32", "bert_ortfused_fp32"]


def test_exit_codes_and_hierarchy():
    assert onnx_normopt.UsageError.exit_code == 2
    assert onnx_normopt.InvalidModelError.exit_code == 2
    assert onnx_normopt.VerificationError.exit_code == 1
    assert onnx_normopt.NothingToRewrite.exit_code == 3
    for cls in (
        onnx_normopt.UsageError,
        onnx_normopt.InvalidModelError,
        onnx_normopt.WriteError,
        onnx_normopt.VerificationError,
        onnx_normopt.NothingToRewrite,
        onnx_normopt.InternalError,
    ):
        assert issubclass(cls, onnx_normopt.NormoptError)


@pytest.mark.parametrize("name", BERTS)
def test_post_ln_is_nothing_to_rewrite(name, tmp_path):
    dst = tmp_path / "out.onnx"
    with pytest.raises(onnx_normopt.NothingToRewrite) as e:
        onnx_normopt.rewrite(model_path(name), dst)
    assert str(model_path(name)) in str(e.value)
    assert "nothing rewritten" in str(e.value)
    assert len(e.value.reasons) == 5  # one per LayerNorm left alone
    assert any("Post-LN" in r for r in e.value.reasons)
    assert e.value.report is not None and e.value.report.norms_rewritten == 0
    assert [f"{r}" for r in e.value.report.refusals] == e.value.reasons
    assert list(tmp_path.iterdir()) == [], "something was written"


def test_nothing_to_rewrite_in_memory():
    with pytest.raises(onnx_normopt.NothingToRewrite) as e:
        onnx_normopt.rewrite_model(onnx.load(str(model_path("bert_ts17_fp32"))))
    assert str(e.value).startswith("<in-memory model>: nothing rewritten")
    assert e.value.reasons
    # Already RMSNorm: nothing to do either.
    with pytest.raises(onnx_normopt.NothingToRewrite, match="nothing rewritten"):
        onnx_normopt.rewrite_model(model_path("llama_ts14_fp32").read_bytes())


def test_inspect_reports_refusals_without_raising():
    report = onnx_normopt.inspect(model_path("bert_ts17_fp32"))
    assert report.norms_rewritten == 0
    assert len(report.refusals) == 5 and all(r.why for r in report.refusals)


def test_garbage_is_invalid_model(tmp_path):
    with pytest.raises(onnx_normopt.InvalidModelError, match="<in-memory model>: not a valid ONNX model"):
        onnx_normopt.rewrite_model(b"\xff\xfe this is not a protobuf \x07\x07")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0fgarbage")
    with pytest.raises(onnx_normopt.InvalidModelError) as e:
        onnx_normopt.rewrite(bad, tmp_path / "out.onnx")
    assert str(bad) in str(e.value)
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(onnx_normopt.InvalidModelError, match="cannot read"):
        onnx_normopt.inspect(tmp_path / "missing.onnx")
    with pytest.raises(onnx_normopt.InvalidModelError, match="empty"):
        onnx_normopt.rewrite_model(b"")


def test_truncated_model_is_invalid():
    data = model_path("gpt2_dynamo18_fp32").read_bytes()
    with pytest.raises(onnx_normopt.InvalidModelError, match="not a valid ONNX model"):
        onnx_normopt.rewrite_model(data[: len(data) // 2])


def test_usage_errors(tmp_path):
    src = model_path("gpt2_dynamo18_fp32")
    with pytest.raises(onnx_normopt.UsageError, match="target"):
        onnx_normopt.rewrite(src, tmp_path / "o.onnx", target="layernorm")
    with pytest.raises(onnx_normopt.UsageError, match="emit"):
        onnx_normopt.rewrite_model(src.read_bytes(), emit="fast")
    # Checked by the Rust library itself (the pass's options).
    with pytest.raises(onnx_normopt.UsageError, match="needs --target crmsnorm"):
        onnx_normopt.rewrite(src, tmp_path / "o.onnx", emit="custom")
    with pytest.raises(onnx_normopt.UsageError, match="must not be the input"):
        onnx_normopt.rewrite(src, src)
    with pytest.raises(onnx_normopt.UsageError, match="does not exist"):
        onnx_normopt.rewrite(src, tmp_path / "no" / "such" / "o.onnx")
    with pytest.raises(onnx_normopt.UsageError, match="not a path"):
        onnx_normopt.rewrite_model(str(src))
    with pytest.raises(onnx_normopt.UsageError, match="SerializeToString"):
        onnx_normopt.rewrite_model(42)
    with pytest.raises(onnx_normopt.UsageError, match="runtimes"):
        onnx_normopt.verify(src, src, runtimes=("tract", "tensorrt"))
    with pytest.raises(onnx_normopt.UsageError, match="dims"):
        onnx_normopt.verify(src, src, dims={"batch": "two"})
    with pytest.raises(ValueError):  # UsageError is a ValueError
        onnx_normopt.inspect(src, target="nope")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_verification_error_writes_nothing(tmp_path):
    """A tolerance of 0 cannot be met by float rounding: the rewrite is refused at
    verification, with the table, and nothing is written."""
    dst = tmp_path / "o.onnx"
    with pytest.raises(onnx_normopt.VerificationError) as e:
        onnx_normopt.rewrite(model_path("gpt2_dynamo18_fp32"), dst, rtol=0.0, report=tmp_path / "r.json")
    assert "verification failed" in str(e.value) and "nothing written" in str(e.value)
    table = e.value.table
    assert table is not None and not table.passed
    assert all(r.tolerance == 0.0 and r.max_rel > 0 for r in table.failures)
    assert e.value.report is not None and e.value.report.verification is not None
    assert list(tmp_path.iterdir()) == []
    # In memory too.
    with pytest.raises(onnx_normopt.VerificationError):
        onnx_normopt.rewrite_model(model_path("vit_ts17_fp32").read_bytes(), rtol=0.0)


def test_uncomparable_models_raise_verification_error():
    with pytest.raises(onnx_normopt.VerificationError, match="cannot be compared"):
        onnx_normopt.verify(model_path("gpt2_dynamo18_fp32"), model_path("vit_ts17_fp32"))


def test_invalid_file_in_verify(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(onnx_normopt.InvalidModelError, match="x.onnx"):
        onnx_normopt.verify(model_path("gpt2_dynamo18_fp32"), bad)


def test_mutated_models_raise_only_normopt_errors():
    """Corrupted models (random byte flips, truncations): every call either succeeds or raises
    a NormoptError subclass; a Rust panic would surface as pyo3's PanicException (a
    BaseException), which this test would let through and fail on."""
    data = bytearray(model_path("gpt2_dynamo18_fp32").read_bytes())
    rng = random.Random(13)
    outcomes = {}
    for i in range(40):
        m = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(m))
            m[pos] = rng.randrange(256)
        if i % 4 == 3:
            m = m[: rng.randrange(len(m))]
        try:
            onnx_normopt.inspect(bytes(m))
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except onnx_normopt.NormoptError as e:
            assert str(e)
            outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
    assert sum(outcomes.values()) == 40
    assert outcomes.get("InternalError", 0) == 0, outcomes
