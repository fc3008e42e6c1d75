"""Admission: slots are booked synchronously and counted with the engine's queue."""

from __future__ import annotations

import pytest

from mlx_manager.errors import Overloaded
from mlx_manager.frontend.admission import Admission


def test_slots_count_with_the_engine_queue_and_release_once() -> None:
    queued = [0]
    admission = Admission(3, lambda: queued[0])
    first, second = admission.admit(), admission.admit()
    queued[0] = 1  # a request handed to the engine earlier, not yet running
    with pytest.raises(Overloaded) as info:
        admission.admit()
    assert info.value.headers["Retry-After"] == "1"
    first.release()
    first.release()  # idempotent: a second release frees nothing more
    assert admission.waiting == 2
    third = admission.admit()
    with pytest.raises(Overloaded):
        admission.admit()
    second.release()
    third.release()
    assert admission.waiting == 1


def test_side_requests_hold_a_slot_while_they_run() -> None:
    admission = Admission(1, lambda: 0)
    with admission.side_request(), pytest.raises(Overloaded):
        admission.admit()
    admission.admit()
