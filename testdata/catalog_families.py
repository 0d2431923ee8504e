#!/usr/bin/env python3
"""Run an onnx-normopt binary over testdata/families/ and write what it does with each file:
testdata/families/CATALOG.md (tables) and testdata/families/catalog.json (everything).
testdata/families/CATALOG.notes.md (hand-written diagnoses, if present) is included after the
summary.

For every file of manifest.json and both targets:
  1. the default command `BIN FILE -o OUT --target T --report R.json` (verification on): exit
     status, norms rewritten / left alone, explicit centering nodes, the reasons of the report;
  2. `BIN FILE -o OUT --target T --no-verify`: exit status; when a file is written, the original
     and the output run in onnxruntime (CPU, graph optimisations off) on the same random inputs
     at the manifest's first `verify_at` size: max|d|/max|ref| over all outputs, or "cannot run:".
Needs numpy and onnxruntime (the pinned 1.32.0) and ORT_DYLIB_PATH for the binary.

    python3 testdata/catalog_families.py --bin /work/bin/onnx-normopt-baseline [FILE_GLOB...]
"""
import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
FAM = os.path.join(HERE, "families")
TARGETS = ("rmsnorm", "crmsnorm")
ort.set_default_logger_severity(4)


def feeds(entry, seed=0):
    """Random inputs at the first verify_at size: floats ~ N(0, 1), ids in [2, vocab)."""
    rng = np.random.default_rng(seed)
    size = entry["verify_at"][0]
    out = {}
    for i in entry["inputs"]:
        shape = [size[d] if isinstance(d, str) else d for d in i["dims"]]
        if i["dtype"] == "int64":
            out[i["name"]] = rng.integers(2, i.get("vocab") or 96, size=shape, dtype=np.int64)
        else:
            out[i["name"]] = rng.standard_normal(shape).astype(np.float32)
    return out


def run(path, feed):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {k: v for k, v in feed.items() if k in {i.name for i in s.get_inputs()}})


def compare(orig, new, feed):
    try:
        a = run(orig, feed)
    except Exception as e:  # noqa: BLE001
        return None, "original cannot run: " + short(e)
    try:
        b = run(new, feed)
    except Exception as e:  # noqa: BLE001
        return None, "cannot run: " + short(e)
    if len(a) != len(b):
        return None, f"cannot compare: {len(a)} vs {len(b)} outputs"
    worst = 0.0
    for x, y in zip(a, b):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            return None, f"cannot compare: shape {list(x.shape)} vs {list(y.shape)}"
        worst = max(worst, float(np.abs(x - y).max() / (np.abs(x).max() + 1e-30)))
    return worst, None


def short(e, n=700):
    s = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    s = s[-1] if s else type(e).__name__
    s = re.sub(r"\x1b\[[0-9;]*m", "", s)
    s = s.replace("[ONNXRuntimeError] : 1 : FAIL : ", "")
    s = re.sub(r"/onnxruntime_src/\S+ \S+ ", "", s)     # the C++ source location
    return s[:n]


def last_msg(p):
    lines = [l for l in (p.stderr + p.stdout).splitlines() if l.strip()]
    errs = [l for l in lines if l.startswith("onnx-normopt") or "error" in l.lower()]
    return short((errs or lines or [""])[-1], 900)


def stream_reasons(rep):
    """One line per refused stream: its norms and reasons (the node the analysis stopped at)."""
    out = []
    for s in rep.get("streams", []):
        if s.get("status") != "rewritten":
            names = s.get("norm_names", [])
            out.append({"stream": s["id"], "width": s.get("width"), "norms": names,
                        "status": s.get("status"), "reasons": s.get("reasons", [])})
    return out


def one(bin_, entry, target, tmp):
    path = os.path.join(FAM, entry["file"])
    res = {"file": entry["file"], "target": target}
    out = os.path.join(tmp, "out.onnx")
    rep = os.path.join(tmp, "r.json")
    for f in (out, rep):
        if os.path.exists(f):
            os.remove(f)
    p = subprocess.run([bin_, path, "-o", out, "--target", target, "--report", rep],
                       capture_output=True, text=True, timeout=900)
    res["default_exit"] = p.returncode
    res["default_msg"] = last_msg(p) if p.returncode else ""
    if os.path.exists(rep):
        r = json.load(open(rep))
        res["norms_found"] = sum(n for _, n in r.get("norms_found", []))
        res["norms_rewritten"] = r.get("norms_rewritten")
        res["centering_nodes"] = r.get("centering_nodes")
        res["refusals"] = [{"norm": x["norm"], "why": x["why"]} for x in r.get("refusals", [])]
        res["refused_streams"] = stream_reasons(r)
        v = r.get("verification")
        if isinstance(v, dict):
            res["verification"] = {k: v.get(k) for k in ("passed", "ok", "result") if k in v}
    else:
        # no report (exit 3 or an error before it): ask inspect for the decision
        q = subprocess.run([bin_, "inspect", path, "--json", "--target", target],
                           capture_output=True, text=True, timeout=900)
        try:
            r = json.loads(q.stdout)
            res["norms_found"] = sum(n for _, n in r.get("norms_found", []))
            res["norms_rewritten"] = 0 if p.returncode == 3 else r.get("norms_rewritten")
            res["would_rewrite"] = r.get("norms_rewritten")
            res["centering_nodes"] = r.get("centering_nodes")
            res["refusals"] = [{"norm": x["norm"], "why": x["why"]} for x in r.get("refusals", [])]
            res["refused_streams"] = stream_reasons(r)
        except Exception as e:  # noqa: BLE001
            res["inspect_error"] = short(q.stderr or e)
    if os.path.exists(out):
        os.remove(out)
    p = subprocess.run([bin_, path, "-o", out, "--target", target, "--no-verify", "-v"],
                       capture_output=True, text=True, timeout=900)
    res["noverify_exit"] = p.returncode
    # patches that change nothing any reader sees (issue #22: a centering with no reader)
    res["idle_patches"] = [l.strip() for l in (p.stdout + p.stderr).splitlines()
                           if "for 0 stream-side read" in l]
    res["noverify_msg"] = last_msg(p) if p.returncode else ""
    if os.path.exists(out):
        err, why = compare(path, out, feeds(entry))
        res["noverify_rel"] = err
        res["noverify_run"] = why
    return res


def fmt_rel(r, n=120):
    if r.get("noverify_run"):
        return r["noverify_run"].replace("|", "/")[:n]
    if r.get("noverify_rel") is None:
        return "-"
    return f"{r['noverify_rel']:.1e}"


def expected_str(e):
    if e is None:
        return "null"
    return f"{e['rewrite']}/{e['rewrite'] + e['left']}" + (f" +{e['centering']}c" if e["centering"] else "")


def cell(r, e):
    """`rw/LN[+Nc] eX` of the default command, then what --no-verify wrote when it is off."""
    if r is None:
        return "-"
    rw = r.get("norms_rewritten")
    rw = 0 if rw is None and r["default_exit"] == 3 else ("?" if rw is None else rw)
    c = f"+{r['centering_nodes']}c" if r.get("centering_nodes") else ""
    out = f"{rw}/{r.get('norms_found', e['layernorms_in_graph'])}{c} e{r['default_exit']}"
    if r.get("noverify_run"):
        out += " **nv: cannot run**"
    elif r.get("noverify_rel") is not None and r["noverify_rel"] > 1e-4:
        out += f" **nv: off {r['noverify_rel']:.0e}**"
    if r.get("idle_patches"):
        out += f" ({len(r['idle_patches'])} idle patch)"
    return out


def summary(manifest, by):
    forms = ["ts17", "ts14", "dynamo18", "optimum_ort99"]
    fams = list(dict.fromkeys(e["family"] for e in manifest))
    lines = ["## Summary", "",
             "Per family and form: `rewritten/LayerNorms[+centering]` and the default command's "
             "exit status; **nv** marks a `--no-verify` output that differs from the original "
             "or cannot run.", ""]
    for t in TARGETS:
        lines += [f"### {t}", "", "| family | expected | ts17 | ts14 | dynamo18 / optimum |",
                  "| --- | --- | --- | --- | --- |"]
        for f in fams:
            es = {e["form"]: e for e in manifest if e["family"] == f}
            any_e = next(iter(es.values()))
            cells = []
            for form in ("ts17", "ts14"):
                cells.append(cell(by.get((es[form]["file"], t)), es[form]) if form in es else "-")
            last = es.get("dynamo18") or es.get("optimum_ort99")
            cells.append(cell(by.get((last["file"], t)), last) if last else "-")
            lines.append(f"| {f} | {expected_str(any_e['expected'].get(t))} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_md(manifest, results, bin_):
    by = {(r["file"], r["target"]): r for r in results}
    lines = ["# What the current binary does with testdata/families/", "",
             f"Generated by `testdata/catalog_families.py --bin {bin_}` (do not edit by hand).",
             "`rw/LN`: norms rewritten / LayerNorms found; `+Nc`: explicit centering nodes;",
             "`exp`: the manifest's expected decision (rewritten/total, centering); `nv`: the",
             "`--no-verify` run; `max|Δ|/max|ref|`: original vs `--no-verify` output in",
             "onnxruntime (graph optimisations off) on the same random input.", ""]
    lines += summary(manifest, by)
    notes = os.path.join(FAM, "CATALOG.notes.md")
    if os.path.exists(notes):       # hand-written diagnoses of the shortfalls (binary-specific)
        lines += [open(notes).read().rstrip(), ""]
    for t in TARGETS:
        lines += [f"## --target {t}", "",
                  "| file | exp | default exit | rw/LN | nv exit | max\\|Δ\\|/max\\|ref\\| (nv) |",
                  "| --- | --- | ---: | --- | ---: | --- |"]
        for e in manifest:
            r = by.get((e["file"], t))
            if r is None:
                continue
            rw = r.get("norms_rewritten")
            rw = 0 if rw is None and r["default_exit"] == 3 else ("?" if rw is None else rw)
            c = f" +{r['centering_nodes']}c" if r.get("centering_nodes") else ""
            lines.append(f"| `{e['file']}` | {expected_str(e['expected'].get(t))} | "
                         f"{r['default_exit']} | {rw}/{r.get('norms_found', e['layernorms_in_graph'])}{c} | "
                         f"{r['noverify_exit']} | {fmt_rel(r)} |")
        lines.append("")
    lines += ["## Messages and refusals, per file", ""]
    for e in manifest:
        lines.append(f"### `{e['file']}`")
        lines.append("")
        for t in TARGETS:
            r = by.get((e["file"], t))
            if r is None:
                continue
            lines.append(f"- **{t}**: default exit {r['default_exit']}"
                         + (f" — {r['default_msg']}" if r["default_msg"] else "")
                         + f"; --no-verify exit {r['noverify_exit']}"
                         + (f" — {r['noverify_msg']}" if r["noverify_msg"] else "")
                         + f"; output vs original: {fmt_rel(r, 700)}")
            for l in r.get("idle_patches", []):
                lines.append(f"  - --no-verify -v: `{l}`")
            for s in r.get("refused_streams", []):
                why = "; ".join(dict.fromkeys(s["reasons"])) or "?"
                norms = ", ".join(n.split("/")[-2] if n.count("/") > 1 else n
                                  for n in s["norms"])
                lines.append(f"  - stream {s['stream']} (width {s['width']}, {s['status']}; "
                             f"norms: {norms or '-'}): {why}")
        lines.append("")
    open(os.path.join(FAM, "CATALOG.md"), "w").write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("files", nargs="*", help="globs of file names (default: all)")
    ap.add_argument("--md-only", action="store_true", help="rewrite CATALOG.md from catalog.json")
    a = ap.parse_args()
    manifest = json.load(open(os.path.join(FAM, "manifest.json")))
    if a.md_only:
        write_md(manifest, json.load(open(os.path.join(FAM, "catalog.json")))["results"], a.bin)
        return
    todo = [e for e in manifest if not a.files or any(fnmatch.fnmatch(e["file"], g) for g in a.files)]
    cpath = os.path.join(FAM, "catalog.json")
    old = json.load(open(cpath)) if os.path.exists(cpath) else {"results": []}
    results = {(r["file"], r["target"]): r for r in old["results"]}
    with tempfile.TemporaryDirectory() as tmp:
        for e in todo:
            for t in TARGETS:
                r = one(a.bin, e, t, tmp)
                results[(e["file"], t)] = r
                print(f"{e['file']:34s} {t:8s} exit {r['default_exit']} "
                      f"rw {r.get('norms_rewritten')}/{r.get('norms_found')} "
                      f"nv {r['noverify_exit']} {fmt_rel(r)}", flush=True)
    files = {e["file"] for e in manifest}
    res = [results[k] for k in sorted(results) if k[0] in files]
    json.dump({"binary": a.bin, "results": res}, open(cpath, "w"), indent=1)
    write_md(manifest, res, a.bin)


if __name__ == "__main__":
    main()
