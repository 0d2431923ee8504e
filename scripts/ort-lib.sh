#!/usr/bin/env bash
# Print the path of an onnxruntime shared library, installing the PyPI wheel into .cache/pydeps
# when none is installed. The wheel carries onnxruntime/capi/libonnxruntime.so.1.*; nothing
# else is downloaded. Also installs numpy and onnx there (the acceptance judge needs them).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
deps=$here/.cache/pydeps
ORT_VERSION=${ORT_VERSION:-1.32.0}
lib=$(ls "$deps"/onnxruntime/capi/libonnxruntime.so.1.* 2>/dev/null | head -1 || true)
if [ -z "$lib" ]; then
  mkdir -p "$deps"
  python3 -m pip install --quiet --disable-pip-version-check --target "$deps" \
    "onnxruntime==$ORT_VERSION" numpy onnx >&2
  lib=$(ls "$deps"/onnxruntime/capi/libonnxruntime.so.1.* | head -1)
fi
echo "$lib"
