"""The compiled recorder and its pure-Python twin: same API, same results."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from flowcoro.observe._pyrecorder import Recorder as PyRecorder
from flowcoro.observe.instruments import DEFAULT_BUCKETS

try:
    from flowcoro.observe._recorder import Recorder as CRecorder
except ImportError:  # pragma: no cover - built without a compiler
    CRecorder = None  # type: ignore[assignment,misc]

BOTH = [PyRecorder] + ([CRecorder] if CRecorder is not None else [])


class Req:
    def __init__(self, method: object = "GET") -> None:
        self.method = method


def normalized(snapshot: list[tuple[object, str, int, list[int], float]]) -> list[object]:
    return sorted(
        ((repr(route), method, status, counts, round(total, 9)))
        for route, method, status, counts, total in snapshot
    )


@pytest.mark.parametrize("impl", BOTH)
def test_buckets_labels_and_bounded_cardinality(impl: type[PyRecorder]) -> None:
    r = impl([0.001, 0.01])
    assert r.bounds == (0.001, 0.01)
    r.request_finished(Req(), "/a", 200, 0.001)  # on the bound: le="0.001"
    r.request_finished(Req(), "/a", 200, 0.005)
    r.request_finished(Req(), "/a", 200, 5)  # an int duration, +Inf bucket
    r.request_finished(Req("POST"), "/a", 201, 0.0)
    r.request_finished(Req("BREW"), "/a", 200, 0.0)  # unknown methods: _OTHER
    r.request_finished(Req("MKCOL"), "/a", 200, 0.0)
    r.request_finished(Req(b"GET"), "/a", 200, 0.0)  # not even a str
    r.request_finished(Req(), None, 999, 0.0)  # out-of-range status: 0
    r.request_finished(Req(), None, "200", 0.0)  # not an int: 0
    r.request_finished(Req(), None, True, 0.0)
    assert normalized(r.snapshot()) == [
        ("'/a'", "GET", 200, [1, 1, 1], 5.006),
        ("'/a'", "POST", 201, [1, 0, 0], 0.0),
        ("'/a'", "_OTHER", 200, [3, 0, 0], 0.0),
        ("None", "GET", 0, [3, 0, 0], 0.0),
    ]


@pytest.mark.parametrize("impl", BOTH)
def test_errors(impl: type[PyRecorder]) -> None:
    with pytest.raises(ValueError):
        impl([])
    with pytest.raises(ValueError):
        impl([0.1, 0.1])
    with pytest.raises(TypeError):
        impl([object()])  # type: ignore[list-item]
    r = impl([0.1])
    with pytest.raises(AttributeError):
        r.request_finished(object(), "/a", 200, 0.1)
    with pytest.raises(TypeError):
        r.request_finished(Req(), "/a", 200, "slow")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        r.request_finished(Req(), ["unhashable"], 200, 0.1)
    with pytest.raises(TypeError):
        r.request_finished(Req(), "/a", 200)  # type: ignore[call-arg]
    assert r.snapshot() == []


@pytest.mark.skipif(CRecorder is None, reason="built without a compiler")
def test_compiled_and_python_agree_on_a_random_sequence() -> None:
    rng = random.Random(7)
    routes = ["/a", "/b/{id:int}", None, "/c"]
    methods = ["GET", "POST", "HEAD", "BREW", "DELETE"]
    statuses = [200, 201, 301, 404, 500, 0, 700]
    twins = [CRecorder(DEFAULT_BUCKETS), PyRecorder(DEFAULT_BUCKETS)]
    for _ in range(5000):
        route = rng.choice(routes)
        if route is not None and rng.random() < 0.1:
            route = "".join(route)  # an equal string, not the same object
        req = Req(rng.choice(methods))
        status = rng.choice(statuses)
        duration = rng.expovariate(200.0)
        for twin in twins:
            twin.request_finished(req, route, status, duration)
    assert normalized(twins[0].snapshot()) == normalized(twins[1].snapshot())


@pytest.mark.skipif(CRecorder is None, reason="built without a compiler")
def test_compiled_recorder_rejects_a_second_init_and_many_cells() -> None:
    r = CRecorder([0.1])
    with pytest.raises(RuntimeError):
        r.__init__([0.2])  # type: ignore[misc]
    for status in range(100, 600):  # past the initial cell capacity of a route
        r.request_finished(Req(), "/a", status, 0.01)
    assert len(r.snapshot()) == 500


def test_the_pure_python_twin_can_be_forced() -> None:
    code = "from flowcoro.observe import httpmetrics as h; print(h.IMPLEMENTATION)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"FLOWCORO_OBSERVE_PURE_PYTHON": "1", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "python"


@pytest.mark.parametrize("impl", BOTH)
def test_request_timed_measures_from_a_perf_counter_start(impl: type[PyRecorder]) -> None:
    """The protocol's fast path hands over the start time; the recorder reads the clock (the
    same clock as time.perf_counter) and counts exactly what request_finished would."""
    from time import perf_counter

    r = impl([0.001, 0.05, 10.0])
    r.request_timed(None, "/a", "GET", 200, perf_counter() - 0.02)  # 20 ms ago: le=0.05
    r.request_timed(None, "/a", "GET", 200, perf_counter())  # just now: le=0.001
    r.request_timed(None, "/a", "BREW", 999, perf_counter() - 1.0)  # _OTHER, status 0
    (a, other) = sorted(r.snapshot(), key=lambda cell: cell[1])
    assert a[:4] == ("/a", "GET", 200, [1, 1, 0, 0])
    assert 0.02 <= a[4] < 0.05  # the sum: both durations, read from the shared clock
    assert other[:4] == ("/a", "_OTHER", 0, [0, 0, 1, 0])
    assert 1.0 <= other[4] < 10.0
    with pytest.raises(TypeError):
        r.request_timed(None, "/a", "GET", 200, "then")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        r.request_timed(None, "/a", "GET", 200)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        r.request_timed(None, ["unhashable"], "GET", 200, perf_counter())
