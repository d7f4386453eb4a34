"""Unit tests of the client's pure pieces: URLs, headers, cookies, configuration, decoders."""

from __future__ import annotations

import gzip
import ssl
import time
import zlib

import pytest

from flowcoro.http.client import Client, CookieJar, Headers, InvalidURL, Limits, Response, Timeout
from flowcoro.http.client._decoders import decode_all, make_decoder
from flowcoro.http.client._url import join_url, parse_url


def test_parse_url_and_cache() -> None:
    t = parse_url("http://Example.com/a b?x=1")
    assert (t.scheme, t.host, t.port, t.target) == ("http", "example.com", 80, "/a%20b?x=1")
    assert t.host_header == "example.com"
    assert parse_url("http://Example.com/a b?x=1") is t
    t = parse_url("https://[::1]:8443", params="q=1")
    assert (t.host_header, t.target, t.url) == ("[::1]:8443", "/?q=1", "https://[::1]:8443/?q=1")
    t = parse_url("http://bücher.example/", params={"f": False, "n": 1.5})
    assert t.host == "xn--bcher-kva.example"
    assert t.target == "/?f=false&n=1.5"
    assert parse_url("http://h/p", params=[("a", "1"), ("a", "2")]).target == "/p?a=1&a=2"
    with pytest.raises(InvalidURL, match="bad host name"):
        parse_url("http://a\u3002\u3002b/")
    for i in range(600):  # the cache is bounded
        parse_url(f"http://h/{i}")
    assert join_url("http://h/a/b", "../c") == "http://h/c"


def test_headers_mapping() -> None:
    h = Headers([("A", "1"), ("a", "2"), ("Set-Cookie", "x=1"), ("B", "3")])
    assert h["a"] == "1, 2"
    assert h.get_list("A") == ["1", "2"]
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    assert "b" in h
    assert 1 not in h
    assert list(h) == ["a", "set-cookie", "b"]
    assert len(h) == 3
    assert h == Headers(h)
    assert h == {"A": "1, 2", "set-cookie": "x=1", "b": "3"}
    assert h != 5
    assert "Headers(" in repr(h)
    raw = Headers.from_raw([(b"Content-Type", b"text/plain")])
    assert raw["content-type"] == "text/plain"
    assert Headers({"X": "1"}).items_list() == [("X", "1")]
    assert Headers().items_list() == []


def test_config_validation() -> None:
    assert Timeout.of(5) == Timeout(5.0, 5.0, 5.0, 5.0)
    assert Timeout.of(None) == Timeout(None, None, None, None)
    assert Timeout.of(Timeout(read=1)).read == 1
    with pytest.raises(TypeError, match="'timeout' must be a number"):
        Timeout.of("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'read' must be > 0"):
        Timeout.of(Timeout(read=0))
    with pytest.raises(ValueError, match="'max_body_size' must be an int >= 1"):
        Limits(max_body_size=0).validate()
    with pytest.raises(ValueError, match="Limits: 'keepalive_expiry'"):
        Limits(keepalive_expiry=-1).validate()
    with pytest.raises(TypeError, match="'limits' must be a Limits"):
        Client(limits={"max_body_size": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'max_redirects' must be an int"):
        Client(max_redirects=True)
    with pytest.raises(ValueError, match="'max_redirects' must be >= 0"):
        Client(max_redirects=-1)
    with pytest.raises(TypeError, match="'verify' must be"):
        Client(verify=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidURL):
        Client(base_url="ftp://x")
    with pytest.raises(ValueError, match="latin-1"):
        Client(headers={"X": "\u2603"})
    client = Client(timeout=3, limits=Limits(max_connections_per_host=3))
    assert client.timeout == Timeout(3.0, 3.0, 3.0, 3.0)
    assert client.limits.max_connections_per_host == 3
    assert client.pool_statistics() == {}
    ctx = ssl.create_default_context()
    assert Client(verify=ctx)._origins.ssl_context() is ctx
    with pytest.raises(ValueError, match=r"'verify' .* cannot load"):
        Client(verify="/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="'cert'"):
        Client(cert="/nonexistent/cert.pem")
    no_verify = Client(verify=False)._origins.ssl_context()
    assert no_verify.verify_mode == ssl.CERT_NONE


def test_decoders() -> None:
    raw = b"data " * 1000
    for encoded, name in (
        (gzip.compress(raw), b"gzip"),
        (zlib.compress(raw), b"deflate"),
    ):
        decoder = make_decoder(name)
        assert decoder is not None
        out = b"".join(decoder.decode(encoded[i : i + 7]) for i in range(0, len(encoded), 7))
        assert out + decoder.flush() == raw
        assert decode_all(name, encoded, len(raw)) == raw
        assert decode_all(name, encoded, len(raw) - 1) is None
    obj = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflate = obj.compress(raw) + obj.flush()
    decoder = make_decoder(b"deflate")
    assert decoder is not None
    assert decoder.decode(raw_deflate) + decoder.flush() == raw
    assert make_decoder(b"br") is None
    assert make_decoder(None) is None
    # A tail that only appears on flush still counts against the limit.
    assert decode_all(b"gzip", gzip.compress(b""), 0) == b""


def test_cookie_jar() -> None:
    jar = CookieJar()
    assert jar.header_for("http", "h", "/") is None
    jar.extract(
        "api.example.com",
        "/v1/items",
        [
            "a=1",
            "b=2; Domain=example.com; Path=/v1",
            "c=3; Secure",
            "d=4; Domain=other.com",
            "e=5; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
            "f=6; Expires=nonsense",
            "g=7; Max-Age=bad",
            "h=8; Path=/v1/items/deep",
            "bad cookie ;;; =",
            'i="quoted"; Max-Age=3600',
        ],
    )
    assert len(jar) == 7
    assert jar.get("a") == "1"
    assert jar.get("b", domain="example.com") == "2"
    assert jar.get("d") is None
    assert jar.get("e") is None
    header = jar.header_for("http", "api.example.com", "/v1/items/deep/x")
    assert header is not None
    assert header.startswith("h=8")
    assert "c=3" not in header
    assert "c=3" in (jar.header_for("https", "api.example.com", "/v1/items") or "")
    assert jar.header_for("http", "www.example.com", "/v1") == "b=2"
    assert jar.header_for("http", "www.example.com", "/v10") is None
    assert jar.header_for("http", "api.example.com", "/other") is None  # default path /v1
    assert jar.header_for("http", "elsewhere.org", "/") is None
    jar.set("z", "9", "elsewhere.org")
    assert jar.header_for("http", "sub.elsewhere.org", "/") == "z=9"
    jar.extract("api.example.com", "/v1/x", ["a=1; Max-Age=0"])
    assert jar.get("a") is None
    jar._cookies[("api.example.com", "/", "old")] = jar._cookies[("elsewhere.org", "/", "z")]
    jar._cookies[("api.example.com", "/", "old")].expires = time.time() - 1
    assert jar.header_for("http", "nothing.here", "/") is None
    assert ("api.example.com", "/", "old") not in jar._cookies
    jar.clear()
    assert len(jar) == 0
    jar.extract("h", "", ["p=1"])
    assert jar.header_for("http", "h", "/") == "p=1"


def test_response_in_memory() -> None:
    r = Response(
        200,
        method="GET",
        url="http://h/",
        headers=Headers({"Content-Type": "text/plain; charset=latin-1"}),
        content="é".encode("latin-1"),
    )
    assert r.encoding == "iso8859-1"
    assert r.text == "é"
    assert r.reason_phrase == "OK"
    r = Response(299, method="GET", url="http://h/", content=b'{"a": 1}')
    assert r.reason_phrase == ""
    assert r.encoding == "utf-8"
    assert r.json(parse_float=str) == {"a": 1}
    r = Response(
        200,
        method="GET",
        url="http://h/",
        headers=Headers({"Content-Type": "text/plain; charset=bogus"}),
        content=b"x",
    )
    assert r.encoding == "utf-8"
