#!/usr/bin/env python3
"""Print the op-type histogram of ONNX models (and, with --diff, what changed versus the first).

  python3 bench/ops.py A.onnx B.onnx ...      # histograms
  python3 bench/ops.py --diff A.onnx B.onnx   # ops added/removed in B versus A
Works on onnxruntime's saved optimised graphs too (bench --ort-optimized-dir).
"""
import collections
import sys

import onnx


def hist(path):
    m = onnx.load(path, load_external_data=False)
    return collections.Counter(((n.domain or "") + (":" if n.domain else "") + n.op_type) for n in m.graph.node)


def main():
    args = sys.argv[1:]
    diff = "--diff" in args
    args = [a for a in args if a != "--diff"]
    hs = [(p, hist(p)) for p in args]
    if diff and len(hs) >= 2:
        base = hs[0][1]
        for p, h in hs[1:]:
            ch = {k: h.get(k, 0) - base.get(k, 0) for k in set(h) | set(base)}
            ch = {k: v for k, v in ch.items() if v}
            print(f"{p} vs {hs[0][0]}: " + " ".join(f"{k}{v:+d}" for k, v in sorted(ch.items(), key=lambda kv: (-abs(kv[1]), kv[0]))))
        return
    for p, h in hs:
        print(f"{p} ({sum(h.values())} nodes): " + " ".join(f"{k}×{v}" for k, v in h.most_common()))


if __name__ == "__main__":
    main()
