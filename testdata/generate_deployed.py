#!/usr/bin/env python3
# Pinned versions (checked at start; a mismatch is a warning, not an error). Not the same
# environment as generate.py: optimum-onnx 0.1.0 needs transformers < 4.58.
#   python3 -m venv /work/venv-gen
#   /work/venv-gen/bin/pip install optimum-onnx==0.1.0 optimum==2.1.0 torch==2.15.0 \
#       transformers==4.57.6 onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2 onnxslim==0.1.98 \
#       onnxsim==0.8.1 accelerate==1.15.0 numpy==2.4.6
"""Regenerate the deployed-form test models in testdata/deployed/ and testdata/deployed/manifest.json.

"Deployed" forms are what people ship rather than a bare torch.onnx.export: Optimum exports with
a KV cache (many inputs and outputs), Whisper's encoder/decoder/decoder-with-past/merged-decoder
set, onnxruntime's offline-optimised files, and the outputs of graph cleaners (onnxslim, onnxsim,
onnx.version_converter). Every model is a tiny Hugging Face `transformers` model built from a
config object (d = 32, 2 layers, 2 heads, vocabulary 96; no hub download), with the same kind of
non-trivial random weights as generate.py (`randomize`, copied from there), saved with
`save_pretrained` to a temporary folder and exported from that folder by
`optimum.exporters.onnx.main_export` (what `optimum-cli export onnx --model DIR --task TASK` runs).

Forms (tool column of the manifest):
  optimum    main_export(task="text-generation-with-past") -> model.onnx of each decoder family;
             Whisper task="automatic-speech-recognition-with-past" -> encoder_model,
             decoder_model, decoder_with_past_model, decoder_model_merged (If on use_cache_branch);
             ViT task="image-classification".
             accelerate is installed but its tied-weight deduplication is switched off (as in an
             environment without accelerate, which is what made ../shared/corpus-deployed), except
             for `gpt2_past_dedup`, which keeps it: the head then reads Transpose(token table).
  ortopt     onnxruntime offline optimisation: SessionOptions.optimized_model_filepath,
             graph_optimization_level=ORT_ENABLE_EXTENDED, CPUExecutionProvider (fp32 and fp16).
  onnxslim   onnxslim.slim(model)
  onnxsim    onnxsim.simplify(model)
  opset23    onnx.version_converter.convert_version(model, 23)

Each model gets a consistent feed NAME.input.npz (one array per graph input). KV-cache models:
batch 2, past length 8, 4 new tokens, attention_mask of length 12 (all ones), position_ids 8..11,
ids in [2, 96); the past is what the same ONNX model returns as `present.*` for the 8-token prefix
(run with an empty past), so the feed is exactly what `generate` would pass at the second step.
NAME.output.npz holds onnxruntime's outputs on that feed (CPU, ORT_DISABLE_ALL, as the acceptance
tool runs). The logits (or last hidden state) are compared with PyTorch run on the whole 12-token
sequence without a cache; derived files (ortopt, onnxslim, onnxsim, opset23) are compared with
PyTorch through their source where the source is an Optimum export, and with the source's
onnxruntime outputs on every output otherwise (max|d|/max|ref| below 1e-4 for fp32, 2e-2 for fp16).
A model that fails is dropped and listed in failures.json with the reason.

Usage (from the repository root, in the venv above):
    /work/venv-gen/bin/python testdata/generate_deployed.py          # everything (~2 minutes)
    /work/venv-gen/bin/python testdata/generate_deployed.py gpt2 vit # only jobs whose name starts so
    /work/venv-gen/bin/python testdata/generate_deployed.py --list   # list the jobs
"""
import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    # Optimum's decoder merge walks Python sets of initializer names: fix the string hash so the
    # merged file (initializer order and `_merged_N` names) is the same on every run.
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter
from importlib import metadata

REQUIREMENTS = {
    "optimum-onnx": "0.1.0",
    "optimum": "2.1.0",
    "torch": "2.15.0",
    "transformers": "4.57.6",
    "onnx": "1.23.2",
    "onnxruntime": "1.32.0",
    "onnxscript": "0.7.2",
    "onnxslim": "0.1.98",
    "onnxsim": "0.8.1",
    "accelerate": "1.15.0",
    "numpy": "2.4.6",
}

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "deployed")
FOLDERS = os.path.join(OUT, "folders")
MANIFEST = os.path.join(OUT, "manifest.json")
FAILURES = os.path.join(OUT, "failures.json")
SRC_MODELS = os.path.join(HERE, "models")          # generate.py's clean exports
README = os.path.join(HERE, "README.md")
BEGIN, END = "<!-- deployed:begin -->", "<!-- deployed:end -->"

BATCH, PAST, NEW = 2, 8, 4
SEED = 20230523
TOL = {"fp32": 1e-4, "fp16": 2e-2}


def check_versions():
    bad = []
    for pkg, want in REQUIREMENTS.items():
        try:
            have = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            have = None
        if have is None or have.split("+")[0] != want:
            bad.append(f"{pkg} {have} (pinned {want})")
    if bad:
        print("WARNING: versions differ from the pins; exported graphs may differ: " + ", ".join(bad),
              file=sys.stderr)


check_versions()
warnings.filterwarnings("ignore")

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import transformers
from transformers.pytorch_utils import Conv1D

transformers.logging.set_verbosity_error()
for _name in ("optimum", "torch.onnx", "onnxscript", "onnx_ir", "root", "onnxslim"):
    logging.getLogger(_name).setLevel(logging.ERROR)
ort.set_default_logger_severity(3)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import optimum.exporters.onnx.base as optimum_base
from optimum.exporters.onnx import main_export

D, L, H, V, P = 32, 2, 2, 96, 64
IMG = 32
WHISPER_MELS, WHISPER_SRC = 16, 16        # 16 mel bins, 16 encoder positions -> 32 frames


# ----------------------------------------------------------------------------------------------
# Weights (copied from generate.py: same recipe, same seeds per family name)
# ----------------------------------------------------------------------------------------------

def family_seed(family):
    return SEED + zlib.crc32(family.encode()) % 100000


SOURCE_PARAMS = ("position_embeddings", "cls_token", "distillation_token", "class_embedding")


@torch.no_grad()
def randomize(model, family):
    """LayerNorm γ ~ U(0.5, 1.5), β ~ N(0, 0.3); linear/conv weights ~ N(0, 1/fan_in), biases
    ~ N(0, 0.1); embedding tables ~ N(0, 1) plus a shared row offset 2·z + 1 (one z per table);
    the same offset on ViT position embeddings / class token and the patch-embedding Conv2d bias."""
    g = torch.Generator().manual_seed(family_seed(family))

    def normal(shape, std):
        return torch.randn(shape, generator=g) * std

    def offset(dim):
        return 2.0 * torch.randn(dim, generator=g) + 1.0

    done = set()
    for _, mod in model.named_modules():
        if isinstance(mod, nn.Embedding) and id(mod.weight) not in done:
            mod.weight.copy_(normal(mod.weight.shape, 1.0) + offset(mod.weight.shape[-1]))
            done.add(id(mod.weight))
    for _, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        b = getattr(mod, "bias", None)
        if isinstance(mod, nn.Embedding) or id(w) in done:
            continue
        if isinstance(mod, (nn.Linear, Conv1D, nn.Conv1d, nn.Conv2d)):
            fan_in = w.shape[0] if isinstance(mod, Conv1D) else w[0].numel()
            w.copy_(normal(w.shape, fan_in ** -0.5))
            if isinstance(b, torch.Tensor):
                b.copy_(normal(b.shape, 0.1))
                if isinstance(mod, nn.Conv2d):
                    b.add_(offset(b.shape[0]))
        elif "norm" in type(mod).__name__.lower() and isinstance(w, torch.Tensor) and w.dim() == 1:
            w.copy_(1.0 + (torch.rand(w.shape, generator=g) - 0.5))
            if isinstance(b, torch.Tensor):
                b.copy_(normal(b.shape, 0.3))
    for name, p in model.named_parameters():
        if name.split(".")[-1] in SOURCE_PARAMS:
            p.add_(offset(p.shape[-1]))
    return model


# ----------------------------------------------------------------------------------------------
# Families
# ----------------------------------------------------------------------------------------------

def ids_cfg(**kw):
    base = dict(vocab_size=V, bos_token_id=0, eos_token_id=1, pad_token_id=None)
    base.update(kw)
    return base


TIED = "head tied to the token table in PyTorch; untied in ONNX (the head MatMul reads a transposed copy)"

# name -> (model class, config class, config kwargs, notes)
DECODERS = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", dict(n_embd=D, n_layer=L, n_head=H, n_positions=P),
             ["Conv1D writers (Gemm transB=0)", TIED]),
    "opt": ("OPTForCausalLM", "OPTConfig", dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                                ffn_dim=4 * D, max_position_embeddings=P,
                                                word_embed_proj_dim=D, pad_token_id=1),
            ["learned positions with offset 2", "stream reshaped to [-1, D] around the FFN", TIED]),
    "gpt_neox": ("GPTNeoXForCausalLM", "GPTNeoXConfig", dict(hidden_size=D, num_hidden_layers=L,
                                                             num_attention_heads=H, intermediate_size=4 * D,
                                                             max_position_embeddings=P,
                                                             use_parallel_residual=True),
                 ["parallel residual: two LNs on the same stream", "rotary"]),
    "phi": ("PhiForCausalLM", "PhiConfig", dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                                intermediate_size=4 * D, max_position_embeddings=P,
                                                partial_rotary_factor=0.5),
            ["parallel attn+mlp share input_layernorm", "partial rotary", "lm_head bias"]),
    "bloom": ("BloomForCausalLM", "BloomConfig", dict(hidden_size=D, n_layer=L, n_head=H),
              ["embedding LayerNorm", "ALiBi", TIED]),
    "codegen": ("CodeGenForCausalLM", "CodeGenConfig", dict(n_embd=D, n_layer=L, n_head=4, n_positions=P,
                                                            n_ctx=P, rotary_dim=4),
                ["parallel attn+mlp share ln_1", "rotary", "4 heads"]),
    "gptj": ("GPTJForCausalLM", "GPTJConfig", dict(n_embd=D, n_layer=L, n_head=H, n_positions=P, rotary_dim=8),
             ["parallel attn+mlp share ln_1", "rotary", "lm_head bias"]),
    "falcon": ("FalconForCausalLM", "FalconConfig", dict(hidden_size=D, num_hidden_layers=L,
                                                         num_attention_heads=H, new_decoder_architecture=False,
                                                         parallel_attn=True, multi_query=True, bias=False,
                                                         max_position_embeddings=P),
               ["parallel attn+mlp share input_layernorm", "multi-query", "no biases", TIED]),
    "gpt_bigcode": ("GPTBigCodeForCausalLM", "GPTBigCodeConfig", dict(n_embd=D, n_layer=L, n_head=H,
                                                                      n_positions=P, multi_query=True),
                    ["multi-query (K/V caches with one head)", TIED]),
}


def build_decoder(family):
    cls, cfg_cls, kw, _ = DECODERS[family]
    torch.manual_seed(family_seed(family))      # for parameters that randomize() leaves to HF init
    cfg = getattr(transformers, cfg_cls)(**ids_cfg(**kw))
    model = getattr(transformers, cls)(cfg).eval()
    return randomize(model, family)


def build_whisper():
    torch.manual_seed(family_seed("whisper"))
    cfg = transformers.WhisperConfig(
        vocab_size=V, num_mel_bins=WHISPER_MELS, d_model=D, encoder_layers=L, encoder_attention_heads=H,
        encoder_ffn_dim=4 * D, decoder_layers=L, decoder_attention_heads=H, decoder_ffn_dim=4 * D,
        max_source_positions=WHISPER_SRC, max_target_positions=P, bos_token_id=0, eos_token_id=1,
        pad_token_id=1, decoder_start_token_id=2, suppress_tokens=None, begin_suppress_tokens=None,
        forced_decoder_ids=None)
    model = transformers.WhisperForConditionalGeneration(cfg).eval()
    return randomize(model, "whisper")


def build_vit():
    torch.manual_seed(family_seed("vit"))
    cfg = transformers.ViTConfig(hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                 intermediate_size=4 * D, image_size=IMG, patch_size=8, num_labels=10)
    return randomize(transformers.ViTForImageClassification(cfg).eval(), "vit")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def quiet():
    """Silence the exporters' prints and warnings (errors still propagate)."""
    buf_out, buf_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        yield


@contextlib.contextmanager
def dedup(enabled):
    """Optimum deduplicates tied weights only when accelerate is importable; switch it off/on."""
    saved = optimum_base.is_accelerate_available
    optimum_base.is_accelerate_available = (lambda: True) if enabled else (lambda: False)
    try:
        yield
    finally:
        optimum_base.is_accelerate_available = saved


def one_line(e):
    msg = f"{type(e).__name__}: {e}".strip().splitlines()
    return msg[0][:400] if msg else type(e).__name__


def session(path, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(path, feed):
    s = session(path)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feed)))


def rel_err(ref, got):
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return float("inf")
    if ref.size == 0:
        return 0.0
    scale = max(np.abs(ref).max(), 1e-12)
    return float(np.abs(ref - got).max() / scale)


def np_dtype(elem_type):
    return {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
            onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32,
            onnx.TensorProto.BOOL: np.bool_}[elem_type]


def graph_inputs(path):
    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    out = []
    for i in m.graph.input:
        if i.name in inits:
            continue
        dims = [d.dim_param if d.dim_param else d.dim_value for d in i.type.tensor_type.shape.dim]
        out.append((i.name, np_dtype(i.type.tensor_type.elem_type), dims))
    return out


def empty_past(dims, dtype):
    shape = []
    for d in dims:
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif "batch" in str(d):
            shape.append(BATCH)
        else:
            shape.append(0)          # past_sequence_length (the only other symbolic axis of a past)
    return np.zeros(shape, dtype=dtype)


def ids(seed, n):
    g = np.random.default_rng(seed)
    return g.integers(2, V, size=(BATCH, n), dtype=np.int64)


def decoder_feed(path, input_ids, past=None, past_len=0):
    """Feed for an Optimum decoder (with or without a cache) given the new ids and the past."""
    feed = {}
    for name, dtype, dims in graph_inputs(path):
        if name == "input_ids":
            feed[name] = input_ids
        elif name == "attention_mask":
            feed[name] = np.ones((BATCH, past_len + input_ids.shape[1]), dtype=dtype)
        elif name == "position_ids":
            feed[name] = np.tile(np.arange(past_len, past_len + input_ids.shape[1], dtype=dtype), (BATCH, 1))
        elif name.startswith("past_key_values"):
            feed[name] = past[name] if past is not None else empty_past(dims, dtype)
        else:
            raise ValueError(f"unexpected input {name} {dims}")
    return feed


def presents_as_past(outputs):
    return {k.replace("present", "past_key_values", 1): v for k, v in outputs.items()
            if k.startswith("present")}


# ----------------------------------------------------------------------------------------------
# Graph facts for the manifest
# ----------------------------------------------------------------------------------------------

def all_graphs(g):
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    yield from all_graphs(sg)


def graph_facts(path):
    m = onnx.load(path)
    ops = Counter()
    ln = Counter()
    casts = []
    for g in all_graphs(m.graph):
        producer = {o: n for n in g.node for o in n.output}
        consumers = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        for n in g.node:
            key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
            ops[key] += 1
            if n.op_type in ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                             "SkipSimplifiedLayerNormalization"):
                ln[n.op_type] += 1
            elif n.op_type == "ReduceMean":
                if any(c.op_type == "Sub" for c in consumers.get(n.output[0], [])):
                    ln["decomposed (ReduceMean->Sub)"] += 1
        n_graphs = None
    inits = {i.name: i for g in all_graphs(m.graph) for i in g.initializer}
    for g in all_graphs(m.graph):
        for n in g.node:
            if n.op_type == "Cast" and n.input[0] in inits:
                casts.append(n.input[0])
    return {
        "ln_forms": dict(sorted(ln.items())),
        "ops": dict(sorted(ops.items())),
        "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
        "subgraphs": sum(1 for _ in all_graphs(m.graph)) - 1,
        "casts_of_initializers": len(casts),
        "inputs": [i.name for i in m.graph.input if i.name not in inits],
        "outputs": [o.name for o in m.graph.output],
        "bytes": os.path.getsize(path),
    }


def stamp(path, name, family, tool, expect):
    m = onnx.load(path)
    props = {p.key: p.value for p in m.metadata_props}
    props.update({"source": "onnx-normopt testdata/generate_deployed.py", "family": family,
                  "tool": tool, "expect": expect, "name": name})
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, path)


# ----------------------------------------------------------------------------------------------
# Jobs
# ----------------------------------------------------------------------------------------------

class Ctx:
    def __init__(self, tmp):
        self.tmp = tmp
        self.entries = []
        self.failures = []
        self.ref = {}            # name -> {"torch": {out: arr}, "ort": {out: arr}, "feed": feed, "dtype": ..}

    def fail(self, name, reason):
        reason = reason.replace(self.tmp, "<tmp>")
        print(f"  FAILED {name}: {reason}")
        self.failures.append({"name": name, "reason": reason})

    def add(self, name, src_path, feed, family, tool, dtype="fp32", torch_ref=None, ref_from=None,
            notes=(), expect="rewrite", why=None, extra=None, model=None):
        """Copy src_path to deployed/NAME.onnx, check it in onnxruntime against PyTorch (torch_ref:
        {output: array}) and/or a source's outputs, write the feed and the outputs, record it."""
        dst = os.path.join(OUT, (model or name) + ".onnx")
        if model is None and os.path.abspath(src_path) != dst:
            shutil.copyfile(src_path, dst)
        try:
            onnx.checker.check_model(dst)
            checker = "ok"
        except Exception as e:           # kept if onnxruntime runs it (an ORT-only file is deployed too)
            checker = one_line(e)
        if model is None:
            stamp(dst, name, family, tool, expect)
        outs = run(dst, feed)
        tol = TOL[dtype]
        errs = {}
        if torch_ref:
            for k, v in torch_ref.items():
                errs[f"{k} vs torch"] = rel_err(v, outs[k])
        if ref_from is not None:
            src = self.ref[ref_from]
            for k, v in (src.get("torch") or {}).items():
                if k in outs:
                    errs[f"{k} vs torch (via {ref_from})"] = rel_err(v, outs[k])
            for k, v in src["ort"].items():
                if k in outs:
                    errs[f"{k} vs {ref_from}"] = rel_err(v, outs[k])
        if not errs:
            raise RuntimeError("nothing to compare with")
        worst = max(errs.values())
        if not worst < tol:
            if model is None:
                os.remove(dst)
            bad = {k: v for k, v in errs.items() if not v < tol}
            raise RuntimeError(f"mismatch above tol {tol}: {bad}")
        np.savez(os.path.join(OUT, name + ".input.npz"), **feed)
        np.savez(os.path.join(OUT, name + ".output.npz"), **outs)
        self.ref[name] = {"torch": torch_ref or (self.ref[ref_from].get("torch") if ref_from else None),
                          "ort": outs, "feed": feed}
        facts = graph_facts(dst)
        entry = {
            "name": name, "file": f"deployed/{model or name}.onnx", "family": family, "tool": tool, "dtype": dtype,
            "input": f"deployed/{name}.input.npz", "output": f"deployed/{name}.output.npz",
            "d": D, "layers": L, "expect": expect, "why": why, "tol": tol,
            "max_rel_err": float(f"{worst:.3g}"),
            "checked_against": sorted(errs), "notes": list(notes),
            "feed_shapes": {k: list(v.shape) for k, v in feed.items()},
        }
        entry.update(facts)
        entry["onnx_checker"] = checker
        if extra:
            entry.update(extra)
        self.entries = [e for e in self.entries if e["name"] != name] + [entry]
        print(f"  {name}: {facts['bytes'] // 1024} KiB, LN {facts['ln_forms']}, err {worst:.2e}")


def export(src_dir, out_dir, task, dedup_tied=False, **shapes):
    with quiet(), dedup(dedup_tied):
        main_export(src_dir, output=out_dir, task=task, do_validation=False, device="cpu", **shapes)


def job_decoder(ctx, family, variant=""):
    name = f"{family}_past{variant}"
    model = build_decoder(family)
    src = os.path.join(ctx.tmp, name + "_src")
    out = os.path.join(ctx.tmp, name + "_onnx")
    model.save_pretrained(src)
    export(src, out, "text-generation-with-past", dedup_tied=(variant == "_dedup"))
    path = os.path.join(out, "model.onnx")
    prefix, new = ids(family_seed(family), PAST), ids(family_seed(family) + 1, NEW)
    first = run(path, decoder_feed(path, prefix))
    past = presents_as_past(first)
    feed = decoder_feed(path, new, past, PAST)
    with torch.no_grad():
        full = torch.from_numpy(np.concatenate([prefix, new], axis=1))
        logits = model(input_ids=full, attention_mask=torch.ones_like(full), use_cache=False).logits
    torch_ref = {"logits": logits[:, PAST:].numpy()}
    notes = list(DECODERS[family][3])
    if variant == "_dedup":
        notes = [n for n in notes if n != TIED] + [
            "exported with Optimum's tied-weight deduplication (accelerate present): the head MatMul "
            "reads Transpose(token table), the initializer the embedding Gather reads"]
    ctx.add(name, path, feed, family, "optimum", torch_ref=torch_ref,
            notes=notes + ["optimum text-generation-with-past: model.onnx"])
    if family == "gpt2" and not variant:
        folder = os.path.join(FOLDERS, "gpt2")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for f in sorted(os.listdir(out)):
            if f.endswith(".onnx") or f in ("config.json", "generation_config.json"):
                shutil.copyfile(os.path.join(out, f), os.path.join(folder, f))


def job_whisper(ctx):
    model = build_whisper()
    src = os.path.join(ctx.tmp, "whisper_src")
    out = os.path.join(ctx.tmp, "whisper_onnx")
    model.save_pretrained(src)
    # 32 frames of 10 ms: chunk_length is in seconds, so keep the default hop and set n_samples by hand
    fe = transformers.WhisperFeatureExtractor(feature_size=WHISPER_MELS)
    fe.n_samples, fe.nb_max_frames = 2 * WHISPER_SRC * fe.hop_length, 2 * WHISPER_SRC
    fe.chunk_length = fe.n_samples / fe.sampling_rate
    fe.save_pretrained(src)
    export(src, out, "automatic-speech-recognition-with-past", nb_max_frames=2 * WHISPER_SRC)
    files = sorted(f for f in os.listdir(out) if f.endswith(".onnx"))
    g = torch.Generator().manual_seed(family_seed("whisper"))
    feats = torch.randn(BATCH, WHISPER_MELS, 2 * WHISPER_SRC, generator=g)
    prefix, new = ids(family_seed("whisper"), PAST), ids(family_seed("whisper") + 1, NEW)
    full = np.concatenate([prefix, new], axis=1)
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state
        logits = model(input_features=feats, decoder_input_ids=torch.from_numpy(full)).logits
    common = ["Whisper d=32, 2+2 layers, 16 mel bins, 16 encoder positions (32 frames)",
              "optimum automatic-speech-recognition-with-past"]

    enc_path = os.path.join(out, "encoder_model.onnx")
    feed = {"input_features": feats.numpy()}
    ctx.add("whisper_encoder_model", enc_path, feed, "whisper", "optimum",
            torch_ref={"last_hidden_state": enc.numpy()},
            notes=common + ["Conv1d+GELU stem", "output = final LN (encoder_layer_norm)"])
    hidden = ctx.ref["whisper_encoder_model"]["ort"]["last_hidden_state"]

    dec_path = os.path.join(out, "decoder_model.onnx")
    feed = {"input_ids": prefix, "encoder_hidden_states": hidden}
    ctx.add("whisper_decoder_model", dec_path, feed, "whisper", "optimum",
            torch_ref={"logits": logits[:, :PAST].numpy()},
            notes=common + ["no cache: the feed is the 8-token prefix whose presents feed the cached forms"])
    past = presents_as_past(ctx.ref["whisper_decoder_model"]["ort"])

    wp_path = os.path.join(out, "decoder_with_past_model.onnx")
    wp_inputs = [n for n, _, _ in graph_inputs(wp_path)]
    feed = {"input_ids": new, **{k: past[k] for k in wp_inputs if k.startswith("past_key_values")}}
    ctx.add("whisper_decoder_with_past_model", wp_path, feed, "whisper", "optimum",
            torch_ref={"logits": logits[:, PAST:].numpy()},
            notes=common + ["cached decoder: 4 new tokens after 8 cached; cross-attention K/V come from the "
                            "past inputs (no encoder_hidden_states input)"])

    mg_path = os.path.join(out, "decoder_model_merged.onnx")
    if os.path.exists(mg_path):
        feed = {}
        for n, dtype, dims in graph_inputs(mg_path):
            if n == "input_ids":
                feed[n] = new
            elif n == "encoder_hidden_states":
                feed[n] = hidden
            elif n == "use_cache_branch":
                feed[n] = np.array([True])
            else:
                feed[n] = past[n]
        ctx.add("whisper_decoder_model_merged", mg_path, feed, "whisper", "optimum",
                torch_ref={"logits": logits[:, PAST:].numpy()},
                notes=common + ["one If on use_cache_branch (fed True); both branches hold the Pre-LN "
                                "decoder and read initializers of the outer graph"])
        # the same file on its other branch: the first step of generate (empty past)
        feed = {}
        for n, dtype, dims in graph_inputs(mg_path):
            if n == "input_ids":
                feed[n] = prefix
            elif n == "encoder_hidden_states":
                feed[n] = hidden
            elif n == "use_cache_branch":
                feed[n] = np.array([False])
            else:
                feed[n] = empty_past(dims, dtype)
        ctx.add("whisper_decoder_model_merged_nocache", mg_path, feed, "whisper", "optimum",
                torch_ref={"logits": logits[:, :PAST].numpy()}, model="whisper_decoder_model_merged",
                notes=common + ["second case on whisper_decoder_model_merged.onnx: use_cache_branch = "
                                "[False], the 8-token prefix, empty past (length 0), as generate's first "
                                "step; every output non-empty"])
    else:
        ctx.fail("whisper_decoder_model_merged", f"not produced by the export (files: {files})")

    folder = os.path.join(FOLDERS, "whisper")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for f in sorted(os.listdir(out)):
        if f.endswith(".onnx") or f in ("config.json", "generation_config.json", "preprocessor_config.json"):
            shutil.copyfile(os.path.join(out, f), os.path.join(folder, f))


def job_vit(ctx):
    model = build_vit()
    src = os.path.join(ctx.tmp, "vit_src")
    out = os.path.join(ctx.tmp, "vit_onnx")
    model.save_pretrained(src)
    export(src, out, "image-classification")
    g = torch.Generator().manual_seed(family_seed("vit"))
    x = torch.randn(BATCH, 3, IMG, IMG, generator=g)
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    ctx.add("vit_optimum", os.path.join(out, "model.onnx"), {"pixel_values": x.numpy()}, "vit", "optimum",
            torch_ref={"logits": logits.numpy()},
            notes=["optimum image-classification", "Conv2d patch embedding; class token",
                   "classifier on the CLS row of the final LN"])


# --- derived forms ----------------------------------------------------------------------------

def source_entry(ctx, src):
    """(path, feed, family, dtype, notes) of a deployed model or of a testdata/models file."""
    e = next((e for e in ctx.entries if e["name"] == src), None)
    if e is not None:
        return os.path.join(OUT, src + ".onnx"), ctx.ref[src]["feed"], e["family"], e["dtype"], e["notes"]
    path = os.path.join(SRC_MODELS, src + ".onnx")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{src}: run the generation of its source first")
    family, _, dtype = src.rpartition("_")[0].rpartition("_")[0], None, src.rpartition("_")[2]
    if src in ctx.ref:       # already run for another derived form
        return path, ctx.ref[src]["feed"], family, dtype, [f"source testdata/models/{src}.onnx (made by generate.py)"]
    feed = {}
    rng = np.random.default_rng(family_seed(src))
    for n, dt, dims in graph_inputs(path):
        if n == "input_ids":
            feed[n] = ids(family_seed(src), 8)
        else:
            shape = [BATCH if not isinstance(d, int) or d == 0 else d for d in dims]
            feed[n] = rng.standard_normal(shape).astype(dt)
    outs = run(path, feed)
    ctx.ref[src] = {"torch": None, "ort": outs, "feed": feed}
    return path, feed, family, dtype, [f"source testdata/models/{src}.onnx (made by generate.py)"]


def ortopt(ctx, src, name=None):
    path, feed, family, dtype, notes = source_entry(ctx, src)
    name = name or f"{src}_ortopt"
    dst = os.path.join(ctx.tmp, name + ".onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = dst
    so.log_severity_level = 3
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ctx.add(name, dst, feed, family, "ortopt", dtype=dtype, ref_from=src,
            notes=[f"onnxruntime {ort.__version__} offline optimisation of {src} (ORT_ENABLE_EXTENDED, CPU)"]
            + list(notes))


def slim(ctx, src):
    import onnxslim
    path, feed, family, dtype, notes = source_entry(ctx, src)
    name = f"{src}_onnxslim"
    dst = os.path.join(ctx.tmp, name + ".onnx")
    with quiet():
        m = onnxslim.slim(onnx.load(path))
    onnx.save(m, dst)
    ctx.add(name, dst, feed, family, "onnxslim", dtype=dtype, ref_from=src,
            notes=[f"onnxslim {metadata.version('onnxslim')} slim() of {src}"] + list(notes))


def sim(ctx, src):
    import onnxsim
    path, feed, family, dtype, notes = source_entry(ctx, src)
    name = f"{src}_onnxsim"
    dst = os.path.join(ctx.tmp, name + ".onnx")
    with quiet():
        m, ok = onnxsim.simplify(onnx.load(path))
    if not ok:
        raise RuntimeError("onnxsim's own check failed")
    onnx.save(m, dst)
    ctx.add(name, dst, feed, family, "onnxsim", dtype=dtype, ref_from=src,
            notes=[f"onnxsim {metadata.version('onnxsim')} simplify() of {src}"] + list(notes))


def opset23(ctx, src):
    from onnx import version_converter
    path, feed, family, dtype, notes = source_entry(ctx, src)
    name = f"{src}_opset23"
    dst = os.path.join(ctx.tmp, name + ".onnx")
    m = version_converter.convert_version(onnx.load(path), 23)
    onnx.save(m, dst)
    ctx.add(name, dst, feed, family, "opset23", dtype=dtype, ref_from=src,
            notes=[f"onnx {onnx.__version__} version_converter.convert_version(·, 23) of {src}"] + list(notes))


def job_decoder_fp16(ctx, family):
    """optimum-cli export onnx --dtype fp16 on the CPU (kept if onnxruntime can load the result)."""
    name = f"{family}_past_fp16"
    model = build_decoder(family)
    src = os.path.join(ctx.tmp, name + "_src")
    out = os.path.join(ctx.tmp, name + "_onnx")
    model.save_pretrained(src)
    try:
        export(src, out, "text-generation-with-past", dtype="fp16")
    except Exception as e:
        raise RuntimeError(f"optimum --dtype fp16 on the CPU made a file onnxruntime cannot load: {one_line(e)}")
    path = os.path.join(out, "model.onnx")
    prefix, new = ids(family_seed(family), PAST), ids(family_seed(family) + 1, NEW)
    past = presents_as_past(run(path, decoder_feed(path, prefix)))
    with torch.no_grad():
        full = torch.from_numpy(np.concatenate([prefix, new], axis=1))
        logits = model.half().float()(input_ids=full, use_cache=False).logits
    ctx.add(name, path, decoder_feed(path, new, past, PAST), family, "optimum", dtype="fp16",
            torch_ref={"logits": logits[:, PAST:].numpy()}, notes=["optimum --dtype fp16 (CPU)"])


def fp16conv(ctx, src):
    """onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True): fp16 weights and
    compute, float32 graph inputs/outputs through Casts at the boundary."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    path, feed, family, dtype, notes = source_entry(ctx, src)
    name = f"{src}_fp16conv"
    dst = os.path.join(ctx.tmp, name + ".onnx")
    with quiet():
        m = convert_float_to_float16(onnx.load(path), keep_io_types=True)
    onnx.save(m, dst)
    ctx.add(name, dst, feed, family, "fp16conv", dtype="fp16", ref_from=src,
            notes=["onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True) of "
                   f"{src}: fp16 weights and compute, float32 inputs/outputs (Cast at the boundary)"]
            + list(notes))


def jobs():
    out = [(f"{f}_past", (lambda f: lambda ctx: job_decoder(ctx, f))(f)) for f in DECODERS]
    out.append(("gpt2_past_dedup", lambda ctx: job_decoder(ctx, "gpt2", "_dedup")))
    out.append(("gpt2_past_fp16", lambda ctx: job_decoder_fp16(ctx, "gpt2")))
    out.append(("whisper", job_whisper))
    out.append(("vit_optimum", job_vit))
    for src in ("gpt2_past", "opt_past"):
        out.append((f"fp16conv:{src}", (lambda s: lambda ctx: fp16conv(ctx, s))(src)))
    for src in ("gpt2_past", "opt_past", "phi_past", "vit_optimum", "whisper_decoder_model_merged",
                "gpt2_past_fp16conv",
                "gpt2_dynamo18_fp32", "vit_dynamo18_fp32", "phi_dynamo18_fp32", "whisper_encoder_dynamo18_fp32",
                "gpt2_ts14_fp32", "gpt2_ts17_fp32", "vit_ts17_fp32", "bloom_ts17_fp32",
                "gpt2_dynamo18_fp16", "vit_dynamo18_fp16", "opt_dynamo18_fp16", "gpt_neox_dynamo18_fp16"):
        out.append((f"ortopt:{src}", (lambda s: lambda ctx: ortopt(ctx, s))(src)))
    for src in ("gpt2_past", "opt_past", "whisper_decoder_model_merged"):
        out.append((f"onnxslim:{src}", (lambda s: lambda ctx: slim(ctx, s))(src)))
    for src in ("gpt2_past", "opt_past", "gpt_neox_past"):
        out.append((f"onnxsim:{src}", (lambda s: lambda ctx: sim(ctx, s))(src)))
    for src in ("gpt2_past", "whisper_decoder_model_merged", "gpt2_dynamo18_fp16"):
        out.append((f"opset23:{src}", (lambda s: lambda ctx: opset23(ctx, s))(src)))
    return out


def write_readme_table(entries, failures):
    """Refresh the generated part of the README's deployed section (between the markers)."""
    if not os.path.exists(README):
        return
    text = open(README).read()
    if BEGIN not in text or END not in text:
        return
    fmt_ln = lambda d: ", ".join(f"{k} {v}" for k, v in d.items()) or "-"
    rows = ["| file | KiB | tool | dtype | expect | graph inputs | LayerNorm forms (all subgraphs) | notes |",
            "| --- | ---: | --- | --- | --- | ---: | --- | --- |"]
    for e in entries:
        notes = "; ".join(e["notes"]).replace("|", "/")
        if e.get("onnx_checker", "ok") != "ok":
            notes += f"; onnx.checker: {e['onnx_checker']}"
        rows.append(f"| `{os.path.basename(e['file'])}` | {e['bytes'] / 1024:.0f} | {e['tool']} | {e['dtype']} | "
                    f"{e['expect']} | {len(e['inputs'])} | {fmt_ln(e['ln_forms'])} | {notes} |")
    fails = ["| job | reason |", "| --- | --- |"]
    fails += [f"| `{f['name']}` | {f['reason'].replace('|', '/')} |" for f in failures]
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    body = (f"\n{len(entries)} models; {total / 1e6:.1f} MB in `deployed/` with the feeds, outputs and "
            f"folders.\n\n" + "\n".join(rows) + "\n\n#### Not produced\n\n"
            + ("\n".join(fails) if failures else "None.") + "\n")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    open(README, "w").write(head + BEGIN + body + END + tail)


def write_expect(entries):
    """deployed/expect.json in the format of the acceptance tool (acceptance.py --corpus DIR)."""
    spec = {}
    for e in entries:
        case = {"d": e["d"], "expect": e["expect"], "input": os.path.basename(e["input"]), "tol": e["tol"],
                "why": e["why"] or f"{e['tool']}: " + "; ".join(e["notes"])[:200]}
        if os.path.basename(e["file"]) != e["name"] + ".onnx":
            case["model"] = os.path.basename(e["file"])
        spec[e["name"]] = case
    with open(os.path.join(OUT, "expect.json"), "w") as fh:
        json.dump(spec, fh, indent=1, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


def check_all():
    bad = 0
    entries = json.load(open(MANIFEST))
    for e in entries:
        feed = dict(np.load(os.path.join(HERE, e["input"])))
        want = dict(np.load(os.path.join(HERE, e["output"])))
        got = run(os.path.join(HERE, e["file"]), feed)
        errs = {k: rel_err(v, got[k]) for k, v in want.items()}
        worst = max(errs.values())
        ok = worst <= 1e-6 and set(got) == set(want)
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {e['name']}: {len(feed)} inputs, {len(got)} outputs, max rel {worst:.2e}")
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"{len(entries) - bad} passed, {bad} failed ({total / 1e6:.1f} MB in deployed/)")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("only", nargs="*", help="job name prefixes (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--check", action="store_true",
                    help="only re-run every file of the manifest on its feed (CPU, ORT_DISABLE_ALL) and "
                         "compare with its recorded outputs")
    args = ap.parse_args()
    all_jobs = jobs()
    if args.check:
        return check_all()
    if args.list:
        for n, _ in all_jobs:
            print(n)
        return 0
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(FOLDERS, exist_ok=True)
    ctx = Ctx(tempfile.mkdtemp(prefix="deployed-"))
    selected = all_jobs if not args.only else [
        (n, f) for n, f in all_jobs
        if any(n.startswith(p) or n.split(":")[-1].startswith(p) for p in args.only)]
    # derived jobs need their deployed source in ctx: reload the recorded ones
    if args.only and os.path.exists(MANIFEST):
        for e in json.load(open(MANIFEST)):
            ctx.entries.append(e)
            feed = dict(np.load(os.path.join(HERE, e["input"])))
            outs = dict(np.load(os.path.join(HERE, e["output"])))
            ctx.ref[e["name"]] = {"torch": None, "ort": outs, "feed": feed}
        if os.path.exists(FAILURES):
            ctx.failures = [f for f in json.load(open(FAILURES))
                            if not any(f["name"].startswith(p) or p in f["name"] for p in args.only)]
    t0 = time.time()
    for n, f in selected:
        print(f"[{time.time() - t0:6.1f}s] {n}", flush=True)
        ctx.failures = [x for x in ctx.failures if x["name"] != n]
        try:
            f(ctx)
        except Exception as e:   # record, do not crash
            ctx.fail(n, one_line(e))
            if os.environ.get("DEPLOYED_DEBUG"):
                traceback.print_exc()
    ctx.entries.sort(key=lambda e: e["name"])
    with open(MANIFEST, "w") as fh:
        json.dump(ctx.entries, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    with open(FAILURES, "w") as fh:
        json.dump(sorted(ctx.failures, key=lambda x: x["name"]), fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    write_readme_table(ctx.entries, sorted(ctx.failures, key=lambda x: x["name"]))
    write_expect(ctx.entries)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"{len(ctx.entries)} models, {len(ctx.failures)} failures, {total / 1e6:.1f} MB in deployed/, "
          f"{time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
