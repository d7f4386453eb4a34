"""examples/hello.py and the web demo (examples/demo) run as documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
from _http_helpers import serving

ROOT = Path(__file__).resolve().parents[3]


def load_hello() -> object:
    spec = importlib.util.spec_from_file_location("hello_example", ROOT / "examples" / "hello.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_hello_routes() -> None:
    app = load_hello().app  # type: ignore[attr-defined]
    async with (
        serving(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        r = await client.get("/")
        assert (r.text, r.headers["content-type"]) == ("Hello, World!", "text/plain; charset=utf-8")
        assert (await client.get("/json")).json() == {"message": "Hello, World!"}
        r = await client.post("/echo", content=b"<x/>", headers={"content-type": "text/xml"})
        assert (r.content, r.headers["content-type"]) == (b"<x/>", "text/xml")
        assert (await client.get("/users/12")).json() == {"id": 12}
        assert (await client.get("/users/twelve")).status_code == 404
