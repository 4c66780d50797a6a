"""The ``opskit`` command: ``opskit --version``, ``opskit demo`` and ``opskit health URL``."""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from opskit import __version__


def _serve(host: str, port: int) -> int:
    try:
        import uvicorn
    except ImportError:
        print("opskit demo needs uvicorn: pip install 'opskit[demo]'", file=sys.stderr)
        return 2
    from opskit.demo import build_app

    print(f"opskit {__version__} demo on http://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.run(build_app(), host=host, port=port, log_level="info", lifespan="on")
    return 0


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _request(method: str, url: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)  # noqa: S310 - a loopback URL we built
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def _check(host: str) -> int:
    """Start the demo on a free port, make real requests, print what was seen."""
    try:
        import uvicorn
    except ImportError:
        print("opskit demo --check needs uvicorn: pip install 'opskit[demo]'", file=sys.stderr)
        return 2
    from prometheus_client import CollectorRegistry

    from opskit.demo import build_app
    from opskit.demo._parts import default_parts

    registry = CollectorRegistry(auto_describe=True)
    parts = default_parts(registry)
    port = _free_port(host)
    config = uvicorn.Config(
        build_app(parts, registry), host=host, port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            print("FAIL demo server did not start")
            return 1
        time.sleep(0.05)
    base = f"http://{host}:{port}"
    checks: list[tuple[str, str, int]] = [
        ("GET", "/", 200),
        ("GET", "/metrics", 200),
        ("GET", "/ops/state.json", 200),  # what the front page refreshes from
        ("GET", "/nowhere", 404),
    ]
    for part in parts:
        checks.extend(part.checks)
    failures = 0
    try:
        for method, path, expected in checks:
            try:
                status, body = _request(method, base + path)
            except OSError as exc:
                status, body = 0, str(exc).encode()
            ok = status == expected
            failures += not ok
            snippet = body[:80].decode("utf-8", "replace").replace("\n", " ")
            mark = "ok  " if ok else "FAIL"
            print(f"{mark} {method} {path} -> {status} (want {expected}) {snippet}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    print(f"{len(checks) - failures} passed, {failures} failed")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["webhooks"]:  # its own parser, which never echoes an argument back
        from opskit.webhooks._cli import main as webhooks_main

        return webhooks_main(argv[1:])
    if argv[:1] == ["ops"]:  # its own parser: opskit ops rules|dashboard
        from opskit.ops._cli import main as ops_main

        return ops_main(argv[1:])
    parser = argparse.ArgumentParser(prog="opskit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"opskit {__version__}")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run the demo service (in-memory state)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--check", action="store_true", help="start it, make real requests, exit 0 or 1"
    )
    sub.add_parser("webhooks", help="sign or verify a webhook locally (opskit webhooks --help)")
    sub.add_parser("ops", help="print Prometheus rules or a Grafana dashboard (opskit ops --help)")
    health = sub.add_parser(
        "health", help="probe a health endpoint once: exit 0 on pass or warn, 1 otherwise"
    )
    health.add_argument("url")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    from opskit.pii import _cli as pii_cli

    pii_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "pii":
        return pii_cli.run(args)
    if args.command == "health":
        from opskit.health._cli import probe

        code, line = probe(args.url, args.timeout)
        print(line)
        return code
    if args.command == "demo":
        return _check(args.host) if args.check else _serve(args.host, args.port)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
