"""geocodec.threads: what each CPU pool's size is, from one environment variable."""

from __future__ import annotations

import os

import pytest

from geocodec import threads as T
from geocodec.errors import InputError


def test_usable_cores_follows_the_affinity():
    n = T.usable_cores()
    assert n >= 1
    if hasattr(os, "sched_getaffinity"):
        assert n == len(os.sched_getaffinity(0))


def test_each_pool_reads_geocodec_threads(monkeypatch):
    monkeypatch.setenv(T.THREADS_ENV, "3")
    assert T.decode_workers() == T.search_threads() == T.onnx_threads() == T.udf_threads() == 3
    assert T.decode_workers(2) == T.search_threads(2) == T.onnx_threads(2) == T.udf_threads(2) == 2


def test_unset_or_zero_gives_each_pool_its_default(monkeypatch):
    for value in (None, "", "0"):
        if value is None:
            monkeypatch.delenv(T.THREADS_ENV, raising=False)
        else:
            monkeypatch.setenv(T.THREADS_ENV, value)
        assert T.decode_workers() == T.search_threads() == T.usable_cores()
        assert T.onnx_threads() == 0          # onnxruntime's own default
        assert T.udf_threads() == 1           # one encoder thread per UDF call on a backend
    monkeypatch.setenv(T.THREADS_ENV, "4")
    assert T.udf_threads(0) == 4              # a context 'threads' of 0 defers to the variable
    assert T.decode_workers(0) == T.usable_cores()


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(T.THREADS_ENV, "many")
    for pool in (T.decode_workers, T.search_threads, T.onnx_threads, T.udf_threads):
        with pytest.raises(InputError, match="GEOCODEC_THREADS"):
            pool()


def test_the_encoder_session_gets_its_thread_count(monkeypatch):
    """get_model passes the count to onnxruntime without changing the environment."""
    from geocodec.producer.chunks import get_model

    monkeypatch.delenv(T.THREADS_ENV, raising=False)
    model = get_model(None, 2)
    assert model.threads == 2
    assert model.encoder.session.get_session_options().intra_op_num_threads == 2
    assert T.THREADS_ENV not in os.environ
