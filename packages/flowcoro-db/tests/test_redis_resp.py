"""Pure logic: the RESP2 readers and encoder, URL configuration, reply conversions and error
mapping. No server needed."""

from __future__ import annotations

import ssl

import pytest

from flowcoro.db.errors import AuthenticationError, DBError
from flowcoro.db.redis import _resp, _transforms
from flowcoro.db.redis._resp import ProtocolError, PyReader, ReplyError, py_pack_command
from flowcoro.db.redis.config import RedisConfig
from flowcoro.db.redis.connection import Stats, reply_error
from flowcoro.db.redis.errors import NoScriptError, RedisCommandError

try:
    import hiredis
except ImportError:  # the `redis` extra is not installed: the fallback is still tested
    hiredis = None

READERS = [
    "python",
    pytest.param(
        "hiredis", marks=pytest.mark.skipif(hiredis is None, reason="hiredis not installed")
    ),
]

STREAM = (
    b"+OK\r\n-ERR bad thing\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
    b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n-WRONGTYPE nested\r\n$2\r\nxy\r\n"
)


def _drain(reader: object) -> list[object]:
    out = []
    while (reply := reader.gets()) is not False:  # type: ignore[attr-defined]
        out.append(reply)
    return out


def _norm(value: object) -> object:
    if isinstance(value, ReplyError):
        return ("error", str(value))
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


EXPECTED = [
    b"OK",
    ("error", "ERR bad thing"),
    42,
    -7,
    b"hello",
    b"",
    None,
    None,
    [],
    [1, [b"a", ("error", "WRONGTYPE nested")], b"xy"],
]


@pytest.mark.parametrize("which", READERS)
def test_reader_parses_every_reply_type(which: str) -> None:
    reader = PyReader() if which == "python" else _resp.make_reader()
    reader.feed(STREAM)
    assert [_norm(r) for r in _drain(reader)] == EXPECTED


@pytest.mark.parametrize("which", READERS)
def test_reader_byte_by_byte_matches_whole(which: str) -> None:
    reader = PyReader() if which == "python" else _resp.make_reader()
    got = []
    for i in range(len(STREAM)):
        reader.feed(STREAM[i : i + 1])
        got += _drain(reader)
    assert [_norm(r) for r in got] == EXPECTED


def test_py_reader_compacts_large_buffers() -> None:
    reader = PyReader()
    big = b"$70000\r\n" + b"x" * 70000 + b"\r\n"
    reader.feed(big + b"+PART")
    assert reader.gets() == b"x" * 70000
    assert reader.gets() is False
    reader.feed(b"IAL\r\n")
    assert reader.gets() == b"PARTIAL"
    assert reader._pos == 0
    assert not reader._buf


HIREDIS_LENIENT = {b"$3\r\nabcXY", b"$%d\r\n" % (_resp.MAX_BULK + 1)}


@pytest.mark.parametrize(
    "data",
    [
        b"!oops\r\n",
        b":notanumber\r\n",
        b"$abc\r\n",
        b"$-5\r\n",
        b"$3\r\nabcXY",
        b"*-9\r\n",
        b"*x\r\n",
        b"$%d\r\n" % (_resp.MAX_BULK + 1),
    ],
)
@pytest.mark.parametrize("which", READERS)
def test_reader_rejects_malformed_input(which: str, data: bytes) -> None:
    if which == "hiredis" and data in HIREDIS_LENIENT:
        return  # hiredis checks neither our bulk limit nor the CRLF after a bulk string
    reader = PyReader() if which == "python" else _resp.make_reader()
    reader.feed(data)
    with pytest.raises(ProtocolError):
        reader.gets()


def test_py_reader_incomplete_returns_false() -> None:
    reader = PyReader()
    for chunk in (b"", b"*2\r\n", b"$3\r\nab"):
        reader.feed(chunk)
        assert reader.gets() is False


@pytest.mark.parametrize(
    "args",
    [(b"SET", "k", 1, 2.5, b"\x00\xff"), ("GET", "ключ"), (b"PING",), (b"X", memoryview(b"mv"))],
)
def test_pack_command_matches_hiredis(args: tuple[object, ...]) -> None:
    if hiredis is not None:
        assert py_pack_command(args) == hiredis.pack_command(args)
    reader = PyReader()
    reader.feed(py_pack_command(args))
    assert len(reader.gets()) == len(args)


@pytest.mark.parametrize("bad", [None, True, object()])
def test_pack_command_rejects_bad_types(bad: object) -> None:
    with pytest.raises(TypeError):
        py_pack_command((b"SET", "k", bad))
    assert py_pack_command((b"A", bytearray(b"z"))) == b"*2\r\n$1\r\nA\r\n$1\r\nz\r\n"


# -- configuration ---------------------------------------------------------------------------


def test_url_parsing_full() -> None:
    cfg = RedisConfig.from_url(
        "redis://alice:s%40cret@example.com:6380/3?client_name=svc&connect_timeout=1.5"
        "&command_timeout=2&max_dedicated=4&max_pending=10"
    )
    assert (cfg.host, cfg.port, cfg.db) == ("example.com", 6380, 3)
    assert (cfg.username, cfg.password, cfg.client_name) == ("alice", "s@cret", "svc")
    assert (cfg.connect_timeout, cfg.command_timeout) == (1.5, 2.0)
    assert (cfg.max_dedicated, cfg.max_pending) == (4, 10)
    assert not cfg.tls
    assert cfg.make_ssl_context() is None
    assert "s@cret" not in cfg.address
    assert cfg.address == "redis://example.com:6380/3"


def test_url_parsing_password_only_tls_unix() -> None:
    cfg = RedisConfig.from_url("rediss://:pw@h")
    assert cfg.username is None
    assert cfg.password == "pw"
    assert cfg.tls
    assert cfg.port == 6379
    assert isinstance(cfg.make_ssl_context(), ssl.SSLContext)
    insecure = RedisConfig.from_url("rediss://h?ssl_cert_reqs=none")
    ctx = insecure.make_ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname
    required = RedisConfig.from_url("rediss://h?ssl_cert_reqs=required")
    assert required.ssl_context is not None
    assert required.ssl_context.verify_mode == ssl.CERT_REQUIRED
    unix = RedisConfig.from_url("unix:///run/redis.sock?db=2&password=pw&username=u")
    assert (unix.unix_path, unix.db, unix.password, unix.username) == (
        "/run/redis.sock",
        2,
        "pw",
        "u",
    )
    assert unix.address == "unix:/run/redis.sock"
    assert RedisConfig.from_url("redis://h/1", db=5).db == 5
    assert RedisConfig.from_url("redis://h").with_options(db=7).db == 7


@pytest.mark.parametrize(
    ("url", "word"),
    [
        ("", "non-empty"),
        ("http://h", "scheme"),
        ("redis://h:99999", "port"),
        ("redis://h/abc", "database"),
        ("redis://h?db=x", "db"),
        ("redis://h?nope=1", "nope"),
        ("redis://h?connect_timeout=-1", "connect_timeout"),
        ("redis://h?command_timeout=abc", "command_timeout"),
        ("redis://h?max_pending=0", "max_pending"),
        ("redis://h?max_dedicated=x", "max_dedicated"),
        ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("unix://", "socket path"),
    ],
)
def test_bad_urls_name_the_problem(url: str, word: str) -> None:
    with pytest.raises(DBError, match=word) as info:
        RedisConfig.from_url(url)
    assert isinstance(info.value, ValueError)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="'db'"):
        RedisConfig(db=-1)
    with pytest.raises(ValueError, match="port"):
        RedisConfig(port=0)
    with pytest.raises(ValueError, match="reconnect_backoff_max"):
        RedisConfig(reconnect_backoff_max=0)
    assert RedisConfig(connect_timeout=None).connect_timeout is None


# -- conversions and errors ------------------------------------------------------------------


def test_transforms() -> None:
    assert _transforms.to_ok(b"OK")
    assert not _transforms.to_ok(None)
    assert _transforms.to_bool(1)
    assert not _transforms.to_bool(0)
    assert _transforms.to_float(b"1.5") == 1.5
    assert _transforms.to_float(None) is None
    assert _transforms.to_pairs_dict([b"a", b"1", b"b", b"2"]) == {b"a": b"1", b"b": b"2"}
    assert _transforms.to_set([b"a", b"a"]) == {b"a"}
    assert _transforms.to_scored([b"m", b"2"]) == [(b"m", 2.0)]
    assert _transforms.to_str(b"x") == "x"
    assert _transforms.to_str(3) == "3"
    assert _transforms.to_str_list([b"a", b"b"]) == ["a", "b"]


def test_reply_error_mapping() -> None:
    err = reply_error(ReplyError("WRONGTYPE Operation against a key"), b"GET")
    assert isinstance(err, RedisCommandError)
    assert err.code == "WRONGTYPE"
    assert err.command == "GET"
    assert "GET" in str(err)
    assert isinstance(reply_error(ReplyError("NOSCRIPT No matching script")), NoScriptError)
    assert isinstance(reply_error(ReplyError("WRONGPASS invalid"), "AUTH"), AuthenticationError)
    assert type(reply_error(ReplyError("NOPERM no access"), b"GET")) is RedisCommandError
    assert isinstance(
        reply_error(ReplyError("NOAUTH Authentication required.")), AuthenticationError
    )
    assert isinstance(reply_error(ReplyError("NOAUTH x"), b"GET"), AuthenticationError)
    assert RedisCommandError("").code == "ERR"


def test_statistics_snapshot_empty() -> None:
    snap = Stats().snapshot()
    assert snap.commands == 0
    assert snap.batch_size_mean == 0.0
