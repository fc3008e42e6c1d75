"""Build a random-weight llama model of a real shape, as an MLX model directory.

No model hub is reachable on the GPU machine, so benchmarks there run on random weights of a
real model's shape with a real tokenizer (for example the one the project converts from
SmolLM2). Speed depends on the shape and dtype, not on the values.

    python benchmarks/make_random_model.py OUT_DIR --shape 0.5b|7b|smollm2|tiny|tiny-deep --tokenizer DIR \
        [--dtype bfloat16] [--seed 0] [--std 0.02] [--shard-gb 4]

The directory holds config.json, model.safetensors (or model-0000i-of-0000n.safetensors plus
model.safetensors.index.json when above --shard-gb), and the tokenizer files copied from
TOKENIZER_DIR; `mlx_lm.load(OUT_DIR)` and the server's `--model OUT_DIR` open it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten, tree_map
from mlx_lm.models import llama

# Shapes of real models (llama architecture, 49,152-token vocabulary of the SmolLM2 tokenizer).
SHAPES: dict[str, dict[str, Any]] = {
    # Qwen2.5-0.5B's body
    "0.5b": {
        "hidden_size": 896,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "intermediate_size": 4864,
        "rope_theta": 1e6,
        "tie_word_embeddings": False,
    },
    # Qwen2.5-7B's body
    "7b": {
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "rope_theta": 1e6,
        "tie_word_embeddings": False,
    },
    # SmolLM2-135M
    "smollm2": {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "rope_theta": 1e5,
        "tie_word_embeddings": True,
    },
    # Two layers, 64 wide: per-token cost is almost all framework overhead (HTTP, Python).
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "rope_theta": 1e4,
        "tie_word_embeddings": True,
    },
    # The 0.5B shape's depth at the tiny width: a decode step has the 0.5B graph's op count
    # with almost no compute, the host-bound regime of batch-1 decode on a GPU, on a CPU.
    "tiny-deep": {
        "hidden_size": 64,
        "num_hidden_layers": 24,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "rope_theta": 1e4,
        "tie_word_embeddings": False,
    },
}
COMMON: dict[str, Any] = {
    "model_type": "llama",
    "vocab_size": 49152,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 32768,
    "attention_bias": False,
    "mlp_bias": False,
    "rope_traditional": False,
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
DTYPES = {"bfloat16": mx.bfloat16, "float16": mx.float16, "float32": mx.float32}


def model_config(shape: str, tokenizer_dir: Path | None = None) -> dict[str, Any]:
    """config.json content for `shape`; token ids come from the tokenizer's configs if any."""
    config: dict[str, Any] = {**COMMON, **SHAPES[shape]}
    config["head_dim"] = config["hidden_size"] // config["num_attention_heads"]
    config["architectures"] = ["LlamaForCausalLM"]
    for name in ("config.json", "generation_config.json"):
        path = tokenizer_dir / name if tokenizer_dir else None
        if path is not None and path.is_file():
            source = json.loads(path.read_text(encoding="utf-8"))
            for key in ("bos_token_id", "eos_token_id"):
                if key in source and key not in config:
                    config[key] = source[key]
    return config


def build_model(config: dict[str, Any], dtype: mx.Dtype, std: float | None, seed: int) -> Any:
    """A llama.Model with random weights in `dtype`, evaluated one layer at a time.

    MLX is lazy: the float32 init of a layer is cast and materialized before the next one is
    built, so peak memory stays near the final size (a 7B model never exists in float32).
    """
    mx.random.seed(seed)
    args = llama.ModelArgs.from_dict(config)
    model = llama.Model(args)
    if std is not None:  # plain N(0, std) for matrices; norms stay at one
        model.update(
            tree_map(
                lambda p: mx.random.normal(p.shape, scale=std) if p.ndim > 1 else p,
                model.parameters(),
            )
        )
    model.set_dtype(dtype)
    for _, value in flat_parameters(model):
        mx.eval(value)
    return model


def save_weights(out: Path, model: Any, shard_gb: float) -> list[str]:
    """mx.save_safetensors in shards of at most `shard_gb` (one file when it all fits)."""
    weights: dict[str, mx.array] = dict(flat_parameters(model))
    limit = int(shard_gb * (1 << 30))
    shards: list[dict[str, mx.array]] = []
    size = 0
    for name, value in weights.items():
        if not shards or size + value.nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = value
        size += value.nbytes
    if len(shards) == 1:
        names = ["model.safetensors"]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map: dict[str, str] = {}
    for name, shard in zip(names, shards, strict=True):
        mx.save_safetensors(str(out / name), shard, metadata={"format": "mlx"})
        weight_map.update(dict.fromkeys(shard, name))
    if len(shards) > 1:
        total = sum(v.nbytes for v in weights.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return names


def copy_tokenizer(tokenizer_dir: Path, out: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        source = tokenizer_dir / name
        if source.is_file():
            shutil.copy2(source, out / name)
            copied.append(name)
    if "tokenizer.json" not in copied and "tokenizer.model" not in copied:
        raise SystemExit(f"no tokenizer.json or tokenizer.model in {tokenizer_dir}")
    return copied


def flat_parameters(model: Any) -> list[tuple[str, mx.array]]:
    flat: list[tuple[str, mx.array]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    return flat


def parameter_count(model: Any) -> int:
    return sum(v.size for _, v in flat_parameters(model))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output directory (created; must be empty)")
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--tokenizer", type=Path, required=True, help="dir with tokenizer.json")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--std",
        type=float,
        default=None,
        help="N(0, std) for every matrix instead of mlx's own layer init",
    )
    parser.add_argument("--shard-gb", type=float, default=4.0, help="largest safetensors file")
    args = parser.parse_args(argv)

    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} exists and is not empty")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    config = model_config(args.shape, args.tokenizer)
    model = build_model(config, DTYPES[args.dtype], args.std, args.seed)
    built = time.perf_counter()
    files = save_weights(args.out, model, args.shard_gb)
    config["torch_dtype"] = args.dtype
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    copied = copy_tokenizer(args.tokenizer, args.out)
    print(
        f"{args.out}: {args.shape} {args.dtype}, {parameter_count(model) / 1e6:.1f}M parameters, "
        f"built in {built - start:.1f}s, saved in {time.perf_counter() - built:.1f}s on "
        f"{mx.default_device()}; weights {files}; tokenizer {copied}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
