"""onnxruntime-genai model-builder outputs for issue #20: the form in which LLMs ship for
onnxruntime today (`com.microsoft:GroupQueryAttention` with packed QKV, a `kv_cache_dim` head-size
dim, an attention mask over `total_sequence_length`, `SkipLayerNormalization`, `MatMulNBits` for
int4), built from tiny random Hugging Face models (hidden size 64, 2 layers, 2 heads of
32: onnxruntime's rotary embedding needs a rotary half-width that is a multiple of 8) saved with `save_pretrained` (nothing is
downloaded from a model hub):

- `phi_{fp32,fp16,int4}/`: `PhiForCausalLM` (Phi-2 style: parallel attention and MLP blocks
  reading one LayerNorm, partial rotary embedding).
- `nemotron_{fp32,fp16,int4}/`: `NemotronForCausalLM` (LayerNorm1P: the norm multiplies by
  γ + 1; grouped-query attention with 1 KV head for 2 query heads).

Each folder is what `python -m onnxruntime_genai.models.builder -i HF_DIR -o OUT -p PRECISION
-e cpu` writes (`model.onnx` with its weights in `model.onnx.data`, `genai_config.json`, the
tokenizer files). int4 is the builder's CPU default: `MatMulNBits` with `accuracy_level=4`, which
quantises the activations to int8 inside the op. The Hugging Face folders themselves are not kept.

Run with the versions in REQUIREMENTS (a mismatch is an error):
    python3 testdata/genai/generate.py            # every model
    python3 testdata/genai/generate.py phi        # one family

Weights (seed per family): LayerNorm γ ~ U(0.5, 1.5) (Nemotron's stored γ ~ U(−0.5, 0.5), the
norm adds 1), β ~ N(0, 0.3); linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1); the token table
~ N(0, 1) plus a shared row offset 2·z + 1, so an un-centred stream is clearly off.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

REQUIREMENTS = {"onnxruntime-genai": "0.18.0", "onnxruntime": "1.32.0", "torch": "2.15.0",
                "transformers": "5.23.0", "onnx": "1.23.2", "onnx-ir": "1.1.0",
                "tokenizers": "0.23.3", "numpy": "2.4.6"}
OUT = os.path.dirname(os.path.abspath(__file__))
PRECISIONS = ["fp32", "fp16", "int4"]
VOCAB = 96


def check_versions():
    from importlib.metadata import version
    bad = [f"{p}=={v} (have {version(p)})" for p, v in REQUIREMENTS.items() if version(p) != v]
    if bad:
        sys.exit("generate.py needs " + ", ".join(bad))


def tokenizer(folder):
    """A word-level tokenizer over VOCAB made-up words, saved beside the model (the builder
    copies it; the Generator check feeds token ids, never text)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = {"<|endoftext|>": 0, "<unk>": 1}
    words.update({f"w{i}": i for i in range(2, VOCAB)})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", unk_token="<unk>")
    fast.save_pretrained(folder)


def randomize(model, seed, one_plus):
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                if name.endswith("weight"):
                    p.copy_(torch.rand(p.shape, generator=g) + (-0.5 if one_plus else 0.5))
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif "embed_tokens" in name:
                offset = 2 * torch.randn(p.shape[-1], generator=g) + 1
                p.copy_(torch.randn(p.shape, generator=g) + offset)
            elif name.endswith("weight") and p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def hf_model(family, folder):
    import torch
    from transformers import NemotronConfig, NemotronForCausalLM, PhiConfig, PhiForCausalLM
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=128, bos_token_id=0,
                  eos_token_id=0, tie_word_embeddings=False)
    if family == "phi":
        model = PhiForCausalLM(PhiConfig(partial_rotary_factor=0.5, **common))
        randomize(model, 20, one_plus=False)
    else:
        model = NemotronForCausalLM(NemotronConfig(num_key_value_heads=1, **common))
        randomize(model, 21, one_plus=True)
    model.eval()
    model.save_pretrained(folder)
    tokenizer(folder)


def build(family, precision, hf, cache):
    out = os.path.join(OUT, f"{family}_{precision}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf, "-o", out,
           "-p", precision, "-e", "cpu", "-c", cache]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"builder failed for {family} {precision}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    # The builder records the input folder (a temporary path) nowhere in the model; genai_config
    # is kept as written.
    return out


def main(args):
    check_versions()
    families = [a for a in args if a in ("phi", "nemotron")] or ["phi", "nemotron"]
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            hf = os.path.join(tmp, family)
            hf_model(family, hf)
            for precision in PRECISIONS:
                out = build(family, precision, hf, os.path.join(tmp, "cache"))
                print(out, sorted(os.listdir(out)))


if __name__ == "__main__":
    main(sys.argv[1:])
