"""The onnxruntime-genai Generator on the original and the rewritten model folders: greedy tokens
must be identical. Not run in CI (it needs onnxruntime-genai, pinned in generate.py's
REQUIREMENTS); its last result is recorded in testdata/genai/README.md.

    python3 testdata/genai/generator_check.py [--bin target/release/onnx-normopt] [NAME...]

Each folder is rewritten by the default command (`onnx-normopt IN_DIR -o OUT_DIR`, verification
on), then both folders generate from the same prompts (random token ids, seeded) with greedy
search; the first step where the tokens differ is reported with the original's top-2 logit
margin there (a near-tie in an int8-activation model can flip; see the README).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime_genai as og

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS = ["phi_fp32", "phi_fp16", "nemotron_fp32", "nemotron_fp16", "nemotron_int4"]
PROMPTS, PROMPT_LEN, MAX_LENGTH, VOCAB = 8, 8, 48, 96


def greedy(folder, prompt):
    model = og.Model(folder)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=MAX_LENGTH, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(np.array([prompt], dtype=np.int32))
    margins = []
    while not gen.is_done():
        gen.generate_next_token()
        logits = np.sort(np.asarray(gen.get_output("logits"), dtype=np.float64)[0, -1])
        margins.append(float(logits[-1] - logits[-2]))
    return list(gen.get_sequence(0))[len(prompt):], margins


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/onnx-normopt"))
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    rng = np.random.default_rng(20)
    prompts = [rng.integers(2, VOCAB, PROMPT_LEN).tolist() for _ in range(PROMPTS)]
    failed = 0
    for name in args.names or MODELS:
        src = os.path.join(HERE, name)
        with tempfile.TemporaryDirectory() as tmp:
            dst = os.path.join(tmp, "out")
            r = subprocess.run([args.bin, src, "-o", dst, "-q"], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{name}: not rewritten (exit {r.returncode}): {r.stderr.strip()[-300:]}")
                continue
            same, steps, first = 0, 0, None
            try:
                greedy(src, prompts[0])
            except RuntimeError as e:
                print(f"{name}: the original does not generate in onnxruntime-genai: "
                      f"{str(e).splitlines()[0][:200]}")
                continue
            for p in prompts:
                a, ma = greedy(src, p)
                b, _ = greedy(dst, p)
                steps += len(a)
                if a == b:
                    same += 1
                elif first is None:
                    k = next(i for i, (x, y) in enumerate(zip(a + [None], b + [None])) if x != y)
                    first = f"prompt {prompts.index(p)} step {k} (original's top-2 margin {ma[k]:.2e})"
            ok = same == len(prompts)
            failed += not ok
            print(f"{name}: {same}/{len(prompts)} prompts give identical greedy tokens "
                  f"({steps} tokens)" + ("" if ok else f"; first difference at {first}"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
