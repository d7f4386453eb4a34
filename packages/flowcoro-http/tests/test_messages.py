"""Pure pieces: headers, cookies, forms, responses, limits, errors, the request object."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcoro.http import (
    BodyTooLarge,
    FormError,
    Headers,
    HeaderValueError,
    HTTPException,
    HTTPLimits,
    JSONResponse,
    MultiDict,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    State,
    StreamingResponse,
    problem,
)
from flowcoro.http._date import date_line
from flowcoro.http.cookies import build_set_cookie, parse_cookies
from flowcoro.http.forms import parse_multipart, parse_urlencoded
from flowcoro.http.headers import check_header
from flowcoro.http.response import status_line, to_response


def test_headers_case_insensitive_multi() -> None:
    h = Headers([(b"content-type", b"text/plain"), (b"x-a", b"1"), (b"x-a", b"2")])
    assert h["Content-Type"] == "text/plain"
    assert h.get("X-A") == "1"
    assert h.getlist("x-a") == ["1", "2"]
    assert h.get("missing") is None
    assert "X-A" in h
    assert 3 not in h
    assert len(h) == 2
    assert list(h) == ["content-type", "x-a"]
    assert h.multi_items()[2] == ("x-a", "2")
    assert h.raw[0] == (b"content-type", b"text/plain")
    assert "x-a" in repr(h)
    assert Headers({"A": "b"})["a"] == "b"
    assert len(Headers()) == 0
    with pytest.raises(KeyError):
        Headers()["x"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("x", "a\r\nb"), ("x", "a\nb"), ("x", "a\x00"), ("bad name", "v"), ("", "v"), ("x", "é€")],
)
def test_check_header_refuses_splitting(name: str, value: str) -> None:
    with pytest.raises(HeaderValueError):
        check_header(name, value)


def test_response_headers_and_framing() -> None:
    r = Response("hé", media_type="text/csv", headers={"X-One": "1"})
    assert r.media_type == "text/csv; charset=utf-8"
    assert r.body == "hé".encode()
    with pytest.raises(HeaderValueError):
        r.set_header("x-evil", "a\r\nset-cookie: x=1")
    with pytest.raises(ValueError, match="set by the server"):
        r.set_header("Content-Length", "3")
    r.set_header("content-type", "text/x")
    assert r.media_type == "text/x"
    head = r.head(3, False, b"date: d\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: text/x\r\n")
    assert b"x-one: 1\r\n" in head
    assert head.endswith(b"connection: close\r\n\r\n")
    assert r.encode(True, b"", True) == r.head(3, True, b"")
    chunked = r.head(None, True, b"", chunked=True)
    assert b"transfer-encoding: chunked" in chunked
    assert b"content-length" not in Response(b"", 204).head(0, True, b"")
    assert Response(bytearray(b"ab")).body == b"ab"  # type: ignore[arg-type]
    assert status_line(299) == b"HTTP/1.1 299 \r\n"
    with pytest.raises(ValueError, match="status"):
        Response(b"", 700).encode(True, b"", False)
    big = Response(b"x" * 5000)
    assert b"content-length: 5000\r\n" in big.encode(True, b"", False)
    assert (
        repr(PlainTextResponse("a"))
        == "PlainTextResponse(status=200, media_type='text/plain; charset=utf-8')"
    )


def test_other_responses() -> None:
    assert JSONResponse({"a": 1}).body == b'{"a":1}'
    with pytest.raises(ValueError, match="redirect"):
        RedirectResponse("/x", status=200)
    s = StreamingResponse([b"a"], content_length=1)
    assert s.content_length == 1
    assert to_response("x").media_type == "text/plain; charset=utf-8"
    assert to_response([1]).body == b"[1]"
    assert to_response(memoryview(b"m")).body == b"m"
    assert to_response(None).status == 204
    with pytest.raises(TypeError, match="returned int"):
        to_response(3)
    p = problem(422, "bad", title="Custom", field="x")
    assert (
        p.body == b'{"type":"about:blank","title":"Custom","status":422,"detail":"bad","field":"x"}'
    )
    assert b'"title":"Error"' in problem(599).body


def test_cookies() -> None:
    assert parse_cookies('a=1; b="2"; =x; c; a=9') == {"a": "1", "b": "2"}
    cookie = build_set_cookie(
        "k",
        "v",
        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        domain="example.com",
        secure=True,
        samesite="strict",
        path=None,
    )
    assert cookie == (
        "k=v; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Domain=example.com; Secure; SameSite=Strict"
    )
    assert build_set_cookie("k", samesite=None) == "k=; Path=/"
    with pytest.raises(HeaderValueError):
        build_set_cookie("bad name")
    with pytest.raises(HeaderValueError):
        build_set_cookie("k", path="/;evil")
    with pytest.raises(HeaderValueError):
        build_set_cookie("k", samesite="sideways")  # type: ignore[arg-type]


def test_urlencoded_form() -> None:
    form = parse_urlencoded(b"a=1&b=%C3%A9&a=2&empty=")
    assert form["a"] == "1"
    assert form.getlist("a") == ["1", "2"]
    assert form["b"] == "é"
    assert form["empty"] == ""
    with pytest.raises(FormError) as info:
        parse_urlencoded(b"&".join(b"k%d=v" % i for i in range(5)), HTTPLimits(max_form_fields=3))
    assert info.value.status == 413


def multipart(*parts: bytes, boundary: bytes = b"XyZ") -> bytes:
    out = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return out + b"--" + boundary + b"--\r\n"


def test_multipart_form() -> None:
    body = multipart(
        b'Content-Disposition: form-data; name="title"\r\n\r\nhello',
        b'Content-Disposition: form-data; name="file"; filename="a \\"b\\".txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nfile\r\ncontent",
    )
    form = parse_multipart(body, "XyZ")
    assert form["title"] == "hello"
    upload = form["file"]
    assert not isinstance(upload, str)
    assert upload.filename == 'a "b".txt'
    assert upload.content_type == "text/plain"
    assert upload.data == b"file\r\ncontent"
    assert upload.size == 13
    assert "UploadFile" in repr(upload)
    assert "MultiDict" not in repr(form)


@pytest.mark.parametrize(
    ("body", "boundary", "status"),
    [
        (b"whatever", "", 400),
        (b"--XyZ\r\nno end", "XyZ", 400),
        (b"--XyZjunk\r\n--XyZ--", "XyZ", 400),
        (multipart(b"no header block"), "XyZ", 400),
        (multipart(b"Bad-Line\r\n\r\nx"), "XyZ", 400),
        (multipart(b"Content-Disposition: attachment\r\n\r\nx"), "XyZ", 400),
    ],
)
def test_bad_multipart(body: bytes, boundary: str, status: int) -> None:
    with pytest.raises(FormError) as info:
        parse_multipart(body, boundary)
    assert info.value.status == status


def test_multipart_limits() -> None:
    field = b'Content-Disposition: form-data; name="f"\r\n\r\nx'
    up = b'Content-Disposition: form-data; name="u"; filename="f"\r\n\r\nx'
    with pytest.raises(FormError, match="fields"):
        parse_multipart(multipart(field, field, field), "XyZ", HTTPLimits(max_form_fields=2))
    with pytest.raises(FormError, match="files"):
        parse_multipart(multipart(up, up), "XyZ", HTTPLimits(max_form_files=1))


def test_limits_validation() -> None:
    assert HTTPLimits().max_body_size == 1024 * 1024
    assert HTTPLimits().replace(max_pipeline=3).max_pipeline == 3
    with pytest.raises(TypeError, match="no field"):
        HTTPLimits().replace(nope=1)
    with pytest.raises(ValueError, match="must be positive"):
        HTTPLimits(max_body_size=0)
    with pytest.raises(TypeError, match="expected a number"):
        HTTPLimits(max_body_size="big")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a bool"):
        HTTPLimits(cancel_on_disconnect=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="read_buffer_low"):
        HTTPLimits(read_buffer_low=10, read_buffer_high=5)


def test_errors() -> None:
    exc = HTTPException(404, "gone")
    assert (exc.status, exc.title, str(exc)) == (404, "Not Found", "404 Not Found: gone")
    assert HTTPException(599).title == "Error"
    with pytest.raises(ValueError, match="status"):
        HTTPException(42)
    assert BodyTooLarge(10).limit == 10


async def test_request_without_connection() -> None:
    req = Request(
        "POST",
        "/p",
        b"x=1&y",
        [(b"content-type", b"application/json; charset=x")],
        body=b'{"a": 1}',
    )
    assert req.content_type == "application/json"
    assert await req.body() == b'{"a": 1}'
    assert await req.json() == {"a": 1}
    assert [c async for c in req.stream()] == [b'{"a": 1}']
    assert req.query["y"] == ""
    assert req.cookies == {}
    assert isinstance(req.state, State)
    assert "State" in repr(req.state)
    assert repr(req) == "Request(POST '/p')"
    assert req.id
    req2 = Request("GET", "/", body=b"")
    assert [c async for c in req2.stream()] == []
    empty = Request("GET", "/")
    assert await empty.body() == b""
    assert empty.body_complete
    with pytest.raises(HTTPException):
        await Request("POST", "/", body=b"{").json()
    assert MultiDict([("a", 1)]).multi_items() == [("a", 1)]


async def test_request_form_dispatch() -> None:
    form = Request(
        "POST", "/", b"", [(b"content-type", b"application/x-www-form-urlencoded")], body=b"a=1"
    )
    assert (await form.form())["a"] == "1"
    assert (await form.form())["a"] == "1"  # cached
    mp = Request(
        "POST",
        "/",
        b"",
        [(b"content-type", b'multipart/form-data; boundary="XyZ"')],
        body=multipart(b'Content-Disposition: form-data; name="t"\r\n\r\nv'),
    )
    assert (await mp.form())["t"] == "v"
    with pytest.raises(FormError) as info:
        await Request("POST", "/", body=b"").form()
    assert info.value.status == 415


def test_date_line() -> None:
    line = date_line()
    assert line.startswith(b"date: ")
    assert line.endswith(b" GMT\r\n")
    assert date_line() is line or date_line().startswith(b"date: ")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_cookie_parsing_never_raises(header: str) -> None:
    for name, value in parse_cookies(header).items():
        assert name
        assert ";" not in name
        assert ";" not in value
