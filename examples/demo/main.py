"""FlowCoro demo, run by ``./tools/dev demo``: everything it needs is embedded (no services).

Runs an order pipeline built from the core pieces — App, Channel, Pool, deadlines, scopes,
thread offload, pub/sub and the structured logger — prints what it did, and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import run_pipeline

from flowcoro.core import App, configure_logging, run


async def main(orders: int) -> int:
    async with App("demo") as app:
        totals = await run_pipeline(app, orders=orders)
        report = await app.health.run()
    print(
        f"demo: {int(totals['orders'])} orders priced, revenue {totals['revenue']:.2f}, "
        f"{int(totals['late'])} over their deadline; health {'ok' if report.ok else 'failing'}"
    )
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200, help="orders to push through")
    parser.add_argument("--log-format", choices=("console", "json"), default="console")
    args = parser.parse_args(argv)
    configure_logging(format=args.log_format, level="info")
    return run(main(args.orders))


if __name__ == "__main__":
    sys.exit(cli())
