"""Chained block hashes for the prefix cache, namespaced by model id.

A block's hash covers its own tokens and, through the parent digest, every token before it, so
two sequences share a cached block only when their whole prefixes up to that block are equal
(vLLM's and SGLang's scheme). The root of each chain mixes in the namespace (the model id), so
two models serving the same tokens never share an entry. Hand-written because the hash is part
of our paged-KV policy; hashlib's blake2b does the hashing.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence

DIGEST_SIZE = 16
_ROOT = b"\x00"  # tags keep a root (namespace) input apart from a chained (parent) input
_CHAINED = b"\x01"


def block_hash(parent: bytes | None, tokens: Sequence[int], namespace: str) -> bytes:
    """Digest of one full block of token ids, chained on `parent` (None for the first block).

    Tokens are packed as native int64: digests live in one process only, so byte order is moot.
    """
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    if parent is None:
        ns = namespace.encode()
        h.update(_ROOT + len(ns).to_bytes(4, "little") + ns)
    else:
        h.update(_CHAINED + parent)
    h.update(array("q", tokens).tobytes())
    return h.digest()
