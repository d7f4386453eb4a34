"""The router: typed parameters, conflicts, mounts, and property tests."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcoro.http import Request, Route, Router


async def handler(request: Request, **kw: Any) -> str:
    return "ok"


def test_static_and_typed_params() -> None:
    r = Router()
    r.add_route("/", handler)
    r.add_route("/users/{id:int}", handler, ["GET", "DELETE"])
    r.add_route("/users/me", handler)
    r.add_route("/p/{x:float}", handler)
    r.add_route("/u/{u:uuid}", handler)
    r.add_route("/s/{name:str}/edit", handler)
    r.add_route("/f/{rest:path}", handler)
    found = r.lookup("/users/7")
    assert found is not None
    match, params = found
    assert params == {"id": 7}
    assert match.allow == "GET, HEAD, DELETE, OPTIONS"
    me = r.lookup("/users/me")
    assert me is not None and me[1] is None  # noqa: PT018
    assert r.lookup("/p/1.5")[1] == {"x": 1.5}  # type: ignore[index]
    assert r.lookup("/p/nan") is None
    u = uuid.uuid4()
    assert r.lookup(f"/u/{u}")[1] == {"u": u}  # type: ignore[index]
    assert r.lookup("/u/zzz") is None
    assert r.lookup("/s/bob/edit")[1] == {"name": "bob"}  # type: ignore[index]
    assert r.lookup("/s//edit") is None
    assert r.lookup("/f/a/b")[1] == {"rest": "a/b"}  # type: ignore[index]
    assert r.lookup("/f/") is None
    assert r.lookup("/users/-1") is None
    assert r.lookup("/nothing") is None
    assert r.lookup("relative") is None


def test_backtracking_between_static_and_param() -> None:
    r = Router()
    r.add_route("/a/b/c", handler)
    r.add_route("/a/{x}/d", handler)
    assert r.lookup("/a/b/d")[1] == {"x": "b"}  # type: ignore[index]
    assert r.lookup("/a/b/c")[1] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nope", "must be a string starting"),
        ("/a/{b", "is not a"),
        ("/a/{b:zzz}", "unknown parameter type"),
        ("/a/{b:path}/c", "must be the last segment"),
        ("/a/{b}/{b}", "appears twice"),
    ],
)
def test_bad_templates(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Route(path, handler)


def test_bad_routes() -> None:
    with pytest.raises(TypeError, match="async function"):
        Route("/", lambda request: None)
    with pytest.raises(ValueError, match="not an HTTP method"):
        Route("/", handler, ["FETCH"])
    with pytest.raises(ValueError, match="max_body_size"):
        Route("/", handler, max_body_size=-1)
    r = Router()
    r.add_route("/x", handler)
    r.add_route("/x", handler)
    with pytest.raises(ValueError, match="registered twice"):
        r.compile()
    r = Router()
    r.add_route("/x/{a}", handler)
    r.add_route("/x/{b}/y", handler)
    with pytest.raises(ValueError, match="conflicts"):
        r.compile()
    r = Router()
    r.add_route("/x/{a:path}", handler)
    r.add_route("/x/{b:path}", handler, ["POST"])
    with pytest.raises(ValueError, match="conflicts"):
        r.compile()
    with pytest.raises(ValueError, match="prefix"):
        r.mount("api", Router())
    with pytest.raises(ValueError, match="into itself"):
        r.mount("/api", r)


def test_callable_object_handler_and_decorators() -> None:
    class H:
        async def __call__(self, request: Request) -> str:
            return "ok"

    r = Router()
    r.add_route("/obj", H())
    for method in ("get", "post", "put", "patch", "delete", "head", "options"):
        getattr(r, method)(f"/{method}")(handler)
    r.route("/multi", ["GET", "POST"], name="multi", max_body_size=10)(handler)
    names = {route.path: route for route in r.routes()}
    assert names["/multi"].name == "multi"
    assert names["/multi"].max_body_size == 10
    assert r.lookup("/head")[0].routes["HEAD"].path == "/head"  # type: ignore[index]
    assert "Route('/obj'" in repr(names["/obj"])


def test_mounts_flatten_late_routes() -> None:
    root = Router()
    api = Router()
    v1 = Router()
    root.mount("/api", api)
    api.mount("/v1", v1)

    @v1.get("/items/{id:int}")
    async def item(request: Request, id: int) -> str:
        return "x"

    @api.get("/")
    async def api_index(request: Request) -> str:
        return "i"

    root.add_route("/", handler)
    paths = sorted(route.path for route in root.routes())
    assert paths == ["/", "/api", "/api/v1/items/{id:int}"]
    assert root.lookup("/api/v1/items/3")[1] == {"id": 3}  # type: ignore[index]
    slash = Router()
    slash.mount("/", api)
    assert "/" in [route.path for route in slash.routes()]


segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(segment, st.sampled_from(["{p:int}", "{q}"])), min_size=1, max_size=5),
        min_size=1,
        max_size=12,
        unique_by=lambda segs: tuple("{" if s.startswith("{") else s for s in segs),
    ),
    st.data(),
)
def test_every_registered_template_matches_its_own_paths(
    templates: list[list[str]], data: st.DataObject
) -> None:
    r = Router()
    added = []
    for segs in templates:
        # Give parameters unique names per template.
        named = [
            s.replace("{p", f"{{p{i}").replace("{q", f"{{q{i}") if s.startswith("{") else s
            for i, s in enumerate(segs)
        ]
        path = "/" + "/".join(named)
        r.add_route(path, handler)
        added.append((path, segs))
    try:
        r.compile()
    except ValueError:
        return  # two templates with differently named params at one position: refused loudly
    for _path, segs in added:
        concrete = []
        for s in segs:
            if s.startswith("{p"):
                concrete.append(str(data.draw(st.integers(0, 10**6))))
            elif s.startswith("{q"):
                concrete.append(data.draw(segment))
            else:
                concrete.append(s)
        found = r.lookup("/" + "/".join(concrete))
        assert found is not None
        # The match is a route whose template fits the concrete path (static segments win).
        template = found[0].template.split("/")[1:]
        assert len(template) == len(concrete)
        for t, c in zip(template, concrete, strict=True):
            assert t.startswith("{") or t == c


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_lookup_never_raises(path: str) -> None:
    r = Router()
    r.add_route("/a/{x:int}", handler)
    r.add_route("/b/{y:float}/{z:uuid}", handler)
    r.add_route("/c/{rest:path}", handler)
    r.lookup(path)
