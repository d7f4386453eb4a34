"""The compiled recorder and its pure-Python twin: same API, same results."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from flowcoro.observe._pyrecorder import Countdown as PyCountdown
from flowcoro.observe._pyrecorder import Recorder as PyRecorder
from flowcoro.observe.instruments import DEFAULT_BUCKETS

try:
    from flowcoro.observe._recorder import Countdown as CCountdown
    from flowcoro.observe._recorder import Recorder as CRecorder
except ImportError:  # pragma: no cover - built without a compiler
    CRecorder = CCountdown = None  # type: ignore[assignment,misc]

BOTH = [PyRecorder] + ([CRecorder] if CRecorder is not None else [])
COUNTDOWNS = [PyCountdown] + ([CCountdown] if CCountdown is not None else [])


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
def test_request_timed_measures_from_a_start_on_its_clock(impl: type[PyRecorder]) -> None:
    """The protocol's fast path hands over the start time, read from the recorder's ``clock()``;
    the recorder reads that clock again and counts exactly what request_finished would."""
    r = impl([0.001, 0.05, 10.0])
    clock = r.clock
    r.request_timed(None, "/a", "GET", 200, clock() - 0.02)  # 20 ms ago: le=0.05
    r.request_timed(None, "/a", "GET", 200, clock())  # just now: le=0.001
    r.request_timed(None, "/a", "BREW", 999, clock() - 1.0)  # _OTHER, status 0
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
        r.request_timed(None, ["unhashable"], "GET", 200, clock())
    with pytest.raises(TypeError):
        clock(0.5)  # type: ignore[call-arg]


@pytest.mark.parametrize("impl", BOTH)
def test_the_clock_runs_at_perf_counter_rate_close_to_it(impl: type[PyRecorder]) -> None:
    """Whatever it reads (the TSC where the kernel's clocksource is the TSC, see clock_source),
    the recorder's clock is seconds: its differences agree with perf_counter's to within 0.1%,
    and its values start close to perf_counter's (anchored to CLOCK_MONOTONIC)."""
    import time

    clock = impl([1.0]).clock
    assert abs(clock() - time.perf_counter()) < 1.0
    a, b = clock(), time.perf_counter()
    time.sleep(0.1)
    c, d = clock(), time.perf_counter()
    assert abs((c - a) / (d - b) - 1.0) < 1e-3
    readings = [clock() for _ in range(1000)]
    assert readings == sorted(readings)  # monotonic


def test_the_compiled_clock_reads_the_tsc_only_where_the_kernel_does() -> None:
    if CRecorder is None:  # pragma: no cover - built without a compiler
        pytest.skip("not compiled")
    from pathlib import Path

    from flowcoro.observe._recorder import clock_source

    source = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    kernel = source.read_text().strip() if source.exists() else ""
    assert clock_source() == ("tsc" if kernel == "tsc" else "monotonic")
    forced = subprocess.run(
        [
            sys.executable,
            "-c",
            "from flowcoro.observe._recorder import clock_source as c; print(c())",
        ],
        env={**os.environ, "FLOWCORO_OBSERVE_CLOCK": "monotonic"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert forced.stdout.strip() == "monotonic"


class Traced:
    def __init__(self, traceparent: bytes | None = None) -> None:
        self.traceparent = traceparent


@pytest.mark.parametrize("kind", COUNTDOWNS)
def test_countdown_drops_only_parentless_requests_while_more_than_one_remains(
    kind: type[PyCountdown],
) -> None:
    slow_calls: list[object] = []

    def slow(request: object) -> str:
        slow_calls.append(request)
        return "decided"

    countdown = kind(slow)
    decide = countdown.decide
    assert countdown.remaining == 0
    first = Traced()
    assert decide(first) == "decided"  # not known yet: Python decides
    countdown.remaining = 3
    assert decide(Traced()) is None
    assert decide(Traced()) is None
    assert countdown.remaining == 1
    last = Traced()
    assert decide(last) == "decided"  # the kept one
    countdown.remaining = 5
    parented = Traced(b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")
    other = object()  # no traceparent attribute: not flowcoro-http's request
    assert decide(parented) == "decided"
    assert decide(other) == "decided"
    assert countdown.remaining == 5  # neither was counted
    assert slow_calls == [first, last, parented, other]
    assert countdown.slow is slow


@pytest.mark.parametrize("kind", COUNTDOWNS)
def test_countdown_errors(kind: type[PyCountdown]) -> None:
    with pytest.raises(TypeError):
        kind(42)  # type: ignore[arg-type]

    def failing(request: object) -> None:
        raise LookupError("slow path bug")

    countdown = kind(failing)
    with pytest.raises(LookupError):
        countdown.decide(Traced())

    class Broken:
        @property
        def traceparent(self) -> bytes:
            raise ValueError("header bug")

    countdown.remaining = 10
    with pytest.raises(ValueError):
        countdown.decide(Broken())


@pytest.mark.parametrize("kind", COUNTDOWNS)
def test_a_countdown_in_a_cycle_with_its_owner_is_collected(kind: type[PyCountdown]) -> None:
    """The tracer holds its countdown, whose ``slow`` is the tracer's bound method: the cycle
    must be visible to the collector, or every wired app would leak its tracer."""
    import gc
    import weakref

    class Owner:
        def __init__(self) -> None:
            self.countdown = kind(self.decide)

        def decide(self, request: object) -> None:
            return None

    owner = Owner()
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is None
