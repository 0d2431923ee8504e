#!/usr/bin/env python3
"""Check that a rewritten Optimum export folder generates exactly the same tokens as the original.

    optimum_generate_check.py ORIGINAL_DIR REWRITTEN_DIR [--max-new-tokens N] [--kind causal|speech]

Both folders are loaded with Optimum's onnxruntime classes (`ORTModelForCausalLM`, or
`ORTModelForSpeechSeq2Seq` when config.json says `model_type: whisper`; `--kind` overrides), on
the CPU provider, and run greedy `generate` (no sampling, one beam, exactly N new tokens: EOS is
not allowed to stop it early) on fixed inputs: token ids drawn with a fixed seed inside the
vocabulary of config.json (batch 2, 8 prompt tokens), or for Whisper fixed random log-mel
features of the shape the config implies (num_mel_bins x 2*max_source_positions). No tokenizer
or feature extractor is needed. It reports the tokens, the largest difference of the per-step
scores (logits), and exits 0 when the token sequences are identical, 1 when they differ, 2 when
a folder cannot be loaded or run.

This is NOT part of the Rust test suite: it needs a Python environment with optimum-onnx and
onnxruntime, such as the one testdata/generate_deployed.py is pinned to (see testdata/README.md,
"Deployed forms"; e.g. /work/venv-gen):

    /work/venv-gen/bin/python scripts/optimum_generate_check.py \\
        testdata/deployed/folders/gpt2 /tmp/gpt2-rewritten

A rewritten folder is expected to hold the same file names as the original (the ONNX files
rewritten, config.json / generation_config.json copied).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse
import json
import sys
import warnings

warnings.filterwarnings("ignore")


def load(kind, folder):
    from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSpeechSeq2Seq
    cls = ORTModelForSpeechSeq2Seq if kind == "speech" else ORTModelForCausalLM
    return cls.from_pretrained(folder, provider="CPUExecutionProvider", use_cache=True)


def inputs(kind, config, batch=2, prompt=8, seed=1234):
    import numpy as np
    import torch
    rng = np.random.default_rng(seed)
    if kind == "speech":
        mels = config["num_mel_bins"]
        frames = 2 * config["max_source_positions"]
        feats = rng.standard_normal((batch, mels, frames)).astype(np.float32)
        return {"input_features": torch.from_numpy(feats)}
    vocab = config["vocab_size"]
    ids = rng.integers(2, vocab, size=(batch, prompt), dtype=np.int64)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.ones(batch, prompt, dtype=torch.int64)}


def generate(model, feed, n):
    import torch
    with torch.no_grad():
        out = model.generate(**feed, do_sample=False, num_beams=1, max_new_tokens=n, min_new_tokens=n,
                             output_logits=True, return_dict_in_generate=True)
    logits = torch.stack(list(out.logits), dim=1) if out.logits else None
    return out.sequences, logits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("original")
    ap.add_argument("rewritten")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--kind", choices=("causal", "speech"), default=None)
    ap.add_argument("--logit-tol", type=float, default=1e-3,
                    help="also fail when max|Δ logits|/max|logits| over all steps exceeds this "
                         "(default 1e-3; a negative value turns the check off)")
    args = ap.parse_args()

    try:
        with open(os.path.join(args.original, "config.json")) as fh:
            config = json.load(fh)
        kind = args.kind or ("speech" if config.get("model_type") == "whisper" else "causal")
        feed = inputs(kind, config)
        results = {}
        for label, folder in (("original", args.original), ("rewritten", args.rewritten)):
            model = load(kind, folder)
            results[label] = generate(model, feed, args.max_new_tokens)
    except Exception as e:  # noqa: BLE001 - report and exit 2
        print(f"ERROR: {type(e).__name__}: {e}".splitlines()[0][:500])
        return 2

    (seq_a, sc_a), (seq_b, sc_b) = results["original"], results["rewritten"]
    same = seq_a.shape == seq_b.shape and bool((seq_a == seq_b).all())
    print(f"kind: {kind} ({config.get('model_type')}), {args.max_new_tokens} new tokens, batch {seq_a.shape[0]}")
    for i in range(seq_a.shape[0]):
        print(f"  original  [{i}]: {seq_a[i].tolist()}")
        print(f"  rewritten [{i}]: {seq_b[i].tolist()}")
    rel = None
    if sc_a is not None and sc_b is not None and sc_a.shape == sc_b.shape:
        diff = float((sc_a.double() - sc_b.double()).abs().max())
        scale = float(sc_a.double().abs().max())
        rel = diff / max(scale, 1e-12)
        print(f"  logits of the {sc_a.shape[1]} steps: max |diff| {diff:.3g}, max |logit| {scale:.3g}, "
              f"relative {rel:.3g}")
    if not same:
        first = next((j for j in range(min(seq_a.shape[1], seq_b.shape[1]))
                      if not bool((seq_a[:, j] == seq_b[:, j]).all())), None)
        print(f"FAIL: tokens differ (first differing position {first})")
        return 1
    if args.logit_tol >= 0 and (rel is None or not rel <= args.logit_tol):
        print(f"FAIL: identical tokens, but the logits differ by {rel} relative (tolerance {args.logit_tol})")
        return 1
    print("OK: identical tokens" + (f", logits within {args.logit_tol} relative" if args.logit_tol >= 0 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
