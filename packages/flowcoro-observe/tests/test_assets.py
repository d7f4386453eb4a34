"""The shipped Grafana dashboard and alert rules name only metrics that really exist."""

from __future__ import annotations

import asyncio
import json
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from flowcoro.core import Pool
from flowcoro.observe import ASSETS, CONNECTIONS, Observe

_PROMQL_WORDS = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_OURS = ("http_server_", "flowcoro_", "db_client_", "process_", "python_", "websocket_")


class Req:
    method = "GET"


def metric_names(expression: str) -> set[str]:
    expression = re.sub(r'"[^"]*"', "", expression)  # label values are not metric names
    return {w for w in _PROMQL_WORDS.findall(expression) if w.startswith(_OURS)}


async def exposed_sample_names() -> set[str]:
    async def factory() -> object:
        return object()

    async def close(resource: object) -> None:
        pass

    observe = Observe(loop_lag_interval=0.01)
    await observe.start(None)
    async with Pool(factory, name="db", close=close) as pool:
        async with pool.acquire():
            pass
        observe.http.request_finished(Req(), "/json", 500, 0.01)
        observe.ws.websocket_opened("/ws")
        observe.ws.websocket_message("/ws", True, True, 5)
        observe.ws.websocket_closed("/ws", 1000)
        CONNECTIONS.connection_opened(Req())
        CONNECTIONS.connection_closed(Req())
        await asyncio.sleep(0.03)
        body, _ = observe.scrape()
    await observe.stop()
    return {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}


async def test_every_metric_in_the_alert_rules_exists() -> None:
    rules = yaml.safe_load((ASSETS / "alerts.yml").read_text())
    expressions = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(expressions) == 5
    wanted = set().union(*(metric_names(e) for e in expressions))
    assert "db_client_connection_max" in wanted
    assert wanted <= await exposed_sample_names()


async def test_every_metric_in_the_dashboard_exists() -> None:
    dashboard = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    wanted = set().union(*(metric_names(e) for e in expressions))
    assert {
        "flowcoro_event_loop_lag_seconds_bucket",
        "process_open_fds",
        "websocket_connections_active",
        "websocket_messages_total",
    } <= wanted
    missing = wanted - await exposed_sample_names()
    assert not missing, missing
