"""The process's open-file limit: as high as the hard limit allows, and kept there.

A server holds one descriptor per connection, so the soft RLIMIT_NOFILE (often 1024, 256 on
macOS) caps concurrent connections long before memory does. mlx_lm.utils sets the limit to
(2048, 4096) when imported, which lowers a higher hard limit for good (only root may raise it
again); `import_mlx_lm_keeping_fd_limit` imports it with that one call suppressed.
"""

from __future__ import annotations

import importlib
from typing import Any

# macOS refuses a soft limit above OPEN_MAX although its hard limit reads "unlimited".
_MACOS_OPEN_MAX = 10_240
_TARGET_WHEN_UNLIMITED = 65_536


def raise_fd_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE towards the hard limit; the soft limit now (None: unknown)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    target = hard if hard != resource.RLIM_INFINITY else _TARGET_WHEN_UNLIMITED
    for candidate in (target, min(target, _MACOS_OPEN_MAX)):
        if candidate <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (candidate, hard))
        except (ValueError, OSError):
            continue
        return candidate
    return soft


def import_mlx_lm_keeping_fd_limit() -> None:
    """Import mlx_lm.utils without its RLIMIT_NOFILE change; raise_fd_limit covers its intent."""
    try:
        import resource
    except ImportError:
        importlib.import_module("mlx_lm.utils")
        return
    real = resource.setrlimit

    def setrlimit(which: int, limits: Any) -> None:
        if which != resource.RLIMIT_NOFILE:
            real(which, limits)

    resource.setrlimit = setrlimit
    try:
        importlib.import_module("mlx_lm.utils")
    finally:
        resource.setrlimit = real
