"""Thread-pool variables: one list, pinned with or without overriding what is set."""

import os

import pytest

from ml import threads


def test_pinning_sets_every_pool_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in threads.THREAD_VARIABLES:
        monkeypatch.setenv(variable, "8")
    threads.pin_threads(1)
    assert {os.environ[variable] for variable in threads.THREAD_VARIABLES} == {"1"}


def test_pinning_without_override_keeps_what_an_operator_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    for variable in threads.THREAD_VARIABLES[1:]:
        monkeypatch.delenv(variable, raising=False)
    threads.pin_threads(1, override=False)
    assert os.environ["OMP_NUM_THREADS"] == "4"
    assert all(os.environ[variable] == "1" for variable in threads.THREAD_VARIABLES[1:])
