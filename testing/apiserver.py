"""``python -m kcp_tmc.testing.apiserver --port N``: the fake API server as a process.

Prints the URL and the kubeconfig path, then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence

from kcp_tmc.testing.server import FakeAPIServer


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the server in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m kcp_tmc.testing.apiserver", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    parser.add_argument("--kubeconfig", help="also write a kubeconfig to this path")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN=USER[:GROUP,GROUP]",
        help="accept this bearer token (repeatable); with any, requests need a token",
    )
    parser.add_argument("--rules", help="JSON file of authorization rules")
    parser.add_argument("--watch-window", type=int, default=1000, help="events kept for resuming watches")
    args = parser.parse_args(argv)
    tokens: dict[str, tuple[str, list[str]]] | None = None
    if args.token:
        tokens = {}
        for spec in args.token:
            token, _, who = spec.partition("=")
            user, _, groups = who.partition(":")
            if not token or not user:
                parser.error(f"--token wants TOKEN=USER[:GROUPS], got {spec!r}")
            tokens[token] = (user, [g for g in groups.split(",") if g])
    rules = None
    if args.rules:
        with open(args.rules, encoding="utf-8") as handle:
            rules = json.load(handle)
    server = FakeAPIServer(
        tls=not args.no_tls,
        tokens=tokens,
        rules=rules,
        watch_window=args.watch_window,
        port=args.port,
        host=args.host,
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with server:
            if args.kubeconfig:
                server.write_kubeconfig(args.kubeconfig)
            announcement = {"url": server.url, "kubeconfig": args.kubeconfig or server.kubeconfig_path}
            print(json.dumps(announcement), flush=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
