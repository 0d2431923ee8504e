"""The package's surface: GIL released during work, silence by default, docstrings and typing
files installed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx_normopt
from conftest import model_path


def test_gil_is_released_during_rewrite(tmp_path):
    """While a rewrite (with verification) runs in a thread, the main thread keeps running
    Python: the longest pause between its iterations stays far below the call's duration
    (with the GIL held, it would be the whole call)."""
    src = model_path("clip_vision_dynamo18_fp32")
    took = {}

    def work():
        # At least 3 calls and 0.5 s of work, so that the pauses measured below are small
        # against something (a fast machine did 3 calls in 0.18 s).
        t, i = time.perf_counter(), 0
        while i < 3 or time.perf_counter() - t < 0.5:
            onnx_normopt.rewrite(src, tmp_path / f"o{i % 3}.onnx")
            i += 1
        took["s"] = time.perf_counter() - t

    worker = threading.Thread(target=work)
    worker.start()
    last, longest, spins = time.perf_counter(), 0.0, 0
    while worker.is_alive():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last, spins = now, spins + 1
        time.sleep(0)
    worker.join()
    assert took["s"] >= 0.5, took
    assert longest < took["s"] / 3, (longest, took)
    assert spins > 1000


def test_silent_by_default(tmp_path, capfd):
    onnx_normopt.rewrite(model_path("gpt2_dynamo18_fp32"), tmp_path / "o.onnx")
    onnx_normopt.rewrite_model(model_path("vit_ts17_fp32").read_bytes())
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_docstrings_read_like_the_readme():
    doc = onnx_normopt.rewrite.__doc__
    for words in ("Pre-RMSNorm", "never modified", "Args:", "target:", "Returns:", "Raises:", "NothingToRewrite"):
        assert words in doc, words
    assert "SerializeToString" in onnx_normopt.rewrite_model.__doc__
    assert "onnx.save" in onnx_normopt.rewrite_model.__doc__
    assert "tract" in onnx_normopt.verify.__doc__ and "onnxruntime" in onnx_normopt.verify.__doc__
    assert onnx_normopt.inspect.__doc__ and onnx_normopt.Report.__doc__ and onnx_normopt.VerifyTable.__doc__


def test_typing_files_installed():
    pkg = Path(onnx_normopt.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_onnx_normopt.pyi").is_file()
    assert list(pkg.glob("_onnx_normopt*.so")) or list(pkg.glob("_onnx_normopt*.pyd"))


def test_ort_library_found_without_importing_onnxruntime():
    """The installed onnxruntime package's library is found by its spec, without importing it
    (ORT_DYLIB_PATH, when set, wins and is left to the library)."""
    code = (
        "import os, sys, onnx_normopt\n"
        "os.environ.pop('ORT_DYLIB_PATH', None)\n"
        "lib = onnx_normopt.ort_library()\n"
        "print(lib)\n"
        "print('onnxruntime' in sys.modules)\n"
        "os.environ['ORT_DYLIB_PATH'] = lib\n"
        "print(onnx_normopt.ort_library())\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lib, imported, with_env = p.stdout.split("\n")[:3]
    assert Path(lib).is_file() and Path(lib).name.startswith("libonnxruntime")
    assert Path(lib).parent.name == "capi" and Path(lib).parent.parent.name == "onnxruntime"
    assert imported == "False"
    assert with_env == "None"


def _stderr_on_terminal(progress: bool, tmp_path) -> str:
    """stderr of a rewrite in a child process whose stderr is a terminal (a pty)."""
    import os
    import pty

    code = (
        "import sys, onnx_normopt\n"
        f"onnx_normopt.rewrite(sys.argv[1], sys.argv[2], verify=False, progress={progress})\n"
    )
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(model_path("gpt2_dynamo18_fp32")), str(tmp_path / f"o{progress}.onnx")],
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:  # the child closed the pty
            break
        if not b:
            break
        chunks.append(b)
    assert p.wait(timeout=120) == 0
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_only_when_asked(tmp_path):
    assert "writing [" in _stderr_on_terminal(True, tmp_path)
    assert _stderr_on_terminal(False, tmp_path) == ""
