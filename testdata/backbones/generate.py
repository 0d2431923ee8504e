"""Tiny pretrained-backbone forms for issue #14, exported from Hugging Face `transformers`
classes built from config objects (random weights, nothing downloaded):

- `dinov2_ts14.onnx`, `dinov2_ts17.onnx`: `Dinov2Model` (LayerScale λ on every residual branch,
  position embeddings interpolated inside the graph), TorchScript exporter at opset 14 / 17,
  dynamic batch, height and width; output the last hidden state.
- `vit_interp_ts14.onnx`, `vit_interp_ts17.onnx`: `ViTModel` called with
  `interpolate_pos_encoding=True`, dynamic height and width; output the last hidden state.

- `depth_anything_ts14.onnx`, `depth_anything_ts17.onnx`: `DepthAnythingForDepthEstimation`
  (Dinov2 backbone config, 4 layers, 4 out stages each read by the backbone's LayerNorm, DPT
  neck and depth head), dynamic batch, 32×32 images (the tracer freezes the head's output size,
  computed with int()); output the predicted depth.
- `cait_ts14.onnx`, `cait_ts17.onnx`: timm `cait_xxs24_224` architecture with tiny dims
  (LayerScale γ on every branch, talking-heads attention, 2 class-attention blocks reading
  `Concat(cls, patches)`), fixed 32×32; output the logits.
- `deit3_ts14.onnx`, `deit3_ts17.onnx`: timm `deit3_small_patch16_224` architecture with tiny
  dims (LayerScale `ls1`/`ls2`, position table without the class row); output the logits.
- `dinov2_dynamo18.onnx`, `vit_interp_dynamo18.onnx`, `deit3_dynamo18.onnx`,
  `cait_dynamo18.onnx`, `depth_anything_dynamo18.onnx`: the dynamo exporter (`dynamo=True`,
  opset 18), DINOv2 and the interpolating ViT with dynamic height and width, the others at a
  fixed 32×32 (DepthAnything exported with dynamic height and width runs at other sizes but
  returns the example's depth-map size).

Every file is run in onnxruntime against PyTorch (relative error in manifest.json, at every
size listed there), and `manifest.json` records what the rewrite must do with it.

Run with torch, transformers and timm (pinned in REQUIREMENTS), onnx and onnxruntime:
    python3 testdata/backbones/generate.py                  # every model
    python3 testdata/backbones/generate.py cait deit3       # only these groups (manifest merged)
    python3 testdata/backbones/generate.py dinov2:dynamo    # only the group's dynamo export
    python3 testdata/backbones/generate.py vit:ts14 cait:ts17,dynamo   # single exports
Weights: seeded; LayerNorm γ ~ U(0.5, 1.5), β ~ N(0, 0.3); λ ~ U(0.5, 1.5); position embeddings,
class token and patch-embedding bias get a shared row offset so an un-centred stream is off.
"""
import os, sys
import numpy as np
import torch
import transformers
from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

REQUIREMENTS = {"torch": "2.15", "transformers": "4.57", "timm": "1.0.31", "onnx": "1.23",
                "onnxruntime": "1.32", "onnxscript": "0.7.2"}
OUT = os.path.dirname(os.path.abspath(__file__))


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    offset = None
    with torch.no_grad():
        for name, p in model.named_parameters():
            parent = name.split(".")[-2] if "." in name else ""
            if "layernorm" in name.lower() or "norm" in parent.lower():
                if name.endswith("weight"):
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif "lambda" in name or "gamma" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith("weight") and p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            if any(k in name for k in ("position_embeddings", "cls_token", "mask_token",
                                       "pos_embed")) or (
                "patch_embeddings.projection.bias" in name or "patch_embed.proj.bias" in name
            ):
                d = p.shape[-1]
                if offset is None or offset.shape[-1] != d:
                    offset = 2 * torch.randn(d, generator=g) + 1
                if name.endswith("proj.bias") or "projection.bias" in name:
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


def pixels(size, seed=7):
    h, w = size
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def check_ort(module, path, sizes):
    """Run the file in onnxruntime (graph optimisations off) against PyTorch at every size;
    returns the worst max|Δ|/max|ref|."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    worst = 0.0
    for k, size in enumerate(sizes):
        x = pixels(size, 11 + k)
        with torch.no_grad():
            ref = module(x).numpy()
        got = sess.run(None, {"pixel_values": x.numpy()})[0]
        assert got.shape == ref.shape, (path, size, got.shape, ref.shape)
        worst = max(worst, float(np.abs(got - ref).max() / np.abs(ref).max()))
    assert worst < 1e-4, (path, worst)
    return worst


def export(module, name, opset, sizes, dynamic_hw=True, dynamo=False):
    x = pixels(sizes[0])
    path = os.path.join(OUT, name)
    if dynamo:
        # a non-square example: with equal height and width (duck sizing) the exporter gives
        # both one symbol, and the file then fails on non-square inputs
        x = pixels(sizes[-1]) if dynamic_hw else x
        from torch.export import Dim
        shapes = {"pixel_values": {0: Dim("batch", min=1, max=64)}}
        if dynamic_hw:
            # multiples of the patch size (8): the patch grid is then exact
            shapes["pixel_values"][2] = 8 * Dim("h8", min=2, max=32)
            shapes["pixel_values"][3] = 8 * Dim("w8", min=2, max=32)
        prog = torch.onnx.export(module, (x,), None, dynamo=True, opset_version=opset,
                                 input_names=["pixel_values"], output_names=["out"],
                                 dynamic_shapes=shapes)
        prog.optimize()
        model = prog.model_proto
        # the per-node stack traces hold local paths: drop them (as testdata/generate.py does)
        for n in model.graph.node:
            keep = [p for p in n.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
            del n.metadata_props[:]
            n.metadata_props.extend(keep)
        # the exported program's signature and range constraints (in a varying order): not
        # needed, and the file is then the same bytes on a re-run
        del model.graph.metadata_props[:]
        import onnx
        onnx.save(model, path)
    else:
        axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
        torch.onnx.export(
            module, (x,), path, opset_version=opset, dynamo=False,
            input_names=["pixel_values"], output_names=["out"],
            dynamic_axes={"pixel_values": axes},
        )
    err = check_ort(module, path, sizes if dynamic_hw else sizes[:1])
    print("wrote", path, os.path.getsize(path), f"rel err {err:.1e}")
    return err


def entry(name, source, exporter, opset, sizes, norms, says, err, dynamic_hw=True, notes=""):
    dims = [{"batch": 2, "height": h, "width": w} for (h, w) in (sizes if dynamic_hw
                                                                  else sizes[:1])]
    return {"file": name, "source": source, "exporter": exporter, "opset": opset,
            "expect": "rewrite", "norms": norms, "centering": 0, "says": says,
            "dims": dims, "max_rel_err_vs_torch": float(f"{err:.3g}"), "notes": notes}


SIZES = [(32, 32), (48, 40)]
COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64, image_size=32, patch_size=8, num_channels=3)


def want(only, tag):
    """`only`: the export tags asked for on the command line (`group:ts14`, `group:dynamo`),
    None for all of the group's exports."""
    return only is None or tag in only


def dinov2(only=None):
    d = Dinov2Model(Dinov2Config(**COMMON, layerscale_value=1.0)).eval()
    randomize(d, 1)
    out = []
    says = ["LayerScale folded", "Resize"]
    for opset in (14, 17):
        if want(only, f"ts{opset}"):
            err = export(Hidden(d), f"dinov2_ts{opset}.onnx", opset, SIZES)
            out.append(entry(f"dinov2_ts{opset}.onnx", "transformers Dinov2Model",
                             "torchscript", opset, SIZES, 5, says, err))
    if want(only, "dynamo"):
        err = export(Hidden(d), "dinov2_dynamo18.onnx", 18, SIZES, dynamo=True)
        out.append(entry("dinov2_dynamo18.onnx", "transformers Dinov2Model", "dynamo", 18,
                         SIZES, 5, says, err))
    return out


def vit(only=None):
    v = ViTModel(ViTConfig(**COMMON)).eval()
    randomize(v, 2)
    out = []
    for opset in (14, 17):
        if want(only, f"ts{opset}"):
            name = f"vit_interp_ts{opset}.onnx"
            err = export(Hidden(v, interpolate=True, pooled=False), name, opset, SIZES)
            out.append(entry(name, "transformers ViTModel(interpolate_pos_encoding=True)",
                             "torchscript", opset, SIZES, 5, ["Resize"], err))
    if want(only, "dynamo"):
        err = export(Hidden(v, interpolate=True, pooled=False), "vit_interp_dynamo18.onnx", 18,
                     SIZES, dynamo=True)
        out.append(entry("vit_interp_dynamo18.onnx", "transformers ViTModel(interpolate_pos_"
                         "encoding=True)", "dynamo", 18, SIZES, 5, ["Resize"], err))
    return out


def depth_anything(only=None):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation
    bb = Dinov2Config(**dict(COMMON, num_hidden_layers=4), layerscale_value=1.0,
                      out_features=["stage1", "stage2", "stage3", "stage4"],
                      reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=bb, patch_size=8, reassemble_hidden_size=32,
                              neck_hidden_sizes=[8, 16, 24, 32], fusion_hidden_size=16,
                              head_hidden_size=8)
    m = DepthAnythingForDepthEstimation(cfg).eval()
    randomize(m, 3)

    class Depth(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).predicted_depth

    out = []
    src = "transformers DepthAnythingForDepthEstimation (Dinov2 backbone)"
    # 4 blocks × 2 LayerNorms + the backbone LayerNorm on each of the 4 out stages
    for opset in (14, 17):
        if not want(only, f"ts{opset}"):
            continue
        name = f"depth_anything_ts{opset}.onnx"
        err = export(Depth(m), name, opset, SIZES, dynamic_hw=False)
        out.append(entry(name, "transformers DepthAnythingForDepthEstimation (Dinov2 backbone)",
                         "torchscript", opset, SIZES, 12, ["LayerScale folded"], err,
                         dynamic_hw=False,
                         notes="the backbone LayerNorm reads 4 stream values (stage1..4); "
                         "fixed 32x32: the tracer freezes the head's output size (int())"))
    if want(only, "dynamo"):
        name = "depth_anything_dynamo18.onnx"
        # fixed 32x32 here too: exported with dynamic height and width (example 48x40), the
        # file runs at 32x32 but returns a 48x40 depth map (the head's size is frozen)
        err = export(Depth(m), name, 18, SIZES, dynamic_hw=False, dynamo=True)
        out.append(entry(name, src, "dynamo", 18, SIZES, 12, ["LayerScale folded"], err,
                         dynamic_hw=False,
                         notes="the backbone LayerNorm reads 4 stream values (stage1..4); "
                         "fixed 32x32: exported with dynamic HxW, the head's output size "
                         "stays the example's"))
    return out


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values)


def timm_model(arch, seed):
    import timm
    m = timm.create_model(arch, pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                          depth=2, num_heads=2, num_classes=10).eval()
    randomize(m, seed)
    return Logits(m)


def cait(only=None):
    m = timm_model("cait_xxs24_224", 4)
    out = []
    # 2 self-attention blocks × 2, 2 class-attention blocks × 2, the final norm
    for opset in (14, 17):
        if not want(only, f"ts{opset}"):
            continue
        name = f"cait_ts{opset}.onnx"
        err = export(m, name, opset, SIZES, dynamic_hw=False)
        out.append(entry(name, "timm cait_xxs24_224 architecture, tiny dims", "torchscript",
                         opset, SIZES, 9, ["LayerScale folded"], err, dynamic_hw=False,
                         notes="class-attention blocks read Concat(cls, patches)"))
    if want(only, "dynamo"):
        name = "cait_dynamo18.onnx"
        err = export(m, name, 18, SIZES, dynamic_hw=False, dynamo=True)
        out.append(entry(name, "timm cait_xxs24_224 architecture, tiny dims", "dynamo", 18,
                         SIZES, 9, ["LayerScale folded"], err, dynamic_hw=False,
                         notes="class-attention blocks read Concat(cls, patches)"))
    return out


def deit3(only=None):
    m = timm_model("deit3_small_patch16_224", 5)
    out = []
    says = ["LayerScale folded"]
    src = "timm deit3_small_patch16_224 architecture, tiny dims"
    for opset in (14, 17):
        if want(only, f"ts{opset}"):
            name = f"deit3_ts{opset}.onnx"
            err = export(m, name, opset, SIZES, dynamic_hw=False)
            out.append(entry(name, src, "torchscript", opset, SIZES, 5, says, err,
                             dynamic_hw=False))
    if want(only, "dynamo"):
        err = export(m, "deit3_dynamo18.onnx", 18, SIZES, dynamic_hw=False, dynamo=True)
        out.append(entry("deit3_dynamo18.onnx", src, "dynamo", 18, SIZES, 5, says, err,
                         dynamic_hw=False))
    return out


GROUPS = {"dinov2": dinov2, "vit": vit, "depth_anything": depth_anything, "cait": cait,
          "deit3": deit3}


def main():
    import importlib
    for k, v in REQUIREMENTS.items():
        try:
            have = importlib.import_module(k).__version__
        except ImportError:
            have = "missing"
        if not have.startswith(v):
            print(f"warning: {k} {have}, pinned {v}", file=sys.stderr)
    import json
    args = sys.argv[1:]
    groups = args or list(GROUPS)
    mpath = os.path.join(OUT, "manifest.json")
    manifest = json.load(open(mpath)) if os.path.exists(mpath) else []
    for g in groups:
        torch.manual_seed(0)
        group, _, tags = g.partition(":")
        made = GROUPS[group](only=set(tags.split(",")) if tags else None)
        names = {e["file"] for e in made}
        manifest = [e for e in manifest if e["file"] not in names] + made
    manifest.sort(key=lambda e: e["file"])
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
