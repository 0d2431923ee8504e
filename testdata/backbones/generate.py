"""Tiny pretrained-backbone forms for issue #14, exported from Hugging Face `transformers`
classes built from config objects (random weights, nothing downloaded):

- `dinov2_ts14.onnx`, `dinov2_ts17.onnx`: `Dinov2Model` (LayerScale λ on every residual branch,
  position embeddings interpolated inside the graph), TorchScript exporter at opset 14 / 17,
  dynamic batch, height and width; output the last hidden state.
- `vit_interp_ts17.onnx`: `ViTModel` called with `interpolate_pos_encoding=True`, dynamic
  height and width; output the pooler output.

Run with torch and transformers (pinned in REQUIREMENTS) and onnx:
    python3 testdata/backbones/generate.py
Weights: seeded; LayerNorm γ ~ U(0.5, 1.5), β ~ N(0, 0.3); λ ~ U(0.5, 1.5); position embeddings,
class token and patch-embedding bias get a shared row offset so an un-centred stream is off.
"""
import os, sys
import numpy as np
import torch
import transformers
from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

REQUIREMENTS = {"torch": "2.15", "transformers": "4.57"}
OUT = os.path.dirname(os.path.abspath(__file__))


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    offset = None
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name.lower() or "norm" in name.split(".")[-2].lower():
                if name.endswith("weight"):
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif "lambda" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith("weight") and p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            if any(k in name for k in ("position_embeddings", "cls_token", "mask_token")) or (
                "patch_embeddings.projection.bias" in name
            ):
                d = p.shape[-1]
                if offset is None or offset.shape[-1] != d:
                    offset = 2 * torch.randn(d, generator=g) + 1
                if "projection.bias" in name:
                    p.add_(offset)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) + offset)


class Hidden(torch.nn.Module):
    def __init__(self, m, interpolate=False, pooled=False):
        super().__init__()
        self.m, self.interpolate, self.pooled = m, interpolate, pooled

    def forward(self, pixel_values):
        kw = {"interpolate_pos_encoding": True} if self.interpolate else {}
        out = self.m(pixel_values=pixel_values, **kw)
        return out.pooler_output if self.pooled else out.last_hidden_state


def export(module, name, opset, size):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7))
    path = os.path.join(OUT, name)
    torch.onnx.export(
        module, (x,), path, opset_version=opset, dynamo=False,
        input_names=["pixel_values"], output_names=["out"],
        dynamic_axes={"pixel_values": {0: "batch", 2: "height", 3: "width"}},
    )
    print("wrote", path, os.path.getsize(path))


def main():
    for k, v in REQUIREMENTS.items():
        have = {"torch": torch.__version__, "transformers": transformers.__version__}[k]
        if not have.startswith(v):
            print(f"warning: {k} {have}, pinned {v}", file=sys.stderr)
    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, image_size=32, patch_size=8, num_channels=3)
    d = Dinov2Model(Dinov2Config(**common, layerscale_value=1.0)).eval()
    randomize(d, 1)
    for opset in (14, 17):
        export(Hidden(d), f"dinov2_ts{opset}.onnx", opset, 32)
    v = ViTModel(ViTConfig(**common)).eval()
    randomize(v, 2)
    export(Hidden(v, interpolate=True, pooled=False), "vit_interp_ts17.onnx", 17, 32)


if __name__ == "__main__":
    main()
