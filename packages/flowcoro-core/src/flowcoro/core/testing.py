"""Pytest plugin shared by every FlowCoro distribution (registered through ``pytest11``).

- ``async def`` tests run on a fresh event loop, once on asyncio and once on uvloop (when it is
  installed). ``--loop=asyncio`` or ``--loop=uvloop`` picks one; the ``loop_kind`` argument tells a
  test which loop it runs on. Each async test is bounded by ``flowcoro_async_timeout`` seconds.
- Fixtures for the services on this machine: ``postgres_dsn``, ``mariadb_dsn``, ``redis_url``.
  When a service cannot be reached the test is skipped with a message saying how to start it;
  when the ``CI`` environment variable is set it fails instead, loudly.
- ``unused_tcp_port`` gives a free port on 127.0.0.1.

Async fixtures are deliberately not supported: each test owns its loop, so resources are made
inside the test (``async with`` helpers) and are closed on that same loop.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["loop_kinds", "new_loop_factory", "service_reachable"]

_START_HINTS: dict[str, str] = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "MariaDB": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "Redis": 'redis-server --daemonize yes --port 6379 --save "" --appendonly no',
}


def loop_kinds() -> list[str]:
    """The event loops available here: always ``asyncio``, plus ``uvloop`` when installed."""
    kinds = ["asyncio"]
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is in the dev requirements
        pass
    else:
        kinds.append("uvloop")
    return kinds


def new_loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


def service_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowcoro")
    group.addoption(
        "--loop",
        choices=["all", "asyncio", "uvloop"],
        default="all",
        help="event loop(s) that async tests run on (default: all available)",
    )
    parser.addini("flowcoro_async_timeout", "seconds an async test may run", default="60")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "loops(*kinds): run this async test only on the named event loops"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not inspect.iscoroutinefunction(metafunc.function):
        return
    kinds = loop_kinds()
    chosen = metafunc.config.getoption("--loop")
    if chosen != "all":
        kinds = [k for k in kinds if k == chosen]
    marker = metafunc.definition.get_closest_marker("loops")
    if marker is not None:
        kinds = [k for k in kinds if k in marker.args]
    if "loop_kind" not in metafunc.fixturenames:
        metafunc.fixturenames.append("loop_kind")
    metafunc.parametrize("loop_kind", kinds)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    # The parametrized value lives in the callspec: funcargs only holds what the test declares.
    callspec = getattr(pyfuncitem, "callspec", None)
    kind = str(callspec.params.get("loop_kind", "asyncio") if callspec else "asyncio")
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    timeout = float(pyfuncitem.config.getini("flowcoro_async_timeout"))

    async def bounded() -> Any:
        limit = asyncio.timeout(timeout)
        try:
            async with limit:
                return await func(**kwargs)
        except TimeoutError:
            if limit.expired():
                pytest.fail(f"async test exceeded {timeout:g}s (flowcoro_async_timeout)")
            raise

    with asyncio.Runner(loop_factory=new_loop_factory(kind)) as runner:
        runner.run(bounded())
    return True


def _service(name: str, host: str, port: int) -> None:
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}; start it with: {_START_HINTS[name]}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the PostgreSQL server on 127.0.0.1:5432 (trust auth, database ``test``)."""
    dsn = os.environ.get("FLOWCORO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    _service("PostgreSQL", "127.0.0.1", 5432)
    return dsn


@pytest.fixture(scope="session")
def mariadb_dsn() -> str:
    """DSN of the MariaDB server on 127.0.0.1:3306 (root, empty password, database ``test``)."""
    dsn = os.environ.get("FLOWCORO_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")
    _service("MariaDB", "127.0.0.1", 3306)
    return dsn


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the Redis server on 127.0.0.1:6379."""
    url = os.environ.get("FLOWCORO_TEST_REDIS", "redis://127.0.0.1:6379/0")
    _service("Redis", "127.0.0.1", 6379)
    return url


@pytest.fixture
def unused_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
