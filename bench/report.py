#!/usr/bin/env python3
"""Render the JSON reports of bench/run_all.sh (RESULTS/*.json + *.cmd) as Markdown tables.

  python3 bench/report.py bench/results > bench/results/tables.md
  python3 bench/report.py --summary bench/results   # BENCHMARKS.md's end-to-end tables
"""
import json
import os
import statistics
import sys

ORDER = ["op_128x768", "op_128x768_d1", "op_197x384", "op_197x384_d1", "op_1576x192", "op_1576x192_d1", "head", "head_ort_1thread"] + [f"{m}{v}" for m in ("vit_ti", "vit_s", "gpt2") for v in ("", "_tract", "_ort_1thread", "_openvino")]

# Op names that belong to normalisation, per runtime (for the "norm ops" profile column).
NORM_OPS = {
    "onnxruntime": {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                     "SkipSimplifiedLayerNormalization", "RMSNormalization", "Pow", "Sqrt", "ReduceMean", "Sub"},
    "tract": {"RmsNorm", "Reduce<Sum>", "OptSubByScalar", "OptMulByScalar", "OptBinChain(Mul+Add)", "CRMSNormalization"},
}


def median_ci(xs):
    """Distribution-free 95% confidence interval of the median of xs (order statistics n/2 ± 0.98√n),
    or None below 10 values: how well the run pins the median down, where the quartiles give the
    spread of a single round."""
    xs = sorted(x for x in xs if x == x)
    n = len(xs)
    if n < 10:
        return None
    h = 0.98 * n ** 0.5
    lo, hi = max(int(n / 2 - h), 0), min(int(n / 2 + h + 0.999), n - 1)
    return xs[lo], xs[hi]


def per_round_ratios(runs, base):
    """The per-round ratios runs[r] / base[r] of an interleaved run."""
    return [a / b for a, b in zip(runs, base) if b > 0]


def per_round_captured(orig, runs, limit):
    """The per-round captured fractions (t_A − t_X) / (t_A − t_limit) of an interleaved run."""
    return [(a - x) / (a - l) for a, x, l in zip(orig, runs, limit) if a != l]


def ratio_ci(runs, base):
    """95% CI of the median per-round ratio runs[r] / base[r], as "lo–hi", or ""."""
    if not runs or not base or len(runs) != len(base):
        return ""
    ci = median_ci(per_round_ratios(runs, base))
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else ""


def capture_ci(orig, runs, limit):
    """95% CI of the median per-round captured fraction, or ""."""
    if not (orig and runs and limit) or not len(orig) == len(runs) == len(limit):
        return ""
    ci = median_ci(per_round_captured(orig, runs, limit))
    return f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else ""


def q(s, fmt):
    return f"{fmt.format(s['median'])} [{fmt.format(s['p25'])}, {fmt.format(s['p75'])}]"


def render(name, rep, cmd):
    out = [f"### {name}", ""]
    if cmd:
        out += ["```sh", cmd.strip(), "```", ""]
    ins = "; ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in rep["inputs"])
    out += [f"{rep['runs']} timed rounds (+{rep['warmup']} warm-up), inputs {ins}; {rep['machine']}", ""]
    for r in rep["runtimes"]:
        ms = [m["ms"]["median"] for m in r["models"]]
        fmt = "{:.3f}" if max(ms) < 10 else "{:.1f}"
        norm_ops = NORM_OPS.get(r["runtime"], set())
        has_cpu = all(m.get("cpu_ms") for m in r["models"])
        has_prof = any(m.get("profile") for m in r["models"])
        has_cap = bool(r["captured"])
        a = r["models"][0]["label"]
        base = r["models"][0].get("runs_ms")
        has_ci = bool(base)
        head = f"| {r['runtime']} | wall ms [p25, p75] | wall ratio vs {a} |" + (" 95% CI of the median ratio |" if has_ci else "")
        sep = "|---|---|---|" + ("---|" if has_ci else "")
        if has_cpu:
            head += f" CPU ms [p25, p75] | CPU ratio vs {a} |"
            sep += "---|---|"
        if has_cap:
            head += " captured (wall) |" + (" 95% CI |" if has_ci else "") + (" captured (CPU) |" if has_cpu else "")
            sep += "---|" + ("---|" if has_ci else "") + ("---|" if has_cpu else "")
        if has_prof:
            head += " norm ops ms/run (profile) |"
            sep += "---|"
        out += [head, sep]
        for k, m in enumerate(r["models"]):
            def ratio(key):
                return "1" if k == 0 else q(r[key][k - 1]["stats"], "{:.3f}")

            def cap(key):
                c = next((c for c in r.get(key, []) if c["label"] == m["label"] and 0 < k < len(r["models"]) - 1), None)
                return q(c["stats"], "{:.2f}") if c else ""

            row = f"| {m['label']} | {q(m['ms'], fmt)} | {ratio('ratios')} |"
            if has_ci:
                row += f" {'' if k == 0 else ratio_ci(m.get('runs_ms'), base)} |"
            if has_cpu:
                row += f" {q(m['cpu_ms'], fmt)} | {ratio('cpu_ratios')} |"
            if has_cap:
                last = r["models"][-1].get("runs_ms")
                cci = capture_ci(base, m.get("runs_ms"), last) if 0 < k < len(r["models"]) - 1 else ""
                row += f" {cap('captured')} |" + (f" {cci} |" if has_ci else "") + (f" {cap('cpu_captured')} |" if has_cpu else "")
            if has_prof:
                p = m.get("profile") or []
                nops = [o for o in p if o["op"] in norm_ops]
                tot = sum(o["ms_per_run"] for o in nops)
                alltot = sum(o["ms_per_run"] for o in p) or 1.0
                desc = ", ".join(f"{o['op']}×{o['nodes']}" for o in nops)
                row += f" {tot:.2f} = {100 * tot / alltot:.1f}% ({desc}) |" if nops else " 0 |"
            out.append(row)
        out.append("")
    return "\n".join(out)


def ov_norm_layers(p):
    """MVN/RMS time per run and its share of all executed layers; Reduce and Eltwise listed apart
    (only some of them are norms: a decomposed norm's, or the model's own)."""
    if not p:
        return ""
    total = sum(p.values()) or 1.0
    fused = {k: v for k, v in p.items() if k in ("MVN", "RMS")}
    tot = sum(fused.values())
    desc = ", ".join(f"{k} {v:.2f}" for k, v in fused.items()) or "none"
    other = ", ".join(f"{k} {p[k]:.2f}" for k in ("Reduce", "Eltwise") if k in p)
    return f"{tot:.2f} = {100 * tot / total:.1f}% ({desc}; of {total:.1f} ms; {other})"


def render_openvino(name, rep, cmd):
    """bench/ov_bench.py's JSON: one table per precision, plus the agreement check."""
    out = [f"### {name}", ""]
    if cmd:
        out += ["```sh", cmd.strip(), "```", ""]
    out += [f"OpenVINO {rep['openvino']}, {rep['cpu']} ({', '.join(rep['capabilities'])}); "
            f"{rep['runs']} timed rounds (+{rep['warmup']} warm-up); load {rep['load_before'][0]:.2f} -> {rep['load_after'][0]:.2f}", ""]
    if rep.get("check"):
        out += ["Agreement with the original in f32: " + ", ".join(
            f"{c['label']} {c.get('rel_err', float('nan')):.1e}{'' if c['ok'] else ' FAIL'}" for c in rep["check"]), ""]
    prof = rep.get("profile") or {}
    for prec, t in rep.get("tables", {}).items():
        rows = t["rows"]
        a = rows[0]["label"]
        has_prof = any(f"{r['label']}/{prec}" in prof for r in rows)
        base = rows[0].get("runs_ms")
        out += [f"| OpenVINO {prec} (runs in {t['inference_precision']}) | wall ms | wall ratio vs {a} [p25, p75] "
                f"| 95% CI of the median ratio | captured (wall) | 95% CI | CPU ms | CPU ratio vs {a} | captured (CPU) |"
                + (" norm layers ms/run (profile) |" if has_prof else ""),
                "|---|---|---|---|---|---|---|---|---|" + ("---|" if has_prof else "")]

        def qq(v, nd):
            return f"{v[1]:.{nd}f} [{v[0]:.{nd}f}, {v[2]:.{nd}f}]" if v else ""

        for k, r in enumerate(rows):
            ratio = "1" if k == 0 else qq(r["ratio"], 3)
            cratio = "1" if k == 0 else qq(r.get("cpu_ratio"), 3)
            rci = "" if k == 0 else ratio_ci(r.get("runs_ms"), base)
            cci = capture_ci(base, r.get("runs_ms"), rows[-1].get("runs_ms")) if 0 < k < len(rows) - 1 else ""
            row = (f"| {r['label']} | {r['median_ms']:.3f} | {ratio} | {rci} | {qq(r.get('captured'), 2)} | {cci} "
                   f"| {r.get('cpu_median_ms', float('nan')):.3f} | {cratio} | {qq(r.get('cpu_captured'), 2)} |")
            if has_prof:
                row += f" {ov_norm_layers(prof.get(r['label'] + '/' + prec))} |"
            out.append(row)
        out.append("")
    return "\n".join(out)


def quart(xs):
    """p25, median, p75 by linear interpolation (inclusive), as `onnx-normopt bench` and
    bench/ov_bench.py compute them."""
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


SUMMARY_COLS = [("", "onnxruntime (2 threads)"), ("_ort_1thread", "onnxruntime (1 thread)"), ("_tract", "tract"),
                ("_openvino/f32", "OpenVINO f32"), ("_openvino/default", "OpenVINO default (bf16)")]
SUMMARY_ROWS = ["rms_std", "rms_ort", "crms", "crms_ort", "crms_custom", "nonorm"]


def summary_runs(d, model):
    """{column title: {label: per-round wall ms}} for one model's five runtime sections."""
    cols = {}
    for suffix, title in SUMMARY_COLS:
        sec, _, prec = suffix.partition("/")
        path = os.path.join(d, model + sec + ".json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rep = json.load(f)
        if prec:
            t = rep.get("tables", {}).get(prec)
            if t and all("runs_ms" in r for r in t["rows"]):
                cols[title] = {r["label"]: r["runs_ms"] for r in t["rows"]}
        else:
            ms = rep["runtimes"][0]["models"]
            if all("runs_ms" in m for m in ms):
                cols[title] = {m["label"]: m["runs_ms"] for m in ms}
    return cols


def summary_table(cols, title, labels, per_round, nd):
    """One Markdown table: a row per label, a column per runtime; each cell the median
    [p25, p75] (95% CI of the median) of per_round(column's runs, label), or — without it."""
    titles = list(cols)
    out = [f"| {title} | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    for lab in labels:
        cells = []
        for t in titles:
            if lab not in cols[t]:
                cells.append("—")
                continue
            xs = per_round(cols[t], lab)
            lo, m, hi = quart(xs)
            ci = median_ci(xs)
            cells.append(f"{m:.{nd}f} [{lo:.{nd}f}, {hi:.{nd}f}] ({ci[0]:.{nd}f}–{ci[1]:.{nd}f})")
        out.append(f"| {lab} | " + " | ".join(cells) + " |")
    return out


def summary(d, model):
    """BENCHMARKS.md's end-to-end tables for one model: per-round wall ratio to `orig` (median
    [p25, p75] and the 95% CI of the median) and the captured fraction of the no-norm limit."""
    cols = summary_runs(d, model)

    def ratio(c, lab):
        return per_round_ratios(c[lab], c["orig"])

    def captured(c, lab):
        return per_round_captured(c["orig"], c[lab], c["nonorm"])

    out = summary_table(cols, f"{model}: wall ratio vs orig, median [p25, p75] (95% CI of the median)",
                        SUMMARY_ROWS, ratio, 3)
    out += [""] + summary_table(cols, f"{model}: captured fraction of the limit, median [p25, p75] (95% CI)",
                                SUMMARY_ROWS[:-1], captured, 2)
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--summary":
        d = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "results")
        for model in ("vit_ti", "gpt2"):
            print(summary(d, model))
        return
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
    names = [n[:-5] for n in os.listdir(d) if n.endswith(".json") and not n.endswith(("_std.json", "_ort.json"))]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for n in names:
        with open(os.path.join(d, n + ".json")) as f:
            try:
                rep = json.load(f)
            except json.JSONDecodeError:
                continue
        if "runtimes" not in rep and "tables" not in rep:
            continue
        cmd = ""
        if os.path.exists(os.path.join(d, n + ".cmd")):
            with open(os.path.join(d, n + ".cmd")) as f:
                cmd = f.read()
        print(render(n, rep, cmd) if "runtimes" in rep else render_openvino(n, rep, cmd))


if __name__ == "__main__":
    main()
