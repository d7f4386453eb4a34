"""The hello-world app: ``flowcoro serve examples.hello:app --port 8080``.

- ``GET /`` -> ``Hello, World!`` (text/plain)
- ``GET /json`` -> ``{"message": "Hello, World!"}``
- ``POST /echo`` -> the request body, with the request's content type
- ``GET /users/{id:int}`` -> ``{"id": <id>}``
"""

from __future__ import annotations

from flowcoro.http import App, JSONResponse, PlainTextResponse, Request, Response

app = App("hello")


@app.get("/")
async def hello(request: Request) -> Response:
    return PlainTextResponse("Hello, World!")


@app.get("/json")
async def hello_json(request: Request) -> Response:
    return JSONResponse({"message": "Hello, World!"})


@app.post("/echo")
async def echo(request: Request) -> Response:
    content_type = request.headers.get("content-type") or "application/octet-stream"
    return Response(await request.body(), media_type=content_type)


@app.get("/users/{id:int}")
async def user(request: Request, id: int) -> Response:
    return JSONResponse({"id": id})
