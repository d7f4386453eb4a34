"""flowcoro.db vs raw drivers and the usual wrappers, same run.

    ./tools/dev bench db [--rounds=5] [--duration=2] [--pool=10] [--only=postgres|mariadb]
                         [--loop=uvloop|asyncio] [--workloads=select1,param,tx]
                         [--libs=flowcoro,asyncpg,...] [--pgbench=yes|no] [--verbose=no|yes]

PostgreSQL: flowcoro.db vs asyncpg's own pool, SQLAlchemy asyncio (text() queries, asyncpg
dialect) and encode/databases. MariaDB: flowcoro.db (asyncmy) vs asyncmy's pool and aiomysql's
pool (the driver comparison behind the choice of asyncmy). Workloads: ``SELECT 1`` and
``SELECT $1`` (a text parameter) from 50 concurrent tasks, and a short transaction
(``BEGIN; UPDATE one row; COMMIT``, each task its own row) from 20. Every pool holds ``--pool``
connections (default 10; 20 for the transaction workload) for every library.

Each measurement is a fresh subprocess pinned to CPU 1 (``taskset -c 1``); the database servers
(system services) are pinned to CPU 0 with ``taskset -apc`` when permitted and restored after.
Rounds interleave the libraries (the order rotates each round). The table shows medians of
operations per second, the spread (min-max across rounds as % of the median), median p50 and p99
latency with the p99's range over the rounds, the ratio to the raw driver's pool (median of
per-round ratios), the client's CPU time per operation (user+system of the measured process), the
database server's CPU time per operation (all its processes, from /proc: other jobs' sessions on the
same server count too), the CPU other jobs on the machine used meanwhile (busy time of all CPUs from
/proc/stat minus the client's and the server's, in % of one CPU: on a shared machine it tells a
quiet measurement from a disturbed one), and flowcoro's pool reuse ratio. ``--verbose=yes`` prints
every measurement instead of dots.

PostgreSQL's transaction workload also runs two references. ``asyncpg-conn``: asyncpg with one
connection per task and no pool (``async with conn.transaction()``), the floor of a Python client
on asyncpg. ``pgbench`` (when installed): the same transaction from 20 clients of one C thread
pinned to CPU 1 (``-M prepared``, each client its own row), latencies from its per-transaction log
after the same warm-up; no Python client can beat it, and what it shows above the target is the
database's and the machine's, not the client's.
Peers are installed into the running venv when missing; they are not dependencies of flowcoro-db.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PG = os.environ.get("FLOWCORO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MY = os.environ.get("FLOWCORO_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")
TABLE = "flowcoro_bench_tx"
WORKLOADS = {"select1": 50, "param": 50, "tx": 20}
PEERS = {
    "postgres": ["flowcoro", "asyncpg", "sqlalchemy", "databases", "asyncpg-conn"],
    "mariadb": ["flowcoro", "asyncmy", "aiomysql"],
}
RAW = {"postgres": "asyncpg", "mariadb": "asyncmy"}
#: references that run the transaction only: asyncpg with one connection per task and no pool
#: (the Python client's floor) and pgbench (the C client's)
TX_ONLY = {"asyncpg-conn", "pgbench"}


# -- the measured process ------------------------------------------------------------------------


def _my_args() -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "db": "test"}


def _server_cpu() -> float:
    """CPU seconds used so far by the database servers' processes (all threads, and exited
    children), from /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(") ")
        if name in ("postgres", "mariadbd", "mysqld"):
            fields = rest.split()
            # utime, stime, and those of exited children (backends that ended: pgbench's)
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """CPU seconds all CPUs have been busy since boot (/proc/stat: everything but idle and
    iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _client(impl: str, backend: str, pool: int) -> tuple[Any, Any, Any, Any]:
    """Return (select1, param, tx, close) coroutine functions for one library."""
    if impl == "flowcoro":
        from flowcoro.db import Database

        db = Database(PG if backend == "postgres" else MY, min_size=pool, max_size=pool)
        await db.connect()
        upd = f"UPDATE {TABLE} SET v = v + 1 WHERE id = ?"

        async def tx(i: int) -> None:
            async with db.transaction() as t:
                await t.execute(upd, i)

        async def close() -> Any:
            stats = db.statistics()
            await db.aclose()
            return stats.pool.reuse_ratio

        return (
            lambda: db.fetchval("SELECT 1"),
            lambda: db.fetchval("SELECT ?", "x"),
            tx,
            close,
        )
    if impl == "asyncpg":
        import asyncpg

        p = await asyncpg.create_pool(PG, min_size=pool, max_size=pool)

        async def tx_pg(i: int) -> None:
            async with p.acquire() as c, c.transaction():
                await c.execute(f"UPDATE {TABLE} SET v = v + 1 WHERE id = $1", i)

        async def close_pg() -> Any:
            await p.close()

        return (
            lambda: p.fetchval("SELECT 1"),
            lambda: p.fetchval("SELECT $1", "x"),
            tx_pg,
            close_pg,
        )
    if impl == "asyncpg-conn":
        import asyncpg

        conns = [await asyncpg.connect(PG) for _ in range(pool)]
        upd_pg = f"UPDATE {TABLE} SET v = v + 1 WHERE id = $1"

        async def tx_conn(i: int) -> None:
            c = conns[i - 1]
            async with c.transaction():
                await c.execute(upd_pg, i)

        async def close_conns() -> Any:
            for c in conns:
                await c.close()

        return None, None, tx_conn, close_conns
    if impl == "sqlalchemy":
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(
            PG.replace("postgresql://", "postgresql+asyncpg://"), pool_size=pool, max_overflow=0
        )
        one, par = text("SELECT 1"), text("SELECT CAST(:x AS TEXT)")
        upd_sa = text(f"UPDATE {TABLE} SET v = v + 1 WHERE id = :i")

        async def sel_sa() -> Any:
            async with engine.connect() as c:
                return (await c.execute(one)).scalar()

        async def par_sa() -> Any:
            async with engine.connect() as c:
                return (await c.execute(par, {"x": "x"})).scalar()

        async def tx_sa(i: int) -> None:
            async with engine.begin() as c:
                await c.execute(upd_sa, {"i": i})

        async def close_sa() -> Any:
            await engine.dispose()

        return sel_sa, par_sa, tx_sa, close_sa
    if impl == "databases":
        from databases import Database as EncodeDatabase

        edb = EncodeDatabase(PG, min_size=pool, max_size=pool)
        await edb.connect()

        async def tx_db(i: int) -> None:
            async with edb.transaction():
                await edb.execute(f"UPDATE {TABLE} SET v = v + 1 WHERE id = :i", {"i": i})

        async def close_db() -> Any:
            await edb.disconnect()

        return (
            lambda: edb.fetch_val("SELECT 1"),
            lambda: edb.fetch_val("SELECT CAST(:x AS TEXT)", {"x": "x"}),
            tx_db,
            close_db,
        )
    if impl in ("asyncmy", "aiomysql"):
        mod: Any = __import__(impl)
        kwargs = _my_args()
        if impl == "asyncmy":
            kwargs["database"] = kwargs.pop("db")
        p = await mod.create_pool(minsize=pool, maxsize=pool, autocommit=True, **kwargs)

        async def val(sql: str, args: Any = None) -> Any:
            async with p.acquire() as c, c.cursor() as cur:
                await cur.execute(sql, args)
                row = await cur.fetchone()
                return row[0]

        async def tx_my(i: int) -> None:
            async with p.acquire() as c:
                await c.begin()
                try:
                    async with c.cursor() as cur:
                        await cur.execute(f"UPDATE {TABLE} SET v = v + 1 WHERE id = %s", (i,))
                    await c.commit()
                except BaseException:
                    await c.rollback()
                    raise

        async def close_my() -> Any:
            p.close()
            await p.wait_closed()

        return lambda: val("SELECT 1"), lambda: val("SELECT %s", ("x",)), tx_my, close_my
    raise SystemExit(f"unknown implementation {impl!r}")


async def _measure(
    impl: str, backend: str, workload: str, duration: float, pool: int
) -> dict[str, Any]:
    # the transaction runs at 20 with a connection each: its latency is the database's, not a
    # pool queue's
    sel, par, tx, close = await _client(impl, backend, max(pool, 20) if workload == "tx" else pool)
    conc = WORKLOADS[workload]
    latencies: list[float] = []
    count = 0
    stop_at = 0.0
    record = False
    clock = time.perf_counter

    async def worker(i: int) -> None:
        nonlocal count
        if workload == "tx":

            def op() -> Any:
                return tx(i + 1)
        else:
            op = sel if workload == "select1" else par
        while True:
            t0 = clock()
            if t0 >= stop_at:
                return
            await op()
            if record:
                latencies.append(clock() - t0)
                count += 1

    stop_at = clock() + 0.5  # warm-up: fill pools, prepare statements
    await asyncio.gather(*(worker(i) for i in range(conc)))
    latencies.clear()
    record = True
    count = 0
    server0, client0, busy0 = _server_cpu(), _cpu_self(), _machine_busy()
    started = clock()
    stop_at = started + duration
    await asyncio.gather(*(worker(i) for i in range(conc)))
    elapsed = clock() - started
    client_cpu, server_cpu = _cpu_self() - client0, _server_cpu() - server0
    others = _machine_busy() - busy0 - client_cpu - server_cpu
    reuse = await close()
    latencies.sort()
    return {
        "ops": count / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "client_us": client_cpu / count * 1e6,
        "server_us": server_cpu / count * 1e6,
        "others": max(others / elapsed, 0.0),
        "reuse": reuse,
    }


def _worker_main(argv: list[str]) -> int:
    impl, backend, workload, duration, pool, loop = argv
    if loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    result = runner(_measure(impl, backend, workload, float(duration), int(pool)))
    print(json.dumps(result))
    return 0


# -- the driver ----------------------------------------------------------------------------------


def _ensure_peers() -> list[str]:
    missing = []
    for mod, pkg in (
        ("asyncpg", "asyncpg"),
        ("asyncmy", "asyncmy"),
        ("aiomysql", "aiomysql"),
        ("sqlalchemy", "sqlalchemy[asyncio]"),
        ("databases", "databases"),
    ):
        try:
            __import__(mod)
        except ImportError:
            missing.append(pkg)
    if missing:
        print(f"bench db: installing peers {missing}", flush=True)
        subprocess.call([sys.executable, "-m", "pip", "install", "-q", *missing])
    unavailable = []
    for mod in ("sqlalchemy", "databases", "aiomysql"):
        try:
            __import__(mod)
        except ImportError:
            unavailable.append(mod)
    return unavailable


def _server_pids(name: str) -> list[str]:
    try:
        out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return []
    return out.stdout.split()


def _pin_servers() -> dict[str, str]:
    """Pin PostgreSQL and MariaDB (all their threads) to CPU 0; return the old masks."""
    old: dict[str, str] = {}
    if not shutil.which("taskset"):
        return old
    for name in ("postgres", "mariadbd", "mysqld"):
        for pid in _server_pids(name):
            got = subprocess.run(
                ["taskset", "-p", pid], capture_output=True, text=True, check=False
            )
            if got.returncode != 0:
                continue
            old[pid] = got.stdout.strip().rsplit(" ", 1)[-1]
            subprocess.run(["taskset", "-apc", "0", pid], capture_output=True, check=False)
    return old


def _restore(old: dict[str, str]) -> None:
    for pid, mask in old.items():
        subprocess.run(["taskset", "-ap", mask, pid], capture_output=True, check=False)


def _prepare_table() -> None:
    async def go() -> None:
        from flowcoro.db import Database

        for url in (PG, MY):
            async with Database(url, max_size=1) as db:
                await db.execute(f"DROP TABLE IF EXISTS {TABLE}")
                await db.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, v INTEGER)")
                await db.executemany(
                    f"INSERT INTO {TABLE} VALUES (?, 0)", [(i,) for i in range(1, 101)]
                )

    asyncio.run(go())


def _run_one(
    impl: str, backend: str, workload: str, duration: float, pool: int, loop: str
) -> dict[str, Any] | None:
    cmd = [
        sys.executable,
        "-P",
        str(HERE),
        "--worker",
        impl,
        backend,
        workload,
        str(duration),
        str(pool),
        loop,
    ]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=duration * 10 + 60
    )
    if out.returncode != 0:
        print(f"bench db: {impl}/{backend}/{workload} failed:\n{out.stderr[-2000:]}", flush=True)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


_PGBENCH_SCRIPT = f"""\\set id :client_id + 1
BEGIN;
UPDATE {TABLE} SET v = v + 1 WHERE id = :id;
COMMIT;
"""


def _run_pgbench(duration: float) -> dict[str, Any] | None:
    """The tx workload from pgbench (a C client): the database's own floor for it."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return None
    warmup = 0.5
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "tx.sql")
        script.write_text(_PGBENCH_SCRIPT)
        seconds = max(math.ceil(duration + warmup), 1)
        cmd = [pgbench, "-n", "-f", str(script), "-c", str(WORKLOADS["tx"]), "-j", "1"]
        cmd += ["-M", "prepared", "-T", str(seconds), "-l", PG]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "1", *cmd]
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        server0, busy0, started = _server_cpu(), _machine_busy(), time.perf_counter()
        out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        server_cpu, busy = _server_cpu() - server0, _machine_busy() - busy0
        elapsed = time.perf_counter() - started
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            print(f"bench db: pgbench failed:\n{out.stderr[-2000:]}", flush=True)
            return None
        # log lines: client_id transaction_no latency_us script_no end_epoch_s end_us
        done: list[tuple[float, float]] = []
        for log in Path(tmp).glob("pgbench_log.*"):
            for line in log.read_text().splitlines():
                f = line.split()
                done.append((int(f[4]) + int(f[5]) / 1e6, int(f[2]) / 1e6))
    if not done:
        return None
    first = min(end - lat for end, lat in done)
    last = max(end for end, _ in done)
    kept = sorted(lat for end, lat in done if end - lat >= first + warmup)
    span = last - (first + warmup)
    client_cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return {
        "ops": len(kept) / span,
        "p50_ms": kept[len(kept) // 2] * 1000,
        "p99_ms": kept[int(len(kept) * 0.99)] * 1000,
        "client_us": client_cpu / len(done) * 1e6,
        "server_us": server_cpu / len(done) * 1e6,
        "others": max((busy - server_cpu - client_cpu) / elapsed, 0.0),
        "reuse": None,
    }


def _spread(values: list[float]) -> float:
    med = statistics.median(values)
    return (max(values) - min(values)) / med * 100 if med else 0.0


def _unshadow() -> None:
    """tools/bench holds http.py, redis.py...: keep that folder off sys.path so the real
    packages import (run.py puts it first)."""
    here = str(HERE.parent)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    for name, mod in list(sys.modules.items()):
        path = str(getattr(mod, "__file__", "") or "")
        if path.startswith(here + os.sep) and not name.startswith("flowcoro_bench"):
            del sys.modules[name]


def main(argv: list[str]) -> int:
    # The bare client against the bare peer: no instrumentation plugin (observe) rides along.
    os.environ.setdefault("FLOWCORO_PLUGINS", "core,db")
    _unshadow()
    if argv[:1] == ["--worker"]:
        return _worker_main(argv[1:])
    opts = dict(a.lstrip("-").split("=", 1) for a in argv if "=" in a)
    rounds = int(opts.get("rounds", 5))
    duration = float(opts.get("duration", 2))
    pool = int(opts.get("pool", 10))
    loop = opts.get("loop", "uvloop")
    backends = [opts["only"]] if "only" in opts else ["postgres", "mariadb"]
    workloads = opts["workloads"].split(",") if "workloads" in opts else list(WORKLOADS)
    libs = opts["libs"].split(",") if "libs" in opts else None
    floor = opts.get("pgbench", "yes") != "no"
    verbose = opts.get("verbose", "no") != "no"
    for name, given, known in (
        ("only", backends, PEERS),
        ("workloads", workloads, WORKLOADS),
        ("libs", libs or [], {i for peers in PEERS.values() for i in peers}),
    ):
        unknown = [g for g in given if g not in known]
        if unknown:
            raise SystemExit(f"bench db: unknown --{name} {unknown}; known: {sorted(known)}")
    unavailable = _ensure_peers()
    _prepare_table()
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, loop {loop}, pool {pool}, {rounds} rounds x "
        f"{duration:g}s; client on CPU 1, servers on CPU 0",
        flush=True,
    )
    old = _pin_servers()
    if not old:
        print("note: could not pin the database servers; they float over both CPUs", flush=True)
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    try:
        for backend in backends:
            impls = [
                i for i in PEERS[backend] if i not in unavailable and (libs is None or i in libs)
            ]
            for workload in workloads:
                lineup = [i for i in impls if workload == "tx" or i not in TX_ONLY]
                if backend == "postgres" and workload == "tx" and floor and shutil.which("pgbench"):
                    lineup = [*lineup, "pgbench"]
                for r in range(rounds):
                    order = lineup[r % len(lineup) :] + lineup[: r % len(lineup)]
                    for impl in order:
                        if impl == "pgbench":
                            res = _run_pgbench(duration)
                        else:
                            res = _run_one(impl, backend, workload, duration, pool, loop)
                        if res is not None:
                            results.setdefault((backend, workload, impl), []).append(res)
                        if verbose and res is not None:
                            print(
                                f"  round {r + 1} {backend}/{workload} {impl}: "
                                f"{res['ops']:.0f} ops/s, p50 {res['p50_ms']:.2f} ms, "
                                f"p99 {res['p99_ms']:.2f} ms, other jobs "
                                f"{res['others'] * 100:.0f} % of a CPU",
                                flush=True,
                            )
                        else:
                            print(".", end="", flush=True)
                print(f" {backend}/{workload} done", flush=True)
    finally:
        _restore(old)
    print()
    header = (
        f"{'backend':9} {'workload':9} {'library':12} {'ops/s':>9} {'spread':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p99 range':>11} {'vs raw':>7} {'cli us':>7} "
        f"{'srv us':>7} {'others':>6} {'reuse':>6}"
    )
    print(header)
    print("-" * len(header))
    status = 0
    for backend in backends:
        raw = RAW[backend]
        for workload in workloads:
            raw_runs = results.get((backend, workload, raw), [])
            for impl in [*PEERS[backend], "pgbench"]:
                runs = results.get((backend, workload, impl))
                if not runs:
                    continue
                ops = [x["ops"] for x in runs]
                p99 = [x["p99_ms"] for x in runs]
                ratio = ""
                if raw_runs and len(raw_runs) == len(runs):
                    ratios = [a["ops"] / b["ops"] for a, b in zip(runs, raw_runs, strict=True)]
                    ratio = f"{statistics.median(ratios):.2f}"
                reuse = runs[-1]["reuse"]
                print(
                    f"{backend:9} {workload:9} {impl:12} {statistics.median(ops):9.0f} "
                    f"{_spread(ops):6.1f}% {statistics.median(x['p50_ms'] for x in runs):7.2f} "
                    f"{statistics.median(p99):7.2f} {f'{min(p99):.1f}-{max(p99):.1f}':>11} "
                    f"{ratio:>7} {statistics.median(x['client_us'] for x in runs):7.1f} "
                    f"{statistics.median(x['server_us'] for x in runs):7.1f} "
                    f"{statistics.median(x['others'] for x in runs) * 100:5.0f}% "
                    f"{'' if reuse is None else f'{reuse:.3f}':>6}"
                )
    return status


if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != str(HERE.parent)]
    sys.exit(main(sys.argv[1:]))
