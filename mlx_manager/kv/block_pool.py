"""The KV block pool: a preallocated set of fixed-size blocks, ref counts and the prefix-cache map.

This is the mechanism half of the paged KV cache (vLLM's `BlockPool`); the policy (block tables,
prefix lookup, copy-on-write) lives in `kv.manager`. No library does paged-KV bookkeeping for
MLX (mlx-lm's caches are per-sequence tensors), so we keep this small, pure-Python and exact.

Block 0 is the null block: it is never handed out, and the runner pads block tables with it.
Free blocks wait in an LRU queue (an OrderedDict: O(1) removal from the middle on a cache hit).
Allocation pops from the front. A freed block that holds a cached (hashed) prefix goes to the
back, so it survives as long as possible; a freed block with no hash carries nothing worth
keeping and goes to the front, to be reused first. Popping a hashed block evicts its hash.
So the queue is always every unhashed free block, then the hashed ones in LRU order.

Allocation prefers consecutive block ids: a sequence whose blocks are one run of ids has one
contiguous range of KV slots, which the runner reads as a slice instead of a gather. The block
right after the previous one is taken out of the queue when it is free and unhashed; any
unhashed block is as good as the front one (the hashed blocks are evicted in the same order
either way), so this never changes what the prefix cache keeps. `take_run` finds a whole run
of free unhashed blocks, for moving a sequence's table into one run (`KVCacheManager.compact`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NULL_BLOCK_ID = 0


@dataclass(slots=True, eq=False)
class Block:
    block_id: int
    ref_count: int = 0
    block_hash: bytes | None = None


class BlockPool:
    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 2:
            raise ValueError(
                f"num_blocks must be at least 2 (block 0 is reserved), got {num_blocks}"
            )
        self.num_blocks = num_blocks
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.null_block = self.blocks[NULL_BLOCK_ID]
        self._free: OrderedDict[int, Block] = OrderedDict((b.block_id, b) for b in self.blocks[1:])
        self._cached: dict[bytes, Block] = {}

    @property
    def num_usable_blocks(self) -> int:
        return self.num_blocks - 1

    @property
    def num_free_blocks(self) -> int:
        """Blocks with no holder, cached-but-free ones included (they can be evicted)."""
        return len(self._free)

    @property
    def num_cached_blocks(self) -> int:
        """Blocks registered in the prefix-cache map, held or free."""
        return len(self._cached)

    def free_block_ids(self) -> list[int]:
        """The free queue, next to be allocated (evicted) first."""
        return list(self._free)

    def get_new_blocks(self, n: int, after: int | None = None) -> list[Block]:
        """Take `n` blocks, evicting their cached hashes. Each block is the one whose id follows
        the previous block's (the first: `after`'s) when that one is free and unhashed, else
        the front of the free queue."""
        free = self._free
        if n > len(free):
            raise ValueError(f"asked for {n} blocks, {len(free)} free")
        taken = []
        for _ in range(n):
            block = free.get(after + 1) if after is not None else None
            if block is not None and block.block_hash is None:
                del free[block.block_id]
            else:
                _, block = free.popitem(last=False)
                self._evict(block)
            block.ref_count = 1
            taken.append(block)
            after = block.block_id
        return taken

    def take_run(self, n: int, slack: int = 0, candidates: int = 16) -> list[Block] | None:
        """Take `n` free unhashed blocks of consecutive ids, or None (taking nothing).

        Runs start at one of the first `candidates` blocks of the free queue (the unhashed
        ones come first; freed tables go back there as runs, and an unused pool is one run).
        The first run with `slack` more free unhashed blocks after it wins, so the table can
        keep growing as a run; else the first run of `n`.
        """
        free = self._free

        def usable(block_id: int) -> bool:
            block = free.get(block_id)
            return block is not None and block.block_hash is None

        best: int | None = None
        for tried, (first, block) in enumerate(free.items()):
            if tried >= candidates or block.block_hash is not None:
                break
            length = 1
            while length < n + slack and usable(first + length):
                length += 1
            if length >= n + slack:
                best = first
                break
            if length >= n and best is None:
                best = first
        if best is None:
            return None
        taken = [free.pop(block_id) for block_id in range(best, best + n)]
        for block in taken:
            block.ref_count = 1
        return taken

    def touch(self, blocks: Iterable[Block]) -> None:
        """A cache hit: one more holder; a free block leaves the free queue."""
        for block in blocks:
            if block.ref_count == 0:
                del self._free[block.block_id]
            block.ref_count += 1

    def free_blocks(self, blocks: Iterable[Block]) -> None:
        """One holder fewer; blocks left with none join the free queue in the order given."""
        for block in blocks:
            if block.ref_count <= 0:
                raise ValueError(f"block {block.block_id} freed with ref_count {block.ref_count}")
            block.ref_count -= 1
            if block.ref_count == 0:
                self._free[block.block_id] = block
                if block.block_hash is None:
                    self._free.move_to_end(block.block_id, last=False)

    def cache_block(self, block: Block, block_hash: bytes) -> bool:
        """Register `block` under `block_hash`. False if another block already holds that hash
        (the first one stays canonical; this one stays unhashed)."""
        if block.block_hash is not None:
            return block.block_hash == block_hash
        if block_hash in self._cached:
            return False
        block.block_hash = block_hash
        self._cached[block_hash] = block
        return True

    def get_cached_block(self, block_hash: bytes) -> Block | None:
        return self._cached.get(block_hash)

    def _evict(self, block: Block) -> None:
        if block.block_hash is not None:
            del self._cached[block.block_hash]
            block.block_hash = None


def is_run(block_ids: Sequence[int], n: int) -> bool:
    """Whether the first `n` block ids are consecutive (their slots are one contiguous range)."""
    first = block_ids[0]
    if block_ids[n - 1] - first != n - 1:
        return False
    return n < 3 or tuple(block_ids[:n]) == tuple(range(first, first + n))
