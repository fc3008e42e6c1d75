"""KV cache policy: per-sequence block tables, prefix-cache lookup, copy-on-write, accounting.

The policy half of the paged KV cache (vLLM's `KVCacheManager`; `kv.block_pool` is the
mechanism). Nothing here touches MLX: the runner turns block ids into slots
(`block_id * block_size + offset`) and performs the copies `allocate` returns. No library does
paged-KV policy for MLX, so we write it, kept pure-Python to be tested to the exact block id.

Prefix caching: every full block of a sequence, once a finished step has written it and its
token values are known, is registered under a chained hash of its tokens (namespaced by model
id). A new sequence adopts every cached full block of its
prefix, whether its owner is still running or finished (freed blocks keep their hash until the
pool reuses them, least recently freed first).

Compaction: a sequence whose table is not one run of block ids (every prefix-cache hit: the
cached blocks are followed by its own, allocated elsewhere) has its K/V gathered by the runner
at each step. When it decodes alone, `compact` moves it once into a run of free blocks (a
block copy, far cheaper than the gathers it saves); the blocks it leaves stay cached for
others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mlx_manager.kv.block_pool import Block, BlockPool, is_run
from mlx_manager.kv.hashing import block_hash


class KVSequence(Protocol):
    """What the KV manager reads from a sequence (`engine.sequence.Sequence` fits). A protocol,
    so that kv/ never imports from engine/ (imports point one way)."""

    @property
    def request_id(self) -> str: ...
    @property
    def all_ids(self) -> Sequence[int]: ...  # known values only (no in-flight token)
    @property
    def num_tokens(self) -> int: ...  # len(all_ids)
    @property
    def num_computed_tokens(self) -> int: ...
    @property
    def num_preemptions(self) -> int: ...


class KVCacheManager:
    def __init__(
        self, num_blocks: int, block_size: int, namespace: str, enable_prefix_caching: bool = True
    ) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.namespace = namespace
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = BlockPool(num_blocks)
        self._tables: dict[str, list[Block]] = {}
        self._hashes: dict[str, list[bytes]] = {}  # chain of the seq's registered full blocks
        self._no_run_at: dict[str, int] = {}  # table length when `compact` found no free run
        self.prefix_queried_tokens = 0
        self.prefix_hit_tokens = 0

    @property
    def max_seq_tokens(self) -> int:
        """The most tokens one sequence may hold. With prefix caching one block stays in reserve
        for the copy-on-write of a fully cached prompt, so a sequence alone always fits."""
        reserve = 1 if self.enable_prefix_caching else 0
        return (self.pool.num_usable_blocks - reserve) * self.block_size

    def lookup_prefix(self, seq: KVSequence) -> tuple[list[Block], int]:
        """Cached full blocks that start `seq.all_ids`, and how many tokens they cover.

        When they cover every token, report one fewer: the last token must be recomputed for its
        logits (its write lands in the shared last block, which `allocate` copies on write).
        """
        if not self.enable_prefix_caching:
            return [], 0
        tokens, size = seq.all_ids, self.block_size
        blocks: list[Block] = []
        parent: bytes | None = None
        for start in range(0, len(tokens) - size + 1, size):
            parent = block_hash(parent, tokens[start : start + size], self.namespace)
            block = self.pool.get_cached_block(parent)
            if block is None:
                break
            blocks.append(block)
        num_hit = len(blocks) * size
        return blocks, min(num_hit, len(tokens) - 1) if blocks else 0

    def allocate(
        self, seq: KVSequence, num_new_tokens: int, prefix: list[Block] | None = None
    ) -> list[tuple[int, int]] | None:
        """Grow `seq`'s table to hold `num_computed_tokens + num_new_tokens` tokens.

        `prefix` (from `lookup_prefix`, on admission only) is adopted first. Returns the
        copy-on-write pairs `(src_block_id, dst_block_id)` the runner must copy before the
        forward, or None, changing nothing, when the pool lacks free blocks.
        """
        rid = seq.request_id
        adopted = prefix or []
        table = self._tables.get(rid)
        if adopted and table is not None:
            raise ValueError(f"{rid}: a prefix can only be adopted on admission")
        if seq.num_computed_tokens > (len(table) if table else len(adopted)) * self.block_size:
            raise ValueError(f"{rid}: computed tokens beyond its blocks")
        blocks = table if table is not None else adopted
        target = seq.num_computed_tokens + num_new_tokens
        num_new = max(0, -(-target // self.block_size) - len(blocks))
        cow = self._cow_index(blocks, seq.num_computed_tokens, num_new_tokens)
        needed = num_new + (cow is not None) + sum(b.ref_count == 0 for b in adopted)
        if needed > self.pool.num_free_blocks:
            return None
        if table is None:
            table = self._admit(seq, adopted)
        copies = []
        if cow is not None:
            src = table[cow]
            after = table[cow - 1].block_id if cow else None
            table[cow] = self.pool.get_new_blocks(1, after)[0]
            self.pool.free_blocks([src])
            copies.append((src.block_id, table[cow].block_id))
        if num_new:
            table.extend(self.pool.get_new_blocks(num_new, table[-1].block_id if table else None))
        return copies

    def compact(self, seq: KVSequence, slack: int = 4) -> list[tuple[int, int]] | None:
        """Move `seq`'s blocks into one run of consecutive free unhashed ids (with room for
        `slack` more after it when possible). Returns the `(src, dst)` copies the runner must
        do before the next forward, or None, changing nothing, when the table already is a run
        or no run of free blocks is found."""
        table = self._tables.get(seq.request_id)
        if not table or self._no_run_at.get(seq.request_id) == len(table):
            return None
        if is_run([block.block_id for block in table], len(table)):
            return None
        moved = self.pool.take_run(len(table), slack)
        if moved is None:  # the decode hot path: search again only once the table grows
            self._no_run_at[seq.request_id] = len(table)
            return None
        self._tables[seq.request_id] = moved
        # The blocks left behind: shared or cached ones keep serving others; the copy reads
        # them before any other sequence can write there (the runner copies first).
        self.pool.free_blocks(reversed(table))
        return [(old.block_id, new.block_id) for old, new in zip(table, moved, strict=True)]

    def cache_full_blocks(self, seq: KVSequence, num_written: int) -> None:
        """Register hashes for `seq`'s full blocks among its first `num_written` positions
        (those whose K/V a finished step wrote). Only known token values are hashed: a block
        that holds a position past `seq.all_ids` (an in-flight token) waits."""
        if not self.enable_prefix_caching:
            return
        hashes = self._hashes[seq.request_id]
        size = self.block_size
        num_full = min(num_written, seq.num_tokens) // size
        if num_full <= len(hashes):
            return
        table, tokens = self._tables[seq.request_id], seq.all_ids
        for i in range(len(hashes), min(num_full, len(table))):
            parent = hashes[-1] if hashes else None
            hashes.append(block_hash(parent, tokens[i * size : (i + 1) * size], self.namespace))
            self.pool.cache_block(table[i], hashes[-1])

    def free(self, seq: KVSequence) -> None:
        """Release all of `seq`'s blocks, tail first (so its tail is evicted first)."""
        table = self._tables.pop(seq.request_id, None)
        self._hashes.pop(seq.request_id, None)
        self._no_run_at.pop(seq.request_id, None)
        if table:
            self.pool.free_blocks(reversed(table))

    def block_ids(self, seq: KVSequence) -> list[int]:
        return [b.block_id for b in self._tables.get(seq.request_id, ())]

    def num_free_blocks(self) -> int:
        return self.pool.num_free_blocks

    def usage(self) -> float:
        """Fraction of usable blocks held by some sequence (ref_count > 0)."""
        usable = self.pool.num_usable_blocks
        return (usable - self.pool.num_free_blocks) / usable

    def prefix_hit_rate(self) -> float:
        """Prompt tokens served from the cache / prompt tokens looked up, over first admissions."""
        if not self.prefix_queried_tokens:
            return 0.0
        return self.prefix_hit_tokens / self.prefix_queried_tokens

    def _admit(self, seq: KVSequence, adopted: list[Block]) -> list[Block]:
        self.pool.touch(adopted)
        num_full_computed = seq.num_computed_tokens // self.block_size
        hashes = [b.block_hash for b in adopted[:num_full_computed] if b.block_hash is not None]
        self._hashes[seq.request_id] = hashes
        self._tables[seq.request_id] = table = list(adopted)
        if seq.num_preemptions == 0:
            self.prefix_queried_tokens += seq.num_tokens
            self.prefix_hit_tokens += seq.num_computed_tokens
        return table

    def _cow_index(self, blocks: list[Block], start: int, num_new_tokens: int) -> int | None:
        """The index of the block where writing starts, if that block is shared or cached."""
        index = start // self.block_size
        if num_new_tokens <= 0 or index >= len(blocks):
            return None
        block = blocks[index]
        return index if block.ref_count > 1 or block.block_hash is not None else None
