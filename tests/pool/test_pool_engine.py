"""The pool with the real engine and real (tiny random-weight) models, in process."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mlx_manager.config import load_settings
from mlx_manager.errors import ApiError, ModelLoadFailed, PoolFull
from mlx_manager.frontend.client import RequestStream
from mlx_manager.models.card import ModelCard
from mlx_manager.pool.budget import estimate_loaded_weight_bytes
from mlx_manager.runtime import Runtime
from mlx_manager.types import GenerateRequest, GenerationEvent, SamplingParams

KV_GB = 0.002  # ~120 blocks of 32 tokens per tiny model


@asynccontextmanager
async def serving(root: Path, **flags: Any) -> AsyncIterator[Runtime]:
    settings = load_settings({"kv_cache_gb": KV_GB, "model_dir": [str(root)], **flags})
    runtime = Runtime(settings)
    await runtime.start([])
    try:
        yield runtime
    finally:
        await runtime.stop()


def request(model: str, max_tokens: int = 2, **sampling: Any) -> GenerateRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=0, **sampling)
    return GenerateRequest(uuid.uuid4().hex, model, params, prompt_text="Hello there")


async def ask(runtime: Runtime, model: str) -> list[GenerationEvent]:
    stream = await runtime.client.submit(request(model))
    return [event async for event in stream]


def card_of(runtime: Runtime, model: str) -> ModelCard:
    resident = runtime.pool.resident(model)
    assert resident is not None, f"{model} is not resident"
    return resident.card


async def long_running(runtime: Runtime, model: str) -> RequestStream:
    """A request that stays in flight until aborted (its stop tokens are banned)."""
    loaded = card_of(runtime, model)
    ban = tuple((token, -1e9) for token in loaded.stop_token_ids)
    return await runtime.client.submit(request(model, max_tokens=1500, logit_bias=ban))


def resident_ids(runtime: Runtime) -> set[str]:
    return {m.id for m in runtime.pool.status().models}


def test_three_models_served_concurrently(pool_model_root: Path) -> None:
    async def main() -> None:
        async with serving(pool_model_root) as runtime:
            models = ["m1", "m2", "m3"] * 3
            results = await asyncio.gather(*(ask(runtime, m) for m in models))
            assert all(events[-1].finished and events[-1].error is None for events in results)
            assert resident_ids(runtime) == {"m1", "m2", "m3"}
            assert runtime.pool.loads == 3

    asyncio.run(main())


def test_fourth_model_evicts_lru_idle_by_count(pool_model_root: Path) -> None:
    async def main() -> None:
        async with serving(pool_model_root, max_models=3) as runtime:
            for model in ("m1", "m2", "m3", "m1"):  # m2 is now the least recently used
                await ask(runtime, model)
            await ask(runtime, "org/m4")
            assert resident_ids(runtime) == {"m1", "m3", "org/m4"}
            await ask(runtime, "m2")  # evicts m3, the LRU now
            assert resident_ids(runtime) == {"m1", "org/m4", "m2"}
            assert runtime.pool.evictions == 2

    asyncio.run(main())


def test_fourth_model_evicts_lru_idle_by_memory(pool_model_root: Path) -> None:
    one = estimate_loaded_weight_bytes(pool_model_root / "m1", 2.0) + int(KV_GB * 1e9)
    budget_gb = 3.5 * one / 1e9

    async def main() -> None:
        async with serving(pool_model_root, max_memory_gb=budget_gb) as runtime:
            for model in ("m2", "m1", "m3"):
                await ask(runtime, model)
            used = runtime.pool.status().used_bytes
            gc.collect()  # earlier tests' garbage would free MLX memory in between
            active_before = (await runtime.memory()).active_bytes
            await ask(runtime, "org/m4")
            assert resident_ids(runtime) == {"m1", "m3", "org/m4"}  # m2 was the LRU
            status = runtime.pool.status()
            assert status.used_bytes <= status.max_memory_bytes  # type: ignore[operator]
            assert status.used_bytes == used  # identical models: one out, one in
            m4 = next(m for m in status.models if m.id == "org/m4")
            assert m4.weight_bytes > 0 and m4.kv_bytes >= KV_GB * 1e9 * 0.9
            # MLX's own counter agrees: one model freed, one allocated.
            gc.collect()
            active_after = (await runtime.memory()).active_bytes
            assert abs(active_after - active_before) < 0.1 * m4.total_bytes

    asyncio.run(main())


def test_pinned_model_survives_eviction(pool_model_root: Path) -> None:
    async def main() -> None:
        async with serving(pool_model_root, max_models=2, pin=["m1"]) as runtime:
            assert resident_ids(runtime) == {"m1"}
            await ask(runtime, "m2")
            await ask(runtime, "m3")  # m1 is the LRU but pinned: m2 goes
            assert resident_ids(runtime) == {"m1", "m3"}
            assert runtime.pool.resident("m1").pinned  # type: ignore[union-attr]

    asyncio.run(main())


def test_model_with_request_in_flight_survives(pool_model_root: Path) -> None:
    async def main() -> None:
        async with serving(pool_model_root, max_models=2) as runtime:
            await ask(runtime, "m1")
            stream = await long_running(runtime, "m1")  # m1: LRU-older than m2, but busy
            await ask(runtime, "m2")
            assert runtime.pool.resident("m1").in_flight == 1  # type: ignore[union-attr]
            await ask(runtime, "m3")
            assert resident_ids(runtime) == {"m1", "m3"}  # m2 went, not the busy m1
            stream.abort()

    asyncio.run(main())


def test_nothing_evictable_is_503_with_retry_after(pool_model_root: Path) -> None:
    async def main() -> None:
        async with serving(pool_model_root, max_models=2, pin=["m1"]) as runtime:
            await ask(runtime, "m2")
            stream = await long_running(runtime, "m2")
            with pytest.raises(PoolFull) as raised:
                await ask(runtime, "m3")
            assert raised.value.status == 503
            assert int(raised.value.headers["Retry-After"]) > 0
            assert "m2" in raised.value.message and "m1" in raised.value.message
            assert resident_ids(runtime) == {"m1", "m2"}
            stream.abort()
            while runtime.pool.resident("m2").in_flight:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
            await ask(runtime, "m3")  # now m2 is idle and goes
            assert resident_ids(runtime) == {"m1", "m3"}

    asyncio.run(main())


def test_concurrent_first_requests_trigger_one_load(pool_model_root: Path) -> None:
    async def main() -> None:
        async with serving(pool_model_root) as runtime:
            results = await asyncio.gather(*(ask(runtime, "m3") for _ in range(5)))
            assert all(events[-1].error is None for events in results)
            assert runtime.pool.loads == 1

    asyncio.run(main())


def test_corrupt_model_fails_clearly_and_pool_keeps_serving(pool_model_root: Path) -> None:
    async def main() -> None:
        async with serving(pool_model_root, max_models=2) as runtime:
            await ask(runtime, "m1")
            for _ in range(2):  # a failed load leaves nothing behind, and fails alike again
                with pytest.raises(ModelLoadFailed) as raised:
                    await ask(runtime, "broken")
                assert "'broken'" in raised.value.message
                assert (
                    "model.safetensors" in raised.value.message or "Error" in raised.value.message
                )
                assert resident_ids(runtime) == {"m1"}
            events = await ask(runtime, "m1")
            assert events[-1].error is None
            assert runtime.pool.loads == 1

    asyncio.run(main())


def test_wrong_type_and_unloadable_vision_answer_clearly(pool_model_root: Path) -> None:
    async def main() -> None:
        async with serving(pool_model_root) as runtime:
            with pytest.raises(ApiError) as embeddings:
                await ask(runtime, "encoders/minilm")
            assert embeddings.value.status == 400 and embeddings.value.param == "model"
            assert "embeddings" in embeddings.value.message
            assert runtime.pool.loads == 0
            with pytest.raises(ApiError) as vision:  # a vision config with garbage weights
                await ask(runtime, "vlm")
            assert vision.value.status in (500, 501) and "'vlm'" in vision.value.message

    asyncio.run(main())


def test_idle_ttl_unloads_and_frees_memory(pool_model_root: Path) -> None:
    async def main() -> None:
        flags = {"keep_alive": 0.3, "model_keep_alive": ["m2=0"]}
        async with serving(pool_model_root, **flags) as runtime:
            gc.collect()
            idle = (await runtime.memory()).active_bytes
            await ask(runtime, "m1")
            await ask(runtime, "m2")
            assert resident_ids(runtime) == {"m1", "m2"}
            for _ in range(100):
                await asyncio.sleep(0.05)
                if resident_ids(runtime) == {"m2"}:
                    break
            assert resident_ids(runtime) == {"m2"}  # m2's per-model keep-alive 0: never
            assert runtime.pool.idle_unloads == 1
            m2 = runtime.pool.status().models[0]
            gc.collect()
            active = (await runtime.memory()).active_bytes
            assert active - idle < 1.1 * m2.total_bytes

    asyncio.run(main())


def test_prompts_are_tokenized_off_the_event_loop(pool_model_root: Path) -> None:
    """A long prompt's tokenization must not stall the event loop that serves every stream."""

    async def main() -> None:
        async with serving(pool_model_root) as runtime:
            await ask(runtime, "m1")
            tokenizer = card_of(runtime, "m1").tokenizer._tokenizer  # the HF tokenizer
            loop_thread = threading.get_ident()
            threads: list[int] = []
            encode = tokenizer.encode

            def spy(*args: Any, **kwargs: Any) -> Any:
                threads.append(threading.get_ident())
                return encode(*args, **kwargs)

            tokenizer.encode = spy
            try:
                events = await ask(runtime, "m1")
                counted = await runtime.client.count_tokens(request("m1"))
            finally:
                del tokenizer.encode
            assert events[-1].finished and events[-1].error is None and counted > 0
            assert len(threads) == 2 and loop_thread not in threads

    asyncio.run(main())


def test_engine_thread_shortens_the_gil_interval_while_few_requests_stream(
    pool_model_root: Path,
) -> None:
    from mlx_manager.engine.gil_handoff import PYTHON_DEFAULT_S

    async def main() -> None:
        async with serving(pool_model_root, gil_switch_interval_ms=0.25) as runtime:
            await ask(runtime, "m1")  # loads it
            stream = await long_running(runtime, "m1")
            async for event in stream:
                if event.token_ids:
                    break
            assert sys.getswitchinterval() == pytest.approx(0.00025)
            stream.abort()
            async for _ in stream:
                pass
        assert sys.getswitchinterval() == pytest.approx(PYTHON_DEFAULT_S)

    asyncio.run(main())


def test_embeddings_count_against_max_waiting_requests(
    pool_model_root: Path, minilm_dir: Path
) -> None:
    """Embedding requests queue on the engine thread too: past --max-waiting-requests they
    get Overloaded (503) like generation requests, and a generation request is refused while
    they fill the queue."""
    from mlx_manager.models.sources import ModelSpec

    async def main() -> None:
        settings = load_settings(
            {"kv_cache_gb": KV_GB, "model_dir": [str(pool_model_root)], "max_waiting_requests": 2}
        )
        runtime = Runtime(settings)
        await runtime.start([ModelSpec("minilm", str(minilm_dir))])
        try:
            calls = [runtime.embeddings.embed("minilm", ["a sentence"]) for _ in range(4)]
            results = await asyncio.gather(
                *calls, runtime.client.submit(request("m1")), return_exceptions=True
            )
            refused = [r for r in results if isinstance(r, ApiError)]
            assert [len(r.vectors) for r in results[:2]] == [1, 1]  # type: ignore[union-attr]
            assert len(refused) == 3 and all(r.status == 503 for r in refused)
            assert len((await runtime.embeddings.embed("minilm", ["again"])).vectors) == 1  # freed
        finally:
            await runtime.stop()

    asyncio.run(main())
