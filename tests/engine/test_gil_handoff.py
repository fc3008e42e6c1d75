"""The GIL switch interval follows the number of requests in flight."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from mlx_manager.engine.gil_handoff import LOW_LOAD_STREAMS, PYTHON_DEFAULT_S, SwitchInterval


@pytest.fixture(autouse=True)
def python_default() -> Iterator[None]:
    yield
    sys.setswitchinterval(PYTHON_DEFAULT_S)


def test_short_interval_only_under_low_load() -> None:
    switch = SwitchInterval(0.0005)
    switch.update(0)
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    switch.update(LOW_LOAD_STREAMS)
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    switch.update(LOW_LOAD_STREAMS + 1)
    assert sys.getswitchinterval() == pytest.approx(PYTHON_DEFAULT_S)
    switch.update(1)
    switch.restore()
    assert sys.getswitchinterval() == pytest.approx(PYTHON_DEFAULT_S)


def test_a_second_switch_restores_python_default_not_the_first_ones_setting() -> None:
    first = SwitchInterval(0.0005)
    first.update(1)
    second = SwitchInterval(0.002)
    second.update(1)
    assert sys.getswitchinterval() == pytest.approx(0.002)
    second.restore()
    assert sys.getswitchinterval() == pytest.approx(PYTHON_DEFAULT_S)


def test_an_interval_changed_by_someone_else_is_set_again() -> None:
    first = SwitchInterval(0.0005)
    first.update(1)
    sys.setswitchinterval(0.003)  # e.g. a second engine thread stopping
    first.update(1)
    assert sys.getswitchinterval() == pytest.approx(0.0005)
