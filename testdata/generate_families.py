#!/usr/bin/env python3
# REQUIREMENTS (checked at start; a mismatch is a warning, not an error):
#   torch==2.15.0 transformers==5.23.0 onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2 numpy==2.4.6
#   python3 -m venv /work/venvs/testdata
#   /work/venvs/testdata/bin/pip install torch==2.15.0 transformers==5.23.0 onnx==1.23.2 \
#       onnxruntime==1.32.0 onnxscript==0.7.2 numpy==2.4.6
# REQUIREMENTS_OPTIMUM (the `vit_optimum_ort99` job only; optimum-onnx 0.1.0 needs
# transformers < 4.58, so it runs in a second environment, as testdata/generate_deployed.py does):
#   python3 -m venv /work/venvs/testdata-optimum
#   /work/venvs/testdata-optimum/bin/pip install optimum-onnx==0.1.0 optimum==2.1.0 torch==2.15.0 \
#       transformers==4.57.6 onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2 numpy==2.4.6
"""Regenerate the model families of issues #22 and #23 in testdata/families/ and its manifest.json.

Each family is a tiny Hugging Face `transformers` model built from a config object (no hub
download; hidden size 16-64, 1-2 blocks per stage), given non-trivial seeded weights (`randomize`:
LayerNorm γ ~ U(0.5, 1.5), β ~ N(0, 0.3), tables and stream sources with a shared row offset),
wrapped to take its real inputs and return one or two tensors, and exported by

  ts17      TorchScript exporter, opset 17 (LayerNormalization ops)
  ts14      TorchScript exporter, opset 14 (decomposed LayerNorm), where cheap
  dynamo18  torch.onnx.export(dynamo=True, opset_version=18)
  optimum_ort99   (vit only) optimum-onnx main_export, then onnxruntime.transformers.optimizer
            .optimize_model(opt_level=99): com.microsoft.nchwc ops (runs in the second venv)

with dynamic batch and, where the exporter keeps them dynamic (checked by running a second size),
image size / samples / sequence. Every file is run in onnxruntime (CPU, graph optimisations off)
against PyTorch at every size listed in the manifest (max|d|/max|ref| < 1e-4) before it is kept;
the per-node stack-trace metadata and the graph-level metadata_props of dynamo exports are
removed; every file gets model metadata_props source/family/form/expect. Deterministic: the same
bytes on a re-run with the same versions.

Usage (from the repository root):
    /work/venvs/testdata/bin/python testdata/generate_families.py              # everything
    /work/venvs/testdata/bin/python testdata/generate_families.py swin hiera   # these (manifest merged)
    /work/venvs/testdata/bin/python testdata/generate_families.py swin:ts17    # one form
    /work/venvs/testdata/bin/python testdata/generate_families.py --list
The vit_optimum job runs this script again with OPTIMUM_PYTHON (default
/work/venvs/testdata-optimum/bin/python) as `--optimum-worker`.
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
import subprocess
import sys
import tempfile
import traceback
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable

REQUIREMENTS = {"torch": "2.15.0", "transformers": "5.23.0", "onnx": "1.23.2",
                "onnxruntime": "1.32.0", "onnxscript": "0.7.2", "numpy": "2.4.6"}
REQUIREMENTS_OPTIMUM = {"optimum-onnx": "0.1.0", "optimum": "2.1.0", "torch": "2.15.0",
                        "transformers": "4.57.6", "onnx": "1.23.2", "onnxruntime": "1.32.0",
                        "onnxscript": "0.7.2", "numpy": "2.4.6"}

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "families")
MANIFEST = os.path.join(OUT, "manifest.json")
FAILURES = os.path.join(OUT, "failures.json")
SEED = 20230523
TOL = 1e-4
OPTIMUM_PYTHON = os.environ.get("OPTIMUM_PYTHON", "/work/venvs/testdata-optimum/bin/python")


def check_versions(req):
    bad = []
    for pkg, want in req.items():
        try:
            have = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            have = None
        if have is None or have.split("+")[0] != want:
            bad.append(f"{pkg} {have} (pinned {want})")
    if bad:
        print("WARNING: versions differ from the pins; exported graphs may differ: " + ", ".join(bad),
              file=sys.stderr)


check_versions(REQUIREMENTS_OPTIMUM if "--optimum-worker" in sys.argv else REQUIREMENTS)
warnings.filterwarnings("ignore")

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import transformers as T

T.logging.set_verbosity_error()
for _name in ("torch.onnx", "onnxscript", "onnx_ir", "torch.export", "torch._dynamo", "root"):
    logging.getLogger(_name).setLevel(logging.ERROR)
ort.set_default_logger_severity(3)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------

def family_seed(family):
    return SEED + zlib.crc32(family.encode()) % 100000


# Parameters (by last name component) that start a stream besides embedding tables: position
# tables, class / detection / mask tokens. They get the shared row offset.
SOURCE_PARAMS = ("position_embeddings", "position_embedding", "cls_token", "mask_token",
                 "detection_tokens", "class_embedding", "pos_embed")
# YOLOS' mid_position_embeddings (added to the stream before block 2) are not listed: they get
# N(0, 0.3), un-centred too.
# Patch-embedding convolutions (by module-name fragment): their bias gets the shared offset.
PATCH_CONVS = ("patch_embeddings.projection", "patch_embeddings.proj", "embeddings.projection",
               "patch_embedding", "embeddings.patch_embeddings")


@torch.no_grad()
def randomize(model, family):
    """Non-trivial seeded weights. Norm γ ~ U(0.5, 1.5), β ~ N(0, 0.3); layer-scale λ ~ U(0.5, 1.5);
    linear/conv weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1); embedding tables ~ N(0, 1) plus a
    row offset 2·z + 1 (z ~ N(0,1)^D) shared by every table, position table, class/detection token
    and patch-embedding Conv bias of that width D, so an un-centred stream is clearly off. Any other
    parameter (relative-position tables, probes, GRN) ~ N(0, 0.3)."""
    g = torch.Generator().manual_seed(family_seed(family))
    offsets = {}

    def offset(d):
        if d not in offsets:
            offsets[d] = 2.0 * torch.randn(d, generator=g) + 1.0
        return offsets[d]

    modules = dict(model.named_modules())
    done = set()
    for name, p in model.named_parameters():
        if id(p) in done:
            continue
        done.add(id(p))
        mname, _, leaf = name.rpartition(".")
        if leaf in ("original0", "original1"):          # weight_norm parametrization (Wav2Vec2)
            mname = mname.rsplit(".parametrizations", 1)[0]
        mod = modules.get(mname)
        kind = type(mod).__name__.lower() if mod is not None else ""
        if isinstance(mod, nn.Embedding):
            p.copy_(torch.randn(p.shape, generator=g) + offset(p.shape[-1]))
        elif "norm" in kind and p.dim() == 1 and leaf in ("weight", "bias"):
            if leaf == "weight":
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        elif leaf in SOURCE_PARAMS:
            p.copy_(torch.randn(p.shape, generator=g) + offset(p.shape[-1]))
        elif leaf == "original0":                       # weight_norm g
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)
        elif leaf in ("weight", "original1", "in_proj_weight") and p.dim() >= 2:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) * fan_in ** -0.5)
        elif leaf in ("bias", "in_proj_bias") and p.dim() == 1:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            if isinstance(mod, (nn.Conv2d, nn.Conv3d)) and any(k in mname for k in PATCH_CONVS):
                p.add_(offset(p.shape[0]))
        elif p.dim() == 1 and ("lambda" in leaf or "gamma" in leaf or "scale" in leaf):
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)
        else:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


# ----------------------------------------------------------------------------------------------
# Families
# ----------------------------------------------------------------------------------------------

class Wrap(nn.Module):
    """Call the model with keyword inputs and return the named output(s)."""

    def __init__(self, m, in_names, picks, extra=None):
        super().__init__()
        self.m, self.in_names, self.picks, self.extra = m, list(in_names), list(picks), extra

    def forward(self, *xs):
        kw = dict(zip(self.in_names, xs))
        if self.extra is not None:
            kw.update(self.extra(*xs))
        out = self.m(**kw)
        outs = tuple(getattr(out, p) for p in self.picks)
        return outs[0] if len(outs) == 1 else outs


@dataclass
class In:
    """One graph input: a shape of ints and dim names; ids (int64 below `vocab`) or float."""
    name: str
    shape: list
    vocab: int = 0


@dataclass
class Family:
    name: str
    issue: str
    source: str
    build: Callable
    inputs: list
    outputs: list
    dims: dict                     # dim name -> value at the first verification size
    sizes: list                    # further verification sizes: {dim: value} overrides
    tries: list                    # dynamic dim sets to try, most dynamic first
    mult: dict = field(default_factory=dict)   # dynamo: dim -> multiple (image sizes)
    dmin: dict = field(default_factory=dict)   # dynamo: dim -> minimum
    forms: tuple = ("ts17", "ts14", "dynamo18")
    layernorms: int = 0            # LayerNorms in the model (nn.LayerNorm and equivalents)
    expected: dict = field(default_factory=dict)   # target -> expected decision or None
    why: str = ""
    notes: list = field(default_factory=list)
    eager_dynamo: bool = False     # dynamo export with eager attention (SDPA fails to decompose)


def vision_in(c=3):
    return [In("pixel_values", ["batch", c, "height", "width"])]


VISION = dict(dims={"batch": 2, "height": 32, "width": 32},
              tries=[("batch", "height", "width"), ("batch",)], mult={"height": 8, "width": 8})


def build_swin():
    cfg = T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 2], num_heads=[2, 2],
                       window_size=4, mlp_ratio=2.0, num_labels=10)
    return Wrap(T.SwinForImageClassification(cfg), ["pixel_values"], ["logits"])


def build_hiera():
    cfg = T.HieraConfig(image_size=[32, 32], patch_size=[3, 3], patch_stride=[2, 2],
                        patch_padding=[1, 1], embed_dim=16, num_heads=[1, 2], depths=[1, 1],
                        query_stride=[2, 2], masked_unit_size=[4, 4], num_query_pool=1,
                        mlp_ratio=2.0, masked_unit_attention=[True, False])
    return Wrap(T.HieraModel(cfg), ["pixel_values"], ["pooler_output"])


def w2v_cfg(stable):
    return T.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2),
                            conv_kernel=(10, 3, 3), num_conv_pos_embeddings=8,
                            num_conv_pos_embedding_groups=4, do_stable_layer_norm=stable,
                            feat_extract_norm="layer" if stable else "group", vocab_size=16)


def build_w2v_stable():
    return Wrap(T.Wav2Vec2Model(w2v_cfg(True)), ["input_values"], ["last_hidden_state"])


def build_w2v_postln():
    return Wrap(T.Wav2Vec2Model(w2v_cfg(False)), ["input_values"], ["last_hidden_state"])


class MaeNoise(nn.Module):
    """ViTMAE masks tokens by argsort of random noise: here a fixed noise row (a permutation
    7·i mod 16), broadcast over the batch, so the export is deterministic and half of the 16
    patch tokens are really dropped (mask_ratio 0.5)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("row", torch.tensor([float((7 * i) % 16) for i in range(16)]))

    def forward(self, pixel_values):
        return {"noise": self.row.unsqueeze(0).expand(pixel_values.shape[0], 16)}


def build_vitmae():
    cfg = T.ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, image_size=32, patch_size=8, mask_ratio=0.5)
    return Wrap(T.ViTMAEModel(cfg), ["pixel_values"], ["last_hidden_state"], extra=MaeNoise())


def build_beit():
    cfg = T.BeitConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8, use_mean_pooling=True,
                       use_relative_position_bias=True, layer_scale_init_value=0.5, num_labels=10)
    return Wrap(T.BeitForImageClassification(cfg), ["pixel_values"], ["logits"])


def build_yolos():
    cfg = T.YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, image_size=[32, 32], patch_size=8,
                        num_detection_tokens=4, num_labels=3)
    return Wrap(T.YolosForObjectDetection(cfg), ["pixel_values"], ["logits", "pred_boxes"])


def build_siglip():
    cfg = T.SiglipVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, image_size=32, patch_size=8)
    return Wrap(T.SiglipVisionModel(cfg), ["pixel_values"], ["pooler_output"])


def build_xlmr_xl():
    cfg = T.XLMRobertaXLConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=66)
    return Wrap(T.XLMRobertaXLModel(cfg, add_pooling_layer=False), ["input_ids"],
                ["last_hidden_state"])


def build_mbart():
    cfg = T.MBartConfig(vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                        decoder_ffn_dim=64, max_position_embeddings=64, use_cache=False)
    return Wrap(T.MBartForConditionalGeneration(cfg), ["input_ids", "decoder_input_ids"], ["logits"])


def build_videomae():
    cfg = T.VideoMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, image_size=32, patch_size=8, num_frames=4,
                           tubelet_size=2, use_mean_pooling=True, num_labels=5)
    return Wrap(T.VideoMAEForVideoClassification(cfg), ["pixel_values"], ["logits"])


def build_convnextv2():
    cfg = T.ConvNextV2Config(num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[16, 32],
                             depths=[1, 1], image_size=32, num_labels=10)
    return Wrap(T.ConvNextV2ForImageClassification(cfg), ["pixel_values"], ["logits"])


def build_segformer():
    cfg = T.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                            hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
                            num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=32,
                            num_labels=3)
    return Wrap(T.SegformerForSemanticSegmentation(cfg), ["pixel_values"], ["logits"])


def build_pvt_v2():
    cfg = T.PvtV2Config(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                        hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
                        num_attention_heads=[1, 2], mlp_ratios=[2, 2], num_labels=10)
    return Wrap(T.PvtV2ForImageClassification(cfg), ["pixel_values"], ["logits"])


def build_git():
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, image_size=32, patch_size=8)
    cfg = T.GitConfig(vision_config=vision, vocab_size=96, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                      num_image_with_embedding=None)
    return Wrap(T.GitForCausalLM(cfg), ["pixel_values", "input_ids"], ["logits"],
                extra=lambda px, ids: {"use_cache": False})


def build_git_vision():
    cfg = T.GitVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, image_size=32, patch_size=8)
    return Wrap(T.GitVisionModel(cfg), ["pixel_values"], ["last_hidden_state"])


# The expected decisions. `rewrite`: stream norms that become RMSNorm (CRMSNorm); `left`: norms
# left as LayerNorm, each with the reason; `centering`: explicit centering nodes a correct
# analysis needs. None where the right decision is not settled (README says why).
def exp(rewrite, left, centering, why, left_why=""):
    return {"rewrite": rewrite, "left": left, "centering": centering, "why": why,
            "left_why": left_why}


FAMILIES = [
    Family("wav2vec2_stable", "#23, #20 (audio: dynamic samples, first Conv kernel 10)",
           "transformers Wav2Vec2Model(do_stable_layer_norm=True, feat_extract_norm='layer')",
           build_w2v_stable, [In("input_values", ["batch", "samples"])], ["last_hidden_state"],
           dims={"batch": 2, "samples": 400}, sizes=[{"batch": 3, "samples": 640}],
           tries=[("batch", "samples"), ("batch",)], dmin={"samples": 40}, layernorms=9),
    Family("wav2vec2_postln", "#23 (Post-LN: must be refused)",
           "transformers Wav2Vec2Model(do_stable_layer_norm=False, feat_extract_norm='group')",
           build_w2v_postln, [In("input_values", ["batch", "samples"])], ["last_hidden_state"],
           dims={"batch": 2, "samples": 400}, sizes=[{"batch": 3, "samples": 640}],
           tries=[("batch", "samples"), ("batch",)], dmin={"samples": 40}, layernorms=6),
    Family("swin", "#23 (patch merging)", "transformers SwinForImageClassification",
           build_swin, vision_in(), ["logits"], sizes=[{"batch": 3, "height": 64, "width": 48}],
           mult={"height": 16, "width": 16}, layernorms=9, eager_dynamo=True,
           notes=["dynamo18 with eager attention: with SDPA the exporter's decomposition fails "
                  "(Cannot view a tensor with shape [36, 16, 2, 8] ... as (36, 16, 16))"],
           **{k: v for k, v in VISION.items() if k not in ("mult",)}),
    Family("segformer", "#22 (hierarchical: K/V reduced by a strided Conv)",
           "transformers SegformerForSemanticSegmentation", build_segformer, vision_in(),
           ["logits"], sizes=[{"batch": 3, "height": 64, "width": 48}],
           mult={"height": 16, "width": 16}, layernorms=9,
           **{k: v for k, v in VISION.items() if k not in ("mult",)}),
    Family("pvt_v2", "#22 (hierarchical: K/V reduced by a strided Conv)",
           "transformers PvtV2ForImageClassification", build_pvt_v2, vision_in(), ["logits"],
           sizes=[{"batch": 3, "height": 64, "width": 48}], mult={"height": 16, "width": 16},
           layernorms=9, **{k: v for k, v in VISION.items() if k not in ("mult",)}),
    Family("hiera", "#23 (pooler: mean over tokens, then the final LN)", "transformers HieraModel",
           build_hiera, vision_in(), ["pooler_output"], sizes=[{"batch": 3}], layernorms=5,
           dims={"batch": 2, "height": 32, "width": 32}, tries=[("batch",)]),
    Family("vitmae", "#23 (TorchScript: rank unknown at a Shape reader)",
           "transformers ViTMAEModel(mask_ratio=0.5, fixed noise)", build_vitmae, vision_in(),
           ["last_hidden_state"], sizes=[{"batch": 3}], layernorms=5,
           dims={"batch": 2, "height": 32, "width": 32}, tries=[("batch",)]),
    Family("git_vision", "#22 (GIT's vision tower alone; the Tile is in the full model: git)",
           "transformers GitVisionModel", build_git_vision,
           vision_in(), ["last_hidden_state"], sizes=[{"batch": 3}], layernorms=6,
           dims={"batch": 2, "height": 32, "width": 32}, tries=[("batch",)]),
    Family("git", "#22 (dynamo: the image features are repeated by a Tile to the text batch)",
           "transformers GitForCausalLM (image + text)", build_git,
           [In("pixel_values", ["batch", 3, 32, 32]), In("input_ids", ["batch", "seq"], vocab=96)],
           ["logits"], dims={"batch": 2, "seq": 6}, sizes=[{"batch": 3, "seq": 5}],
           tries=[("batch", "seq"), ("batch",)], layernorms=12,
           why="not settled (README): the vision tower's 6 LNs are convertible (as git_vision, "
           "1 explicit centering); the text side is BERT-like Post-LN (its 2x2 block LNs are "
           "refused); the visual projection's LN (reads a Linear) and the text embedding LN "
           "(reads table Gathers) are one-norm streams whose outputs feed the refused Post-LN "
           "stream: exact either way, kept or rewritten by policy; whatever is rewritten, D-1 "
           "must never reach the Tile that repeats the image features"),
    Family("beit", "#23 (more families: layer scale, mean-pool then LN)",
           "transformers BeitForImageClassification(use_mean_pooling=True)", build_beit,
           vision_in(), ["logits"], sizes=[{"batch": 3}], layernorms=5, eager_dynamo=True,
           notes=["dynamo18 with eager attention: with SDPA the exporter's decomposition fails"],
           dims={"batch": 2, "height": 32, "width": 32}, tries=[("batch",)]),
    Family("yolos", "#23 (more families: detection tokens, two outputs)",
           "transformers YolosForObjectDetection", build_yolos, vision_in(),
           ["logits", "pred_boxes"], sizes=[{"batch": 3, "height": 48, "width": 40}],
           layernorms=5, **VISION),
    Family("siglip_vision", "#23 (more families: attention-pooling head with its own LN)",
           "transformers SiglipVisionModel", build_siglip, vision_in(), ["pooler_output"],
           sizes=[{"batch": 3}], layernorms=6, dims={"batch": 2, "height": 32, "width": 32},
           tries=[("batch",)]),
    Family("xlm_roberta_xl", "#23 (more families: Pre-LN text encoder)",
           "transformers XLMRobertaXLModel(add_pooling_layer=False)", build_xlmr_xl,
           [In("input_ids", ["batch", "seq"], vocab=96)], ["last_hidden_state"],
           dims={"batch": 2, "seq": 8}, sizes=[{"batch": 3, "seq": 5}],
           tries=[("batch", "seq"), ("batch",)], layernorms=5),
    Family("mbart", "#23 (more families: Pre-LN encoder-decoder)",
           "transformers MBartForConditionalGeneration", build_mbart,
           [In("input_ids", ["batch", "src_seq"], vocab=96),
            In("decoder_input_ids", ["batch", "tgt_seq"], vocab=96)], ["logits"],
           dims={"batch": 2, "src_seq": 8, "tgt_seq": 6},
           sizes=[{"batch": 3, "src_seq": 5, "tgt_seq": 7}],
           tries=[("batch", "src_seq", "tgt_seq"), ("batch",)], layernorms=14),
    Family("videomae", "#23 (more families: video tubelets, mean-pool then LN)",
           "transformers VideoMAEForVideoClassification(use_mean_pooling=True)", build_videomae,
           [In("pixel_values", ["batch", 4, 3, 32, 32])], ["logits"], dims={"batch": 2},
           sizes=[{"batch": 3}], tries=[("batch",)], layernorms=5),
    Family("convnextv2", "#23 (more families: a refusal, LN over channels of a depthwise Conv)",
           "transformers ConvNextV2ForImageClassification", build_convnextv2, vision_in(),
           ["logits"], sizes=[{"batch": 3, "height": 64, "width": 48}],
           mult={"height": 16, "width": 16}, layernorms=5,
           **{k: v for k, v in VISION.items() if k not in ("mult",)}),
]
BY_NAME = {f.name: f for f in FAMILIES}

# What a person reading the graph decides, per family (the same for every export of it). The
# counts are of LayerNorms: `rewrite` become RMSNorm (CRMSNorm), `left` stay LayerNorm (with
# `left_why`), `centering` explicit x - ReduceMean(x) nodes. A LayerNorm that reads a constant-
# weight Conv/Linear (a patch embedding and its LN) is a one-norm stream of its own: centre the
# Conv over its output channels and it is exact; its output then starts the next stream as a
# LayerNorm source, which needs one explicit centering (γ·x̂ + β is not centred).
EXPECTED = {
    "wav2vec2_stable": (
        exp(8, 1, 1,
            "3 conv-layer LNs (feat_extract_norm='layer': Conv -> Transpose -> LN over channels): "
            "centre each Conv, exact; encoder: the feature projection P is read raw by the "
            "positional Conv (P + GELU(Conv(P)) is the stream), so no weight change centres the "
            "stream: one explicit centering of that sum makes the 4 block LNs and the encoder's "
            "final LN exact (5 norms for 1 node)",
            "feature_projection.layer_norm reads GELU output (Transpose of the last conv layer): "
            "only an explicit centering would centre it, 1 node for 1 norm, no gain"),
        "same as rmsnorm"),
    "wav2vec2_postln": (
        exp(0, 6, 0, "Post-LN encoder: refuse all",
            "encoder.layer_norm and the 4 block LNs sit after residual Adds and their outputs are "
            "the residual stream (Post-LN); feature_projection.layer_norm reads GELU output "
            "(explicit centering, no gain); the first conv's GroupNorm is not a LayerNorm"),
        "same as rmsnorm"),
    "swin": (
        exp(6, 3, 0,
            "embeddings.norm reads the patch Conv (centre it: its own stream); stage 2: the "
            "merge's Linear (no bias) starts it (centre it), 4 Pre-LN norms and the final LN "
            "(read by the mean pool and the classifier)",
            "stage 1's 2 norms: patch merging concatenates 4 strided slices of the stage-1 "
            "stream along the hidden axis and normalises over 4C; each slice of the rewritten "
            "stream is centred on its own, and the join of centred parts is not the original "
            "join shifted by one value (the merge LN over 4C would see the differences of the "
            "parts' means: passes/tests/stream.rs, concat_along_the_hidden_axis_is_not_a_shift), "
            "so stage 1 stays; the merge LN then reads a stream of its own that only an explicit "
            "centering would centre, 1 node for 1 norm, no gain"),
        "same as rmsnorm (Shape readers that size other tensors keep D)"),
    "segformer": (
        exp(9, 0, 2,
            "per stage: the patch-embedding LN reads the overlapping patch Conv (centre it) and "
            "its output starts the stage's stream (one explicit centering per stage); block LNs "
            "are Pre-LN; the attention's sequence-reduction LN reads a strided Conv of the "
            "normalised value (centre that Conv); the stage's final LN is read by a Reshape to "
            "the image layout and the next stage's Conv / the decode head: all 9 convertible"),
        "same as rmsnorm; D-1 must never reach the Reshape/Transpose to [B, C, H, W] that "
        "sizes the stage output or the sequence-reduction input (they read normalised, "
        "decompressed values)"),
    "pvt_v2": (
        exp(9, 0, 2, "as SegFormer: per stage a patch-embedding LN (centre its Conv; its output "
            "is the stage's source: one explicit centering), Pre-LN blocks, the spatial-"
            "reduction LN after a strided Conv (centre it), the stage's final LN: all 9"),
        "same as rmsnorm; D-1 must not reach the reshape back to [B, C, H, W]"),
    "hiera": (
        exp(5, 0, 1,
            "stage 1: patch Conv + position table (centre both), 2 Pre-LN norms; the stage "
            "transition block reads the stream only through layernorm_before, and its residual "
            "is max-pool(proj(LN(x))): a max over tokens is not centred, so stage 2's stream "
            "needs one explicit centering; then layernorm_after and the pooler (mean over "
            "tokens keeps each token's channel centring, then the final LN): all 5"),
        "same as rmsnorm"),
    "vitmae": (
        exp(5, 0, 0,
            "patch Conv + position table (centre), tokens kept by a Gather/GatherElements along "
            "the token axis (keeps centring), class token (+ its position row) concatenated along "
            "the token axis; 4 Pre-LN norms and the final LN, whose output is the graph output"),
        "same as rmsnorm (the shortfall seen: rank unknown at a Shape reader)"),
    "git_vision": (
        exp(6, 0, 1,
            "CLIP-like: pre_layrnorm reads Conv (no bias) + class embedding + position table "
            "(centre all: exact) and its output starts the stream (one explicit centering); 4 "
            "Pre-LN norms; post_layernorm's output is the graph output"),
        "same as rmsnorm; D-1 must not reach the Tile/Expand of the class embedding"),
    "git": (None, None),
    "beit": (
        exp(5, 0, 0,
            "patch Conv + class token (centre); writers are λ·Linear (layer scale: fold λ into "
            "the Linear, then centre); 4 Pre-LN norms; the pooler takes the mean over the patch "
            "tokens (a Slice then a mean over tokens: keeps centring), then its LN: all 5"),
        "same as rmsnorm"),
    "yolos": (
        exp(5, 0, 0,
            "patch Conv + class and detection tokens + position table interpolated to the "
            "image size, and before block 2 the mid position table (use_mid_position_embeddings, "
            "the default), interpolated too: a Resize along the token grid is linear in the "
            "table rows and keeps each row's centring, so centring the tables is enough; 4 "
            "Pre-LN norms; the final LN is read by two MLP heads (Slice of the detection tokens, "
            "Linear): all 5"),
        "same as rmsnorm"),
    "siglip_vision": (
        exp(5, 1, 0,
            "patch Conv + position table (centre); 4 Pre-LN norms; post_layernorm is read by the "
            "attention-pooling head's key/value projections (linear)",
            "the head's LN: the head's own stream (attention output + MLP) is the graph output "
            "pooler_output (row 0), which observes its mean"),
        "same as rmsnorm"),
    "xlm_roberta_xl": (
        exp(5, 0, 0,
            "word + position + token-type tables (centre all; no embedding LN in XL); 4 Pre-LN "
            "norms; the encoder's final LN is the graph output"),
        "same as rmsnorm"),
    "mbart": (
        exp(14, 0, 2,
            "encoder and decoder each: layernorm_embedding reads a sum of two table Gathers "
            "(shared token table, learned positions: centre both, exact) and starts the stream "
            "(one explicit centering each); Pre-LN blocks (2x2 encoder, 2x3 decoder); the "
            "encoder's final LN is read by the cross-attention K/V projections, the decoder's "
            "by the head (untied copy of the shared table) and final_logits_bias"),
        "same as rmsnorm"),
    "videomae": (
        exp(5, 0, 0,
            "tubelet Conv3d + fixed sinusoidal position table (centre both); 4 Pre-LN norms; "
            "mean over tokens then fc_norm, read by the classifier: all 5"),
        "same as rmsnorm"),
    "convnextv2": (
        exp(1, 4, 0,
            "only the embeddings' channels-first LN, which reads the patch Conv (centre it: "
            "exact)",
            "each block's LN reads a depthwise Conv of the stream: its per-channel weights keep "
            "no centring (mean_c(w_c * x_c) != 0 for centred x), so the block LNs need one "
            "explicit centering each (no gain), and the depthwise Convs read the stage streams "
            "raw, so the downsampling LN and the final LN (after the spatial mean) cannot be "
            "made exact by weight changes either"),
        "same as rmsnorm"),
    "vit_optimum": (None, None),
}
for _f in FAMILIES:
    _r, _c = EXPECTED[_f.name]
    _f.expected = {"rmsnorm": _r,
                   "crmsnorm": dict(_r, why=_r["why"] + "; crmsnorm: " + _c) if _r else None}
    _f.why = _r["why"] if _r else _f.why


# ----------------------------------------------------------------------------------------------
# Export and check
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def quiet():
    """Silence the exporters, including what their C++ side prints straight to fd 1 and 2."""
    if os.environ.get("GENERATE_DEBUG"):
        yield
        return
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


def one_line(e):
    s = [l for l in str(e).strip().splitlines() if l.strip()]
    return (s[-1] if s else type(e).__name__)[:240]


def make_inputs(fam, over, seed):
    """The family's inputs at its first size with `over` applied: floats ~ N(0, 1), ids in
    [2, vocab)."""
    dims = dict(fam.dims, **over)
    g = torch.Generator().manual_seed(seed)
    xs = []
    for i in fam.inputs:
        shape = [dims[d] if isinstance(d, str) else d for d in i.shape]
        if i.vocab:
            xs.append(torch.randint(2, i.vocab, shape, generator=g))
        else:
            xs.append(torch.randn(shape, generator=g))
    return tuple(xs)


def export_ts(model, xs, path, fam, dyn, opset):
    axes = {i.name: {k: d for k, d in enumerate(i.shape) if d in dyn} for i in fam.inputs}
    with quiet():
        torch.onnx.export(model, xs, path, dynamo=False, opset_version=opset,
                          input_names=[i.name for i in fam.inputs], output_names=list(fam.outputs),
                          dynamic_axes=axes, do_constant_folding=True)


def export_dynamo(model, xs, path, fam, dyn):
    from torch.export import Dim
    dims = {}
    for d in dyn:
        m = fam.mult.get(d)
        if m:
            dims[d] = m * Dim(d + f"_{m}", min=max(1, fam.dmin.get(d, 2 * m) // m), max=1024 // m)
        else:
            dims[d] = Dim(d, min=fam.dmin.get(d, 1), max=4096 if d == "samples" else 64)
    # Wrap.forward takes *xs: the dynamic shapes are one tuple, one dict per input
    shapes = tuple({k: dims[d] for k, d in enumerate(i.shape) if d in dyn} or None
                   for i in fam.inputs)
    with quiet():
        prog = torch.onnx.export(model, xs, None, dynamo=True, opset_version=18,
                                 input_names=[i.name for i in fam.inputs],
                                 output_names=list(fam.outputs), dynamic_shapes=(shapes,) if dyn else None)
        prog.optimize()
    onnx.save(prog.model_proto, path)


def stamp(path, fam, form, expect):
    """Drop the per-node stack traces (local paths) and the graph-level metadata_props (the
    exported program's signature, in a varying order); set the model metadata."""
    m = onnx.load(path)
    for n in m.graph.node:
        keep = [(p.key, p.value) for p in n.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        if len(keep) != len(n.metadata_props):
            del n.metadata_props[:]
            for k, v in keep:
                n.metadata_props.add(key=k, value=v)
    del m.graph.metadata_props[:]
    del m.metadata_props[:]
    for k, v in (("source", "onnx-normopt testdata/generate_families.py: tiny random-weight "
                  + fam.source), ("family", fam.name), ("form", form), ("expect", expect)):
        m.metadata_props.add(key=k, value=v)
    m.doc_string = f"{fam.name} ({form}): tiny random-weight model for onnx-normopt tests"
    onnx.save(m, path)


def run_ort(path, names, xs):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {n: x.numpy() for n, x in zip(names, xs)})


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


def torch_ref(model, xs):
    with torch.no_grad():
        out = model(*xs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.float().numpy() for o in outs]


def count_layernorms(path):
    """LayerNormalization ops plus decomposed LayerNorms (Sub(x, ReduceMean(x)) whose square's
    mean is taken), any axis."""
    g = onnx.load(path).graph
    prod = {o: n for n in g.node for o in n.output}
    ops = Counter(n.op_type for n in g.node)
    dec = 0
    for n in g.node:
        if n.op_type == "Sub" and n.input[1] in prod and prod[n.input[1]].op_type == "ReduceMean" \
                and prod[n.input[1]].input[0] == n.input[0]:
            dec += 1
    forms = {}
    if ops.get("LayerNormalization"):
        forms["LayerNormalization"] = ops["LayerNormalization"]
    if dec:
        forms["decomposed (ReduceMean->Sub)"] = dec
    for k in ("SkipLayerNormalization", "GroupNormalization", "InstanceNormalization",
              "BatchNormalization", "SimplifiedLayerNormalization", "RMSNormalization"):
        if ops.get(k):
            forms[k] = ops[k]
    return ops.get("LayerNormalization", 0) + dec, forms, ops


def symbolic_inputs(path):
    m = onnx.load(path)
    out = []
    for i in m.graph.input:
        t = i.type.tensor_type
        out.append({"name": i.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(),
                    "shape": [d.dim_param or d.dim_value for d in t.shape.dim]})
    return out, [o.name for o in m.graph.output], {(o.domain or "ai.onnx"): o.version
                                                    for o in m.opset_import}


def expect_line(fam):
    parts = []
    for t in ("rmsnorm", "crmsnorm"):
        e = fam.expected.get(t)
        if e is None:
            parts.append(f"{t}: not settled")
        elif e["rewrite"] == 0:
            parts.append(f"{t}: refuse all {fam.layernorms}")
        else:
            parts.append(f"{t}: rewrite {e['rewrite']} of {fam.layernorms}"
                         + (f", {e['centering']} explicit centering" if e["centering"] else ""))
    return "; ".join(parts)


def generate(fam, only, log):
    entries, failures = [], []
    for form in fam.forms:
        if only and form not in only:
            continue
        name = f"{fam.name}_{form}.onnx"
        path = os.path.join(OUT, name)
        notes = []
        kept = None
        # the dynamo exporter may fail on any symbolic dim: a static export is the last resort
        for dyn in fam.tries + ([()] if form == "dynamo18" else []):
            torch.manual_seed(family_seed(fam.name))
            model = randomize(fam.build().eval(), fam.name)
            if form == "dynamo18" and fam.eager_dynamo:
                model.m.set_attn_implementation("eager")
            # dynamo: a non-square, non-default example, so that no two dims share a symbol
            over = {k: v for k, v in fam.sizes[-1].items() if k in dyn}
            xs = make_inputs(fam, over if form == "dynamo18" else {}, family_seed(fam.name) + 1)
            try:
                if form == "dynamo18":
                    export_dynamo(model, xs, path, fam, dyn)
                else:
                    export_ts(model, xs, path, fam, dyn, int(form[2:]))
                stamp(path, fam, form, expect_line(fam))
                sizes = [{}] + [s for s in fam.sizes
                                if all(k in dyn or s[k] == fam.dims[k] for k in s)]
                sizes = [dict(fam.dims, **s) for s in sizes]
                worst = 0.0
                for k, s in enumerate(sizes):
                    xs2 = make_inputs(fam, s, family_seed(fam.name) + 10 + k)
                    err = rel_err(torch_ref(model, xs2), run_ort(path, [i.name for i in fam.inputs], xs2))
                    if not err <= TOL:
                        raise RuntimeError(f"onnxruntime disagrees with PyTorch at {s}: {err:.2e}")
                    worst = max(worst, err)
                kept = (dyn, sizes, worst)
                break
            except Exception as e:  # noqa: BLE001 - try the next, less dynamic form
                notes.append(f"dynamic {','.join(dyn) or 'none'} not kept: {type(e).__name__}: {one_line(e)}")
                if os.environ.get("GENERATE_DEBUG"):
                    traceback.print_exc()
        if kept is None:
            if os.path.exists(path):
                os.remove(path)
            failures.append({"file": name, "family": fam.name, "form": form,
                             "reason": notes[-1] if notes else "?"})
            log(f"  FAIL {name:34s} {notes[-1] if notes else ''}")
            continue
        dyn, sizes, worst = kept
        entries.append(entry(fam, name, form, path, dyn, sizes, worst, notes))
        log(f"  ok   {name:34s} {os.path.getsize(path) / 1024:7.1f} KiB  err {worst:.1e}  "
            f"dyn {','.join(dyn) or 'static'}  {entries[-1]['ln_forms']}")
    return entries, failures


def entry(fam, name, form, path, dyn, sizes, worst, notes, exporter=None, opset=None):
    n_ln, forms, ops = count_layernorms(path)
    inputs, outputs, opsets = symbolic_inputs(path)
    spec = {i.name: i for i in fam.inputs}
    for i in inputs:
        # `dims`: the shape in the names `verify_at` uses (the exporters name dims their own way)
        i["dims"] = list(spec[i["name"]].shape) if i["name"] in spec else i["shape"]
        i["vocab"] = spec[i["name"]].vocab or None if i["name"] in spec else None
    return {
        "file": name, "family": fam.name, "issue": fam.issue, "source": fam.source,
        "form": form,
        "exporter": exporter or ("dynamo" if form.startswith("dynamo") else "torchscript"),
        "opset": opset or opsets.get("ai.onnx"), "inputs": inputs, "outputs": outputs,
        "dynamic": list(dyn), "verify_at": sizes,
        "layernorms": fam.layernorms, "layernorms_in_graph": n_ln, "ln_forms": forms,
        "expected": {t: fam.expected.get(t) for t in ("rmsnorm", "crmsnorm")},
        "why": fam.why, "notes": fam.notes + notes,
        "max_rel_err_vs_torch": float(f"{worst:.3g}"), "bytes": os.path.getsize(path),
        "opsets": opsets, "ops": dict(sorted(ops.items())),
    }


# ----------------------------------------------------------------------------------------------
# The Optimum + onnxruntime opt_level 99 job (second venv)
# ----------------------------------------------------------------------------------------------

VIT_OPT = Family("vit_optimum", "#22 (Optimum export, onnxruntime transformer optimizer "
                 "opt_level=99: com.microsoft.nchwc)",
                 "transformers ViTForImageClassification via optimum-onnx main_export "
                 "(image-classification) and onnxruntime.transformers.optimizer opt_level=99",
                 None, vision_in(), ["logits"], dims={"batch": 2, "height": 32, "width": 32},
                 sizes=[{"batch": 3}], tries=[("batch",)], forms=("optimum_ort99",),
                 layernorms=5, expected={"rmsnorm": None, "crmsnorm": None},
                 why="not settled (README): all 5 if the analysis has rules for the nchwc ops "
                 "(the patch Conv's blocked weights, ReorderInput/ReorderOutput); otherwise the "
                 "stream refused with a reason naming the nchwc node; never a rewrite that is off")


def optimum_worker(outdir):
    """Runs in the optimum venv: export a tiny ViT with optimum, optimise it at opt_level 99,
    check it against PyTorch, stamp it; print a JSON line with what the manifest needs."""
    from optimum.exporters.onnx import main_export
    from onnxruntime.transformers.optimizer import optimize_model
    fam = VIT_OPT
    torch.manual_seed(family_seed(fam.name))
    cfg = T.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, image_size=32, patch_size=8, num_labels=10)
    vit = randomize(T.ViTForImageClassification(cfg).eval(), fam.name)
    with tempfile.TemporaryDirectory() as tmp:
        src, exp_dir = os.path.join(tmp, "src"), os.path.join(tmp, "onnx")
        vit.save_pretrained(src)
        with quiet():
            main_export(src, exp_dir, task="image-classification", device="cpu")
            opt = optimize_model(os.path.join(exp_dir, "model.onnx"), model_type="vit",
                                 num_heads=2, hidden_size=32, opt_level=99, use_gpu=False)
        path = os.path.join(outdir, "vit_optimum_ort99.onnx")
        opt.save_model_to_file(path)
    model = Wrap(vit, ["pixel_values"], ["logits"])
    stamp(path, fam, "optimum_ort99", expect_line(fam))
    m = onnx.load(path)
    names = [i.name for i in m.graph.input]
    worst, sizes = 0.0, []
    for k, s in enumerate([{}] + fam.sizes):
        xs = make_inputs(fam, s, family_seed(fam.name) + 10 + k)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        got = sess.run(None, {names[0]: xs[0].numpy()})
        err = rel_err(torch_ref(model, xs), got[:1])
        if not err <= TOL:
            raise RuntimeError(f"onnxruntime disagrees with PyTorch at {s}: {err:.2e}")
        worst = max(worst, err)
        sizes.append(dict(fam.dims, **s))
    print("RESULT " + json.dumps({"sizes": sizes, "worst": worst}))


def optimum_job(log):
    fam = VIT_OPT
    name = "vit_optimum_ort99.onnx"
    path = os.path.join(OUT, name)
    r = subprocess.run([OPTIMUM_PYTHON, os.path.abspath(__file__), "--optimum-worker", OUT],
                       capture_output=True, text=True)
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    if r.returncode != 0 or not line:
        reason = one_line(r.stderr or r.stdout or f"exit {r.returncode}")
        log(f"  FAIL {name:34s} {reason}")
        return [], [{"file": name, "family": fam.name, "form": "optimum_ort99", "reason": reason}]
    res = json.loads(line[0][len("RESULT "):])
    e = entry(fam, name, "optimum_ort99", path, ("batch",), res["sizes"], res["worst"], [],
              exporter="optimum-onnx 0.1.0 + onnxruntime transformer optimizer opt_level=99")
    log(f"  ok   {name:34s} {e['bytes'] / 1024:7.1f} KiB  err {res['worst']:.1e}  {e['ln_forms']}")
    return [e], []


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("only", nargs="*", help="family or family:form[,form] (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--optimum-worker", metavar="OUTDIR")
    a = ap.parse_args()
    if a.optimum_worker:
        optimum_worker(a.optimum_worker)
        return
    if a.list:
        for f in FAMILIES + [VIT_OPT]:
            print(f"{f.name:18s} {','.join(f.forms):24s} {f.issue}")
        return
    os.makedirs(OUT, exist_ok=True)
    want = {}
    for s in a.only or [f.name for f in FAMILIES] + [VIT_OPT.name]:
        fam, _, forms = s.partition(":")
        if fam not in BY_NAME and fam != VIT_OPT.name:
            sys.exit(f"unknown family {fam}; --list shows them")
        want[fam] = set(forms.split(",")) if forms else None
    manifest = json.load(open(MANIFEST)) if os.path.exists(MANIFEST) else []
    failures = json.load(open(FAILURES)) if os.path.exists(FAILURES) else []
    log = lambda s: print(s, flush=True)
    for fam_name, forms in want.items():
        log(fam_name)
        if fam_name == VIT_OPT.name:
            made, failed = optimum_job(log)
        else:
            made, failed = generate(BY_NAME[fam_name], forms, log)
        redone = {e["file"] for e in made} | {f["file"] for f in failed}
        manifest = [e for e in manifest if e["file"] not in redone] + made
        failures = [f for f in failures if f["file"] not in redone] + failed
    order = {f.name: k for k, f in enumerate(FAMILIES + [VIT_OPT])}
    key = lambda e: (order.get(e["family"], 99), e["file"])
    manifest.sort(key=key)
    failures.sort(key=key)
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    with open(FAILURES, "w") as f:
        json.dump(failures, f, indent=1)
        f.write("\n")
    log(f"{len(manifest)} files in the manifest, {len(failures)} failures")


if __name__ == "__main__":
    main()
