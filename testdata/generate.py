#!/usr/bin/env python3
# Pinned versions (checked at start; a mismatch is a warning, not an error):
#   torch==2.15.0 transformers==5.23.0 onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2 numpy==2.4.6
#   pip install torch==2.15.0 transformers==5.23.0 onnx==1.23.2 onnxruntime==1.32.0 \
#               onnxscript==0.7.2 numpy==2.4.6
"""Regenerate the small ONNX test models in testdata/models/ and testdata/manifest.json.

Every model is a Hugging Face `transformers` class built from a tiny config object (no hub
download), given random but non-trivial weights with a fixed seed, wrapped so that it takes one
input tensor and returns one tensor (the logits, or the last hidden state / pooled / classifier
output), and exported by real exporters:

  dynamo18  torch.onnx.export(dynamo=True, opset_version=18)   -> LayerNormalization ops
  ts14      TorchScript exporter, opset 14                      -> decomposed LayerNorm
  ts17      TorchScript exporter, opset 17                      -> LayerNormalization ops
  ortfused  ts17 export through onnxruntime.transformers.optimizer.optimize_model
            (SkipLayerNormalization, com.microsoft)

Each export is run in onnxruntime (CPU, graph optimizations off, as the acceptance tool does) on
a random input and compared with PyTorch; a model that does not match (max|d|/max|ref| above
1e-4 for fp32, 2e-2 for fp16) is dropped and the failure recorded.

Usage (from the repository root):
    HF_HUB_OFFLINE=1 python3 testdata/generate.py             # everything (3-4 minutes on 2 cores)
    HF_HUB_OFFLINE=1 python3 testdata/generate.py gpt2 opt    # only these families (manifest merged)
    python3 testdata/generate.py --list                       # list the families
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import contextlib
import io
import json
import logging
import sys
import time
import traceback
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable

REQUIREMENTS = {
    "torch": "2.15.0",
    "transformers": "5.23.0",
    "onnx": "1.23.2",
    "onnxruntime": "1.32.0",
    "onnxscript": "0.7.2",
    "numpy": "2.4.6",
}

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "models")
MANIFEST = os.path.join(HERE, "manifest.json")
FAILURES = os.path.join(MODELS, "failures.json")

BATCH, SEQ = 2, 8          # the input shape recorded in the manifest
SEED = 20230523            # base seed; every family derives its own from its name
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
import torch.nn.functional as F
import transformers
import transformers.masking_utils as masking_utils
from transformers.pytorch_utils import Conv1D

transformers.logging.set_verbosity_error()
for name in ("torch.onnx", "onnxscript", "onnx_ir", "torch.export", "torch._dynamo", "root"):
    logging.getLogger(name).setLevel(logging.ERROR)
ort.set_default_logger_severity(3)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------

def family_seed(family):
    return SEED + zlib.crc32(family.encode()) % 100000


# Parameters (by name suffix) that are stream sources besides nn.Embedding tables: they get the
# shared row offset too, so an un-centred stream is clearly off.
SOURCE_PARAMS = ("position_embeddings", "cls_token", "distillation_token", "class_embedding")


@torch.no_grad()
def randomize(model, family, default_norms=False):
    """Non-trivial weights: LayerNorm γ ~ U(0.5, 1.5), β ~ N(0, 0.3); linear/conv weights
    ~ N(0, 1/fan_in), biases ~ N(0, 0.1); embedding tables (token, position, segment) ~ N(0, 1)
    plus a shared row offset 2·z + 1 (z ~ N(0, 1)^D, one z per table) added to every row; the same
    offset goes on ViT/DeiT/CLIP position embeddings, class/distillation tokens and the bias of
    the patch-embedding Conv2d."""
    g = torch.Generator().manual_seed(family_seed(family))

    def normal(shape, std):
        return torch.randn(shape, generator=g) * std

    def offset(dim):
        return 2.0 * torch.randn(dim, generator=g) + 1.0

    # Embedding tables first: a head tied to the table (same Parameter) must not overwrite them.
    done = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Embedding) and id(mod.weight) not in done:
            mod.weight.copy_(normal(mod.weight.shape, 1.0) + offset(mod.weight.shape[-1]))
            done.add(id(mod.weight))
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        b = getattr(mod, "bias", None)
        if isinstance(mod, nn.Embedding) or id(w) in done:
            continue
        if isinstance(mod, (nn.Linear, Conv1D, nn.Conv1d, nn.Conv2d)):
            fan_in = w.shape[0] if isinstance(mod, Conv1D) else w[0].numel()
            w.copy_(normal(w.shape, fan_in ** -0.5))
            if isinstance(b, torch.Tensor):
                b.copy_(normal(b.shape, 0.1))
                if isinstance(mod, nn.Conv2d):       # patch embedding: a stream source
                    b.add_(offset(b.shape[0]))
        elif "norm" in type(mod).__name__.lower() and isinstance(w, torch.Tensor) and w.dim() == 1:
            if default_norms:
                w.fill_(1.0)
                if isinstance(b, torch.Tensor):
                    b.zero_()
                continue
            w.copy_(1.0 + (torch.rand(w.shape, generator=g) - 0.5))
            if isinstance(b, torch.Tensor):
                b.copy_(normal(b.shape, 0.3))
    for name, p in model.named_parameters():
        if name.split(".")[-1] in SOURCE_PARAMS:
            p.add_(offset(p.shape[-1]))
    return model


# ----------------------------------------------------------------------------------------------
# Wrappers: one input tensor in, one tensor (or a fixed tuple) out
# ----------------------------------------------------------------------------------------------

def _first(out):
    if isinstance(out, (tuple, list)):
        return out[0]
    return out[0] if hasattr(out, "to_tuple") else out


class CausalLM(nn.Module):
    """input_ids -> logits"""
    def __init__(self, hf):
        super().__init__()
        self.m = hf

    def forward(self, input_ids):
        return _first(self.m(input_ids=input_ids, use_cache=False, return_dict=False))


class Encoder(nn.Module):
    """input -> output[index] (last_hidden_state, pooler_output, or logits)"""
    def __init__(self, hf, arg, index=0):
        super().__init__()
        self.m, self.arg, self.index = hf, arg, index

    def forward(self, x):
        out = self.m(**{self.arg: x}, return_dict=False)
        return out[self.index]


class GPT2HiddenStates(nn.Module):
    """input_ids -> (logits, hidden_states[0], ..., hidden_states[n_layer]): the residual stream
    is a graph output (observed), so the rewrite must refuse."""
    def __init__(self, hf):
        super().__init__()
        self.m = hf

    def forward(self, input_ids):
        out = self.m(input_ids=input_ids, use_cache=False, output_hidden_states=True, return_dict=True)
        return (out.logits, *out.hidden_states)


class GPT2TiedHead(nn.Module):
    """GPT2Model + a head that reads the token table itself: logits = h·Eᵀ + b through a 2-D
    F.linear, which both exporters emit as Gemm(h2d, wte, b, transB=1) on the very initializer the
    embedding Gather reads (a 3-D F.linear is exported as MatMul with a constant-folded, untied,
    transposed copy of the table)."""
    def __init__(self, transformer, vocab):
        super().__init__()
        self.transformer = transformer
        self.head_bias = nn.Parameter(0.1 * torch.randn(vocab))   # seeded by build_model

    def forward(self, input_ids):
        h = _first(self.transformer(input_ids=input_ids, use_cache=False, return_dict=False))
        b, s, d = h.shape
        logits = F.linear(h.reshape(b * s, d), self.transformer.wte.weight, self.head_bias)
        return logits.reshape(b, s, -1)


# ----------------------------------------------------------------------------------------------
# The families
# ----------------------------------------------------------------------------------------------

D = 32          # hidden size of every model
L = 2           # layers
H = 2           # heads
V = 96          # vocabulary
P = 64          # max positions
IMG = 32        # image side, patch 8 -> 16 patches + class token(s)
CORE = ("dynamo18", "ts14")
ALL_FORMS = ("dynamo18", "ts14", "ts17", "ortfused")


@dataclass
class Family:
    name: str
    build: Callable[[], nn.Module]
    kind: str = "ids"                 # ids | pixels | features
    d: int = D
    layers: int = L
    heads: int = H
    parallel: bool = False
    expect: str = "rewrite"
    why: str | None = None
    notes: list = field(default_factory=list)
    forms: tuple = CORE               # fp32 exports
    fp16: bool = False                # also fp16 exports, in fp16_forms
    fp16_forms: tuple = CORE
    fp16_eager: bool = True           # TorchScript fp16 exports with eager attention (see export_ts)
    default_norms: bool = False       # leave every norm at γ=1, β=0 (exporters deduplicate them)
    ort_type: str = "gpt2"            # onnxruntime.transformers optimizer model_type
    outputs: tuple = ("logits",)
    feature_shape: tuple | None = None  # for kind == features: (n_mels, frames)


def ids_cfg(**kw):
    base = dict(vocab_size=V, bos_token_id=0, eos_token_id=1, pad_token_id=None)
    base.update(kw)
    return base


def lm(cls_name, cfg_name, **kw):
    def build():
        cfg = getattr(transformers, cfg_name)(**ids_cfg(**kw))
        return CausalLM(getattr(transformers, cls_name)(cfg))
    return build


def gpt2_cfg():
    return transformers.GPT2Config(**ids_cfg(n_embd=D, n_layer=L, n_head=H, n_positions=P))


def build_gpt2_hidden():
    return GPT2HiddenStates(transformers.GPT2LMHeadModel(gpt2_cfg()))


def build_gpt2_tied():
    return GPT2TiedHead(transformers.GPT2Model(gpt2_cfg()), V)


def build_vit():
    cfg = transformers.ViTConfig(hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                 intermediate_size=4 * D, image_size=IMG, patch_size=8, num_labels=10)
    return Encoder(transformers.ViTForImageClassification(cfg), "pixel_values")


def build_deit():
    cfg = transformers.DeiTConfig(hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                  intermediate_size=4 * D, image_size=IMG, patch_size=8, num_labels=10)
    return Encoder(transformers.DeiTForImageClassificationWithTeacher(cfg), "pixel_values")


def build_clip_vision():
    cfg = transformers.CLIPVisionConfig(hidden_size=D, intermediate_size=4 * D, num_hidden_layers=L,
                                        num_attention_heads=H, image_size=IMG, patch_size=8,
                                        projection_dim=16)
    return Encoder(transformers.CLIPVisionModel(cfg), "pixel_values", index=1)   # pooler_output


WHISPER_MELS, WHISPER_FRAMES = 16, 32


def build_whisper_encoder():
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    cfg = transformers.WhisperConfig(vocab_size=V, num_mel_bins=WHISPER_MELS, d_model=D,
                                     encoder_layers=L, encoder_attention_heads=H, encoder_ffn_dim=4 * D,
                                     decoder_layers=1, decoder_attention_heads=H, decoder_ffn_dim=4 * D,
                                     max_source_positions=WHISPER_FRAMES // 2, max_target_positions=P)
    return Encoder(WhisperEncoder(cfg), "input_features")


def build_bert():
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                  intermediate_size=4 * D, max_position_embeddings=P)
    return Encoder(transformers.BertModel(cfg, add_pooling_layer=False), "input_ids")


TIED = "head tied to the token table in PyTorch"

FAMILIES = [
    Family("gpt2", lm("GPT2LMHeadModel", "GPT2Config", n_embd=D, n_layer=L, n_head=H, n_positions=P),
           forms=ALL_FORMS, fp16=True, notes=["Conv1D writers (Gemm transB=0, W [in, out])",
                                              TIED]),
    Family("gpt2_mixed", lm("GPT2LMHeadModel", "GPT2Config", n_embd=D, n_layer=L, n_head=H, n_positions=P),
           forms=(), fp16=True, fp16_forms=("ts14",), fp16_eager=False,
           notes=["model.half() exported by TorchScript with SDPA attention: the exporter makes the causal "
                  "mask a float32 bias, so attention, writers and the stream from block 0's first residual "
                  "Add on are float32 (Cast(fp16->fp32) on the stream, fp32 copies of the fp16 weights, "
                  "float32 output); only the embeddings, the first LN and the first qkv Gemm are fp16"]),
    Family("gpt2_dedup", lm("GPT2LMHeadModel", "GPT2Config", n_embd=D, n_layer=L, n_head=H, n_positions=P),
           forms=ALL_FORMS, default_norms=True,
           notes=["every LayerNorm at its default γ=1, β=0 (other weights random): the exporters deduplicate "
                  "identical initializers, so all LNs share one γ and one β tensor (TorchScript: through "
                  "Identity nodes)"]),
    Family("gpt2_tied", build_gpt2_tied, forms=ALL_FORMS,
           notes=["tied head: Gemm(transB=1) reads the token table initializer", "head bias"]),
    Family("gpt2_hidden", build_gpt2_hidden, expect="refuse",
           why="hidden states observed: the residual stream is a graph output",
           notes=["hidden states observed"], outputs=("logits",) + tuple(f"hidden_{i}" for i in range(L + 1))),
    Family("gptj", lm("GPTJForCausalLM", "GPTJConfig", n_embd=D, n_layer=L, n_head=H, n_positions=P,
                      rotary_dim=8), parallel=True, forms=ALL_FORMS,
           notes=["parallel attn+mlp share ln_1", "rotary", "lm_head bias"]),
    Family("codegen", lm("CodeGenForCausalLM", "CodeGenConfig", n_embd=D, n_layer=L, n_head=4, n_positions=P,
                         n_ctx=P, rotary_dim=4), heads=4, parallel=True,
           notes=["parallel attn+mlp share ln_1", "rotary", "fused qkv_proj without bias"]),
    Family("gpt_neox", lm("GPTNeoXForCausalLM", "GPTNeoXConfig", hidden_size=D, num_hidden_layers=L,
                          num_attention_heads=H, intermediate_size=4 * D, max_position_embeddings=P,
                          use_parallel_residual=True), parallel=True, forms=ALL_FORMS, fp16=True,
           ort_type="gpt_neox", notes=["use_parallel_residual=True: two LNs on the same stream", "rotary"]),
    Family("gpt_neox_seq", lm("GPTNeoXForCausalLM", "GPTNeoXConfig", hidden_size=D, num_hidden_layers=L,
                              num_attention_heads=H, intermediate_size=4 * D, max_position_embeddings=P,
                              use_parallel_residual=False), forms=ALL_FORMS, ort_type="gpt_neox",
           notes=["use_parallel_residual=False", "rotary"]),
    Family("opt", lm("OPTForCausalLM", "OPTConfig", hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                     ffn_dim=4 * D, max_position_embeddings=P, word_embed_proj_dim=D, pad_token_id=1),
           forms=ALL_FORMS, fp16=True, notes=["learned positions with offset 2", TIED]),
    Family("opt_proj", lm("OPTForCausalLM", "OPTConfig", hidden_size=D, num_hidden_layers=L,
                          num_attention_heads=H, ffn_dim=4 * D, max_position_embeddings=P,
                          word_embed_proj_dim=16, pad_token_id=1),
           forms=ALL_FORMS, notes=["project_in/out (word_embed_proj_dim=16)", TIED + " (width 16)"]),
    Family("bloom", lm("BloomForCausalLM", "BloomConfig", hidden_size=D, n_layer=L, n_head=H),
           forms=ALL_FORMS, fp16=True, notes=["embedding LayerNorm (word_embeddings_layernorm)", "ALiBi",
                                              TIED]),
    Family("phi", lm("PhiForCausalLM", "PhiConfig", hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                     intermediate_size=4 * D, max_position_embeddings=P, partial_rotary_factor=0.5),
           parallel=True, forms=ALL_FORMS, fp16=True, ort_type="gpt2",
           notes=["parallel attn+mlp share input_layernorm", "partial rotary", "lm_head bias"]),
    Family("falcon", lm("FalconForCausalLM", "FalconConfig", hidden_size=D, num_hidden_layers=L,
                        num_attention_heads=H, new_decoder_architecture=False, parallel_attn=True,
                        multi_query=True, bias=False, max_position_embeddings=P),
           parallel=True, forms=ALL_FORMS,
           notes=["parallel attn+mlp share input_layernorm", "multi-query", "linears without bias (bias=False)",
                  TIED]),
    Family("falcon_newarch", lm("FalconForCausalLM", "FalconConfig", hidden_size=D, num_hidden_layers=L,
                                num_attention_heads=H, num_kv_heads=1, new_decoder_architecture=True,
                                bias=False, max_position_embeddings=P),
           parallel=True, notes=["new_decoder_architecture: ln_attn and ln_mlp on the same stream",
                                 "linears without bias (bias=False)", TIED]),
    Family("gpt_bigcode", lm("GPTBigCodeForCausalLM", "GPTBigCodeConfig", n_embd=D, n_layer=L, n_head=H,
                             n_positions=P, multi_query=True), forms=ALL_FORMS,
           notes=["multi-query", "nn.Linear writers", TIED]),
    Family("biogpt", lm("BioGptForCausalLM", "BioGptConfig", hidden_size=D, num_hidden_layers=L,
                        num_attention_heads=H, intermediate_size=4 * D, max_position_embeddings=P),
           notes=["scaled embeddings (sqrt(d))", "learned positions with offset 2", TIED]),
    Family("xglm", lm("XGLMForCausalLM", "XGLMConfig", d_model=D, num_layers=L, attention_heads=H,
                      ffn_dim=4 * D, max_position_embeddings=P),
           notes=["scaled embeddings (sqrt(d))", "sinusoidal positions (constant buffer)", TIED]),
    Family("mpt", lm("MptForCausalLM", "MptConfig", d_model=D, n_layers=L, n_heads=H, max_seq_len=P,
                     no_bias=True), notes=["LN without bias", "linears without bias", "ALiBi", TIED]),
    Family("stablelm", lm("StableLmForCausalLM", "StableLmConfig", hidden_size=D, num_hidden_layers=L,
                          num_attention_heads=H, num_key_value_heads=H, intermediate_size=4 * D,
                          max_position_embeddings=P, partial_rotary_factor=0.25, use_qkv_bias=True),
           notes=["SwiGLU MLP", "partial rotary", "qkv bias, o_proj/MLP without bias"]),
    Family("vit", build_vit, kind="pixels", forms=ALL_FORMS, fp16=True, ort_type="vit",
           notes=["Conv2d patch embedding", "class token", "classifier on the CLS row of the final LN"]),
    Family("deit", build_deit, kind="pixels", forms=ALL_FORMS, ort_type="vit",
           notes=["Conv2d patch embedding", "class + distillation tokens", "two heads averaged"]),
    Family("clip_vision", build_clip_vision, kind="pixels", forms=ALL_FORMS, ort_type="clip",
           outputs=("pooler_output",),
           notes=["pre_layrnorm after the patch embedding (LN source)", "Conv2d patch embedding without bias",
                  "output = post_layernorm(CLS row): a LN output is the graph output", "quick_gelu"]),
    Family("whisper_encoder", build_whisper_encoder, kind="features", forms=ALL_FORMS, ort_type="bert",
           outputs=("last_hidden_state",), feature_shape=(WHISPER_MELS, WHISPER_FRAMES),
           notes=["Conv1d+GELU stem (stream source is not a linear op)",
                  "position table added whole (no Gather)", "output = final LN"]),
    Family("bert", build_bert, forms=ALL_FORMS, ort_type="bert", expect="refuse",
           why="Post-LN: every LayerNorm sits after the residual Add", outputs=("last_hidden_state",),
           notes=["Post-LN", "embedding LayerNorm"]),
    Family("llama", lm("LlamaForCausalLM", "LlamaConfig", hidden_size=D, num_hidden_layers=L,
                       num_attention_heads=H, num_key_value_heads=H, intermediate_size=4 * D,
                       max_position_embeddings=P), expect="refuse", why="already RMSNorm: nothing to rewrite",
           notes=["RMSNorm"]),
]


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------

def input_spec(fam, dtype):
    if fam.kind == "ids":
        return {"name": "input_ids", "dtype": "int64", "shape": [BATCH, SEQ], "vocab": V}
    fdt = "float16" if dtype == "fp16" else "float32"
    if fam.kind == "pixels":
        return {"name": "pixel_values", "dtype": fdt, "shape": [BATCH, 3, IMG, IMG], "vocab": None}
    return {"name": "input_features", "dtype": fdt, "shape": [BATCH, *fam.feature_shape], "vocab": None}


def make_input(spec, seed):
    g = torch.Generator().manual_seed(seed)
    if spec["dtype"] == "int64":
        return torch.randint(0, spec["vocab"], spec["shape"], generator=g)
    x = torch.randn(spec["shape"], generator=g)
    return x.half() if spec["dtype"] == "float16" else x


@contextlib.contextmanager
def quiet():
    """Silence the exporters, including what their C++ side prints straight to fd 1 and 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


@contextlib.contextmanager
def no_packed_sequence_detection():
    """transformers' causal-mask code looks for packed sequences with torch.diff on the position
    ids, which the TorchScript exporter cannot export (aten::diff); that path is for packed
    training batches only, so it is switched off for TorchScript exports."""
    orig = masking_utils.find_packed_sequence_indices
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = orig


def export_dynamo(model, x, path, in_name, out_names, kind):
    tries = []
    if kind == "ids":
        tries = [("batch,seq", {0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("seq", max=P)}),
                 ("seq", {1: torch.export.Dim("seq", max=P)})]
    else:
        tries = [("batch", {0: torch.export.Dim("batch", max=64)})]
    tries.append(("static", None))
    last = None
    for label, dyn in tries:
        try:
            with quiet():
                torch.onnx.export(model, (x,), path, dynamo=True, opset_version=18, input_names=[in_name],
                                  output_names=list(out_names), external_data=False,
                                  dynamic_shapes=None if dyn is None else (dyn,), verbose=False)
            return label, (None if dyn is None else last)
        except Exception as e:  # noqa: BLE001 - try the next, less dynamic form
            last = f"{label}: {type(e).__name__}: {one_line(e)}"
    raise RuntimeError(last)


def set_eager(model):
    """Switch the wrapped transformers model to eager attention; False if there is none."""
    for m in model.modules():
        if hasattr(m, "set_attn_implementation"):
            m.set_attn_implementation("eager")
            return True
    return False


def export_ts(model, x, path, in_name, out_names, kind, opset):
    axes = {in_name: {0: "batch"}}
    if kind == "ids":
        axes[in_name][1] = "seq"
    for o in out_names:
        axes[o] = {0: "batch", 1: "seq"} if kind == "ids" else {0: "batch"}
    def run():
        with no_packed_sequence_detection(), quiet():
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, input_names=[in_name],
                              output_names=list(out_names), dynamic_axes=axes, do_constant_folding=True)
    note = None
    try:
        run()
    except Exception as e:  # noqa: BLE001 - SDPA with GQA/MQA has no TorchScript symbolic: use eager
        if "scaled_dot_product_attention" not in str(e) or not set_eager(model):
            raise
        run()
        note = f"attn_implementation=eager (sdpa: {one_line(e)})"
    return ",".join(["batch", "seq"] if kind == "ids" else ["batch"]), note


def ort_fuse(src, dst, fam):
    """ts17 -> onnxruntime transformer optimizer. Tries opt_level 1 then 0 and keeps the first
    result that has SkipLayerNormalization."""
    from onnxruntime.transformers.optimizer import optimize_model
    tried = []
    types = list(dict.fromkeys([fam.ort_type, "bert", "gpt2"]))
    for mtype in types:
        for lvl in (1, 0):
            with quiet():
                m = optimize_model(src, model_type=mtype, num_heads=fam.heads, hidden_size=fam.d,
                                   opt_level=lvl, use_gpu=False)
            ops = Counter(n.op_type for n in m.model.graph.node)
            tried.append(f"{mtype}/{lvl}: {ops.get('SkipLayerNormalization', 0)}")
            if ops.get("SkipLayerNormalization", 0):
                m.save_model_to_file(dst)
                return f"model_type={mtype}, opt_level={lvl}"
    g = onnx.load(src).graph
    prod = {o: n for n in g.node for o in n.output}
    behind_reshape = sum(1 for n in g.node if n.op_type == "LayerNormalization" and n.input[0] in prod
                         and prod[n.input[0]].op_type == "Reshape" and prod[n.input[0]].input[0] in prod
                         and prod[prod[n.input[0]].input[0]].op_type == "Add")
    why = (f"; {behind_reshape} LNs read Reshape(residual Add), which the fusion does not match"
           if behind_reshape else "")
    raise RuntimeError("optimizer produced no SkipLayerNormalization (model_type/opt_level: count = "
                       + ", ".join(tried) + ")" + why)


# ----------------------------------------------------------------------------------------------
# Checks and graph facts
# ----------------------------------------------------------------------------------------------

def stamp(path, fam, form, dtype):
    """Model-level metadata, as a user's export would carry (a rewrite must keep it)."""
    m = onnx.load(path)
    for n in m.graph.node:     # the dynamo exporter's stack traces: local file paths, half the size
        keep = [(p.key, p.value) for p in n.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        if len(keep) != len(n.metadata_props):
            del n.metadata_props[:]
            for k, v in keep:
                n.metadata_props.add(key=k, value=v)
    del m.metadata_props[:]
    for k, v in (("source", "onnx-normopt testdata/generate.py: tiny random-weight model"),
                 ("family", fam.name), ("form", form), ("dtype", dtype), ("expect", fam.expect)):
        m.metadata_props.add(key=k, value=v)
    m.doc_string = f"{fam.name} ({form}, {dtype}): tiny transformer with random weights for onnx-normopt tests"
    onnx.save(m, path)


def one_line(e):
    s = str(e).strip().splitlines()
    s = [l for l in s if l.strip()]
    return (s[-1] if s else type(e).__name__)[:200]


def run_ort(path, x):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.numpy()})


def rel_err(ref, got):
    worst = 0.0
    if len(ref) != len(got):
        return float("inf")
    for r, o in zip(ref, got):
        r64, o64 = np.asarray(r, np.float64), np.asarray(o, np.float64)
        if r64.shape != o64.shape or not np.all(np.isfinite(o64)):
            return float("inf")
        worst = max(worst, float(np.abs(r64 - o64).max() / (np.abs(r64).max() + 1e-30)))
    return worst


def torch_ref(model, x):
    """fp32 reference. For fp16 models: the same (fp16-rounded) weights and input, run in fp32."""
    with torch.no_grad():
        m32 = model.float() if next(model.parameters()).dtype != torch.float32 else model
        out = m32(x.float() if x.is_floating_point() else x)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.float().numpy() for o in outs]


def graph_facts(path):
    m = onnx.load(path)
    g = m.graph
    ops = Counter(n.op_type for n in g.node)
    prod = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    decomposed = 0
    for n in g.node:
        if n.op_type == "Sub" and len(n.input) == 2:
            p = prod.get(n.input[1])
            if p is not None and p.op_type == "ReduceMean" and p.input[0] == n.input[0]:
                decomposed += 1
    ln = {k: ops[k] for k in ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
                              "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization",
                              "RMSNormalization") if ops.get(k)}
    if decomposed:
        ln["decomposed (ReduceMean->Sub)"] = decomposed
    # decomposed RMSNorm: ReduceMean(Pow(x, 2)) whose x is not a mean subtraction
    rms = 0
    for n in g.node:
        if n.op_type == "ReduceMean":
            p = prod.get(n.input[0])
            if p is not None and p.op_type == "Pow":
                q = prod.get(p.input[0])
                while q is not None and q.op_type == "Cast":
                    q = prod.get(q.input[0])
                if q is None or q.op_type != "Sub":
                    rms += 1
    if rms:
        ln["decomposed RMSNorm (Pow->ReduceMean)"] = rms
    # Tie: an initializer read as the data of an embedding Gather and as a weight of MatMul/Gemm.
    gather_tables = {n.input[0] for n in g.node if n.op_type == "Gather" and n.input[0] in inits
                     and len(inits[n.input[0]].dims) == 2}
    tied = sorted({i for n in g.node if n.op_type in ("MatMul", "Gemm") for i in n.input[:2]
                   if i in gather_tables})
    # Copies of an embedding table (the exporters' constant-folded transpose for an untied head)
    from onnx import numpy_helper
    arrays = {k: numpy_helper.to_array(t) for k, t in inits.items() if len(t.dims) == 2}
    copies = []
    for tname in sorted(gather_tables):
        tab = arrays[tname]
        for k, a in arrays.items():
            if k != tname and a.shape == tab.T.shape and np.array_equal(a, tab.T):
                copies.append(f"{k} = {tname}^T")
            elif k != tname and a.shape == tab.shape and np.array_equal(a, tab):
                copies.append(f"{k} = {tname}")
    try:
        onnx.checker.check_model(path, full_check=True)
        checker = True
    except Exception:  # noqa: BLE001 - recorded, not fatal (ortfused models use contrib ops)
        checker = False
    return {"ln_forms": ln, "tied_head": bool(tied), "tied_initializers": tied, "onnx_checker": checker,
            "table_copies": copies, "identity_nodes": ops.get("Identity", 0),
            "dropout_nodes": ops.get("Dropout", 0),
            "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
            "ops": dict(sorted(ops.items()))}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

def build_model(fam, dtype):
    torch.manual_seed(family_seed(fam.name))
    model = fam.build()
    randomize(model, fam.name, fam.default_norms)
    model.eval()
    if dtype == "fp16":
        model = model.half()
    return model


def generate(fam, log):
    entries, failures = [], []
    combos = [(form, "fp32") for form in fam.forms]
    if fam.fp16:
        combos += [(form, "fp16") for form in fam.fp16_forms]
    for form, dtype in combos:
        name = f"{fam.name}_{form}_{dtype}"
        path = os.path.join(MODELS, name + ".onnx")
        t0 = time.time()
        spec = input_spec(fam, dtype)
        x = make_input(spec, family_seed(fam.name) + 1)
        extra = {}
        try:
            model = build_model(fam, dtype)
            if form == "dynamo18":
                dyn, note = export_dynamo(model, x, path, spec["name"], fam.outputs, fam.kind)
                if note:
                    extra["dynamic_fallback"] = note
            elif form in ("ts14", "ts17"):
                if dtype == "fp16" and fam.fp16_eager:
                    set_eager(model)
                    extra["export_note"] = ("attn_implementation=eager: with SDPA the TorchScript exporter "
                                            "turns the boolean causal mask into a float32 bias and promotes "
                                            "the graph to float32 from the first attention on (gpt2_mixed)")
                dyn, note = export_ts(model, x, path, spec["name"], fam.outputs, fam.kind, int(form[2:]))
                if note:
                    extra["export_note"] = note
            elif form == "ortfused":
                src = os.path.join(MODELS, f"{fam.name}_ts17_{dtype}.onnx")
                if not os.path.exists(src):
                    raise RuntimeError("no ts17 export to fuse")
                extra["ort_optimizer"] = ort_fuse(src, path, fam)
                dyn = "batch,seq" if fam.kind == "ids" else "batch"
            else:
                raise ValueError(form)
            stamp(path, fam, form, dtype)
            ref = torch_ref(model, x)
            got = run_ort(path, x)
            err = rel_err(ref, got)
            if not err <= TOL[dtype]:
                raise RuntimeError(f"onnxruntime disagrees with PyTorch: rel err {err:.2e} > {TOL[dtype]:.0e}")
            # a second shape, to check the dynamic axes really are dynamic
            if dyn != "static":
                spec2 = dict(spec, shape=list(spec["shape"]))
                if "batch" in dyn:
                    spec2["shape"][0] = 3
                if "seq" in dyn:
                    spec2["shape"][1] = 5
                x2 = make_input(spec2, family_seed(fam.name) + 2)
                err2 = rel_err(torch_ref(model, x2), run_ort(path, x2))
                if not err2 <= TOL[dtype]:
                    raise RuntimeError(f"wrong on shape {spec2['shape']}: rel err {err2:.2e}")
            facts = graph_facts(path)
            if form == "ortfused" and not facts["ln_forms"].get("SkipLayerNormalization"):
                raise RuntimeError("no SkipLayerNormalization after optimization")
            notes = list(fam.notes)
            if facts["tied_head"]:
                notes.append("tie survives in ONNX: " + ", ".join(facts["tied_initializers"]))
            for c in facts["table_copies"]:
                notes.append(f"untied in ONNX: the head reads a constant-folded copy {c}")
            entry = {
                "file": f"models/{name}.onnx", "family": fam.name, "form": form, "dtype": dtype,
                "d": fam.d, "layers": fam.layers, "input": spec, "outputs": list(fam.outputs),
                "dynamic_axes": dyn, "expect": fam.expect, "why": fam.why, "parallel": fam.parallel,
                "notes": notes, "tol": TOL[dtype], "max_rel_err_vs_torch": float(f"{err:.3g}"),
                "tied_head": facts["tied_head"], "ln_forms": facts["ln_forms"],
                "onnx_checker_full": facts["onnx_checker"], "table_copies": facts["table_copies"],
                "identity_nodes": facts["identity_nodes"], "dropout_nodes": facts["dropout_nodes"],
                "opsets": facts["opsets"], "bytes": os.path.getsize(path),
            }
            entry.update(extra)
            entries.append(entry)
            log(f"  ok   {name:38s} {os.path.getsize(path) / 1024:7.1f} KiB  err {err:.1e}  "
                f"{facts['ln_forms']}  {'TIED ' if facts['tied_head'] else ''}{time.time() - t0:.1f}s")
        except Exception as e:  # noqa: BLE001 - record and go on
            if os.path.exists(path):
                os.remove(path)
            reason = f"{type(e).__name__}: {one_line(e)}"
            failures.append({"file": f"models/{name}.onnx", "family": fam.name, "form": form, "dtype": dtype,
                             "reason": reason})
            log(f"  FAIL {name:38s} {reason}")
            if os.environ.get("GENERATE_DEBUG"):
                traceback.print_exc()
    # ts17 is only kept if the family asked for it (it is also the ortfused source)
    return entries, failures


README = os.path.join(HERE, "README.md")
BEGIN, END = "<!-- generated:begin -->", "<!-- generated:end -->"


def write_readme_tables(entries, failures):
    """Refresh the generated part of README.md (between the markers) from the manifest."""
    if not os.path.exists(README):
        return
    text = open(README).read()
    if BEGIN not in text or END not in text:
        return
    fmt_ln = lambda d: ", ".join(f"{k} {v}" for k, v in d.items()) or "-"
    rows = ["| file | KiB | expect | parallel | LayerNorm forms in the graph | tied head | notes |",
            "| --- | ---: | --- | --- | --- | --- | --- |"]
    for e in entries:
        notes = "; ".join(e["notes"])
        if e.get("ort_optimizer"):
            notes += f"; ORT optimizer {e['ort_optimizer']}"
        rows.append(f"| `{os.path.basename(e['file'])}` | {e['bytes'] / 1024:.0f} | {e['expect']} | "
                    f"{'yes' if e['parallel'] else 'no'} | {fmt_ln(e['ln_forms'])} | "
                    f"{'yes' if e['tied_head'] else 'no'} | {notes} |")
    fails = ["| file | reason |", "| --- | --- |"]
    fails += [f"| `{os.path.basename(f['file'])}` | {f['reason'].replace('|', '/')} |" for f in failures]
    total = sum(e["bytes"] for e in entries)
    body = (f"\n{len(entries)} models, {total / 1e6:.1f} MB in total.\n\n" + "\n".join(rows)
            + "\n\n### Combinations that were not produced\n\n"
            + ("\n".join(fails) if failures else "None.") + "\n")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    open(README, "w").write(head + BEGIN + body + END + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help="only these families (default: all); manifest is merged")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for f in FAMILIES:
            print(f"{f.name:16s} {f.expect:8s} forms={','.join(f.forms)} fp16={f.fp16}")
        return 0
    known = {f.name for f in FAMILIES}
    unknown = [n for n in a.families if n not in known]
    if unknown:
        ap.error(f"unknown families {unknown}; --list shows them")
    chosen = [f for f in FAMILIES if not a.families or f.name in a.families]
    os.makedirs(MODELS, exist_ok=True)
    entries, failures = [], []
    if a.families and os.path.exists(MANIFEST):
        entries = [e for e in json.load(open(MANIFEST)) if e["family"] not in a.families]
    if a.families and os.path.exists(FAILURES):
        failures = [e for e in json.load(open(FAILURES)) if e["family"] not in a.families]
    if not a.families:
        for fn in os.listdir(MODELS):
            if fn.endswith(".onnx"):
                os.remove(os.path.join(MODELS, fn))
    t0 = time.time()

    def log(s):
        print(s, flush=True)

    for fam in chosen:
        log(f"{fam.name}")
        for fn in os.listdir(MODELS):
            if fn.startswith(fam.name + "_") and fn.endswith(".onnx") and \
                    fn[len(fam.name) + 1:].split("_")[0] in ("dynamo18", "ts14", "ts17", "ortfused"):
                os.remove(os.path.join(MODELS, fn))
        e, f = generate(fam, log)
        entries += e
        failures += f
    order = {f.name: i for i, f in enumerate(FAMILIES)}
    forms = {f: i for i, f in enumerate(ALL_FORMS)}
    key = lambda e: (order[e["family"]], e["dtype"] != "fp32", forms[e["form"]])
    entries.sort(key=key)
    failures.sort(key=key)
    with open(MANIFEST, "w") as fh:
        json.dump(entries, fh, indent=1)
        fh.write("\n")
    with open(FAILURES, "w") as fh:
        json.dump(failures, fh, indent=1)
        fh.write("\n")
    write_readme_tables(entries, failures)
    total = sum(e["bytes"] for e in entries)
    log(f"{len(entries)} models ({total / 1e6:.1f} MB), {len(failures)} failures, {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
