"""Random weights in the exact layout of a real checkpoint, for machines that cannot get it.

Throughput does not depend on the weights' values, so a GPU machine without the model hub can
benchmark a model of the real shape (same tensor names, shapes and dtypes, same config and
tokenizer) from a small manifest:

    python benchmarks/random_weights_like.py manifest REAL_DIR OUT_DIR   # here: no weights
    python benchmarks/random_weights_like.py build OUT_DIR               # there: model.safetensors
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

MANIFEST = "weights_manifest.json"


def manifest(real: Path, out: Path) -> None:
    shutil.copytree(real, out, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", ".git*"))
    entries = {}
    for file in sorted(real.glob("*.safetensors")):
        with safe_open(str(file), "np") as tensors:
            for name in tensors.keys():  # noqa: SIM118 (safe_open is not a mapping)
                array = tensors.get_tensor(name)
                entries[name] = {
                    "file": file.name,
                    "shape": list(array.shape),
                    "dtype": str(array.dtype),
                }
    (out / MANIFEST).write_text(json.dumps(entries))


def build(out: Path, seed: int = 0) -> None:
    entries = json.loads((out / MANIFEST).read_text())
    rng = np.random.default_rng(seed)
    files: dict[str, dict[str, np.ndarray]] = {}
    for name, entry in entries.items():
        shape = tuple(entry["shape"])
        if name.endswith(("LayerNorm.weight", "norm.weight")):
            array = np.ones(shape)
        elif name.endswith("bias") or "position_ids" in name:
            array = np.zeros(shape) if "position_ids" not in name else np.arange(shape[-1])[None]
        else:
            array = rng.normal(0.0, 0.02, shape)
        files.setdefault(entry["file"], {})[name] = array.astype(entry["dtype"])
    for file, tensors in files.items():
        save_file(tensors, str(out / file))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("manifest")
    made.add_argument("real", type=Path)
    made.add_argument("out", type=Path)
    built = sub.add_parser("build")
    built.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "manifest":
        manifest(args.real, args.out)
    else:
        build(args.out)


if __name__ == "__main__":
    main()
