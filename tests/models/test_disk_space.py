"""A full disk is reported with the directory and the cause, not MLX's bare write error."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

from mlx_manager.models import disk_space, gguf_convert
from mlx_manager.models.default_model import embedded_gguf_path
from mlx_manager.models.disk_space import DiskFull, writing_into

MLX_WRITE_ERROR = "[write] Unable to write 2951518 bytes to file."  # what MLX raises


def test_write_failures_for_lack_of_space_become_disk_full(tmp_path: Path) -> None:
    for raised in (RuntimeError(MLX_WRITE_ERROR), OSError(errno.ENOSPC, "No space left")):
        with pytest.raises(DiskFull) as info, writing_into(tmp_path, needed=5_000_000):
            raise raised
        message = str(info.value)
        assert str(tmp_path) in message and "no space left on device" in message
        assert "about 5 MB needed" in message and info.value.errno == errno.ENOSPC
    with pytest.raises(RuntimeError, match="other"), writing_into(tmp_path):
        raise RuntimeError("other")  # anything else passes through unchanged


def test_gguf_conversion_names_the_full_directory_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(MLX_WRITE_ERROR)

    monkeypatch.setattr(gguf_convert.mx, "save_safetensors", full_disk)
    out = tmp_path / "models" / "smollm2"
    with pytest.raises(DiskFull, match="no space left on device") as info:
        gguf_convert.convert_gguf(embedded_gguf_path(), out)
    assert str(out.parent) in str(info.value)
    assert list(out.parent.iterdir()) == []  # no half-written temporary copy left behind


def test_too_little_free_space_fails_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(disk_space.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 1000))
    with pytest.raises(DiskFull, match="1,000 bytes free"):
        gguf_convert.convert_gguf(embedded_gguf_path(), tmp_path / "out")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount")
def test_a_really_full_file_system(tmp_path: Path) -> None:
    """A 1 MiB tmpfs, where the platform lets us mount one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        with pytest.raises(DiskFull, match=f"cannot write to {mount}: no space left on device"):
            gguf_convert.convert_gguf(embedded_gguf_path(), mount / "smollm2")
    finally:
        subprocess.run(["umount", str(mount)])
