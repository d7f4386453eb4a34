"""The shared pytest plugin, run through pytester against small generated test files."""

from __future__ import annotations

import socket

import pytest

from flowcoro.core import testing

pytest_plugins = ["pytester"]


def test_async_tests_run_on_every_loop(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        seen = []

        async def test_loop(loop_kind):
            await asyncio.sleep(0)
            name = type(asyncio.get_running_loop()).__module__
            seen.append((loop_kind, name))
            assert ("uvloop" in name) == (loop_kind == "uvloop")

        async def test_without_argument(request):
            await asyncio.sleep(0)
            name = type(asyncio.get_running_loop()).__module__
            kind = request.node.callspec.params["loop_kind"]
            assert ("uvloop" in name) == (kind == "uvloop"), (kind, name)

        def test_sync_is_untouched():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*test_loop?asyncio?*PASSED*", "*test_loop?uvloop?*PASSED*"])


def test_loop_option_and_marker_select_loops(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        async def test_any():
            pass

        @pytest.mark.loops("uvloop")
        async def test_only_uvloop(loop_kind):
            assert loop_kind == "uvloop"
        """
    )
    # with only asyncio selected the uvloop-only test has no loop left and is skipped
    pytester.runpytest_inprocess("--loop=asyncio").assert_outcomes(passed=1, skipped=1)
    pytester.runpytest_inprocess().assert_outcomes(passed=3)


def test_slow_async_test_fails_with_its_bound(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nflowcoro_async_timeout = 0.05\n")
    pytester.makepyfile(
        """
        import asyncio

        async def test_slow():
            await asyncio.sleep(5)

        async def test_own_timeout_error_is_not_rewritten():
            raise TimeoutError("mine")
        """
    )
    result = pytester.runpytest_inprocess("--loop=asyncio")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*async test exceeded 0.05s*", "*TimeoutError: mine*"])


def test_service_fixtures_skip_or_fail_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        def test_pg(postgres_dsn):
            assert postgres_dsn.startswith("postgresql://")

        def test_maria(mariadb_dsn):
            assert mariadb_dsn.startswith("mysql://")

        def test_redis(redis_url):
            assert redis_url.startswith("redis://")
        """
    )
    monkeypatch.setattr(testing, "service_reachable", lambda host, port, timeout=1.0: False)
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*PostgreSQL is not reachable on 127.0.0.1:5432; start it with*"])
    monkeypatch.setenv("CI", "true")
    pytester.runpytest_inprocess().assert_outcomes(errors=3)
    monkeypatch.setattr(testing, "service_reachable", lambda host, port, timeout=1.0: True)
    pytester.runpytest_inprocess().assert_outcomes(passed=3)


def test_service_reachable_and_unused_port(unused_tcp_port: int) -> None:
    assert not testing.service_reachable("127.0.0.1", unused_tcp_port, timeout=0.5)
    with socket.socket() as server:
        server.bind(("127.0.0.1", unused_tcp_port))
        server.listen()
        assert testing.service_reachable("127.0.0.1", unused_tcp_port)


def test_loop_helpers() -> None:
    assert testing.loop_kinds()[0] == "asyncio"
    loop = testing.new_loop_factory("asyncio")()
    loop.close()
