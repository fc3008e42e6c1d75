"""Factories for scheduler and KV tests: sequences, configs, managers, a fake clock, a step."""

from __future__ import annotations

from mlx_manager.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from mlx_manager.engine.sequence import Sequence
from mlx_manager.kv.manager import KVCacheManager

BLOCK_SIZE = 4
NAMESPACE = "test-model"


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_seq(
    request_id: str = "r0",
    num_prompt: int = 8,
    *,
    prompt: list[int] | None = None,
    first_token: int = 100,
    max_tokens: int = 16,
    priority: int = 0,
    arrival: float = 0.0,
) -> Sequence:
    """A sequence whose prompt is `prompt`, or `num_prompt` consecutive ids from `first_token`."""
    ids = list(prompt) if prompt is not None else list(range(first_token, first_token + num_prompt))
    return Sequence(request_id, ids, max_tokens, priority=priority, arrival=arrival)


def make_kv(
    num_blocks: int = 16,
    block_size: int = BLOCK_SIZE,
    namespace: str = NAMESPACE,
    prefix: bool = True,
) -> KVCacheManager:
    return KVCacheManager(num_blocks, block_size, namespace, enable_prefix_caching=prefix)


def make_config(**overrides: object) -> SchedulerConfig:
    values: dict[str, object] = {
        "max_num_seqs": 8,
        "max_num_batched_tokens": 64,
        "max_prefill_chunk": 32,
        "aging_s": 0.0,
    }
    values.update(overrides)
    return SchedulerConfig(**values)  # type: ignore[arg-type]


def make_scheduler(
    num_blocks: int = 16,
    block_size: int = BLOCK_SIZE,
    clock: FakeClock | None = None,
    **config: object,
) -> Scheduler:
    return Scheduler(make_config(**config), make_kv(num_blocks, block_size), clock or FakeClock())


def run_step(sched: Scheduler, token: int = 7, finish: bool = True) -> SchedulerOutput:
    """One engine step with a fake runner: sample `token` for every sampling chunk, then (like the
    engine's length check) finish sequences that reached max_tokens."""
    out = sched.schedule()
    sched.update(out, {c.seq.request_id: token for c in out.chunks if c.samples})
    if finish:
        for chunk in out.chunks:
            if chunk.samples and chunk.seq.num_output_tokens >= chunk.seq.max_tokens:
                sched.finish(chunk.seq)
    return out


def summary(out: SchedulerOutput) -> list[tuple[str, int, int]]:
    """(request_id, start, num_tokens) per chunk, in output order."""
    return [(c.seq.request_id, c.start, c.num_tokens) for c in out.chunks]
