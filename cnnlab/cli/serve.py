"""``cnnlab serve``: start the web lab on a local address and print its URL."""

from __future__ import annotations

import argparse
import socket
import sys

from cnnlab.cli._common import Formatter
from cnnlab.engine.errors import CnnlabError, MissingPackageError

DESCRIPTION = """\
Start the web lab: draw a digit and watch the network read it, train a network live, and
step through a convolution. The page works offline; it is served from this machine only
unless --host says otherwise. Without --model the lab starts with the newest run in
--runs-dir whose model reads the digits 0-9 (28x28 grey: what the Draw tab is for), else the
newest run; without any run the page offers to train one. It prints the lab's address, then
which model it started with and why. Stop with Ctrl-C.

examples:
  cnnlab serve
  cnnlab serve --model runs/20250101-120000 --port 8080
"""


# Connections served at once; more get a 503 at once instead of queueing without bound.
LIMIT_CONNECTIONS = 200


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="start the web lab (draw, train, convolution)",
        description=DESCRIPTION,
        formatter_class=Formatter,
    )
    p.add_argument("--model", metavar="MODEL", help="model file or run folder to start with")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name the lab answers for besides the loopback names and --host "
        "(e.g. this machine's name with --host 0.0.0.0); repeatable",
    )
    p.add_argument("--runs-dir", default="runs", help="where run folders are listed and written")
    p.add_argument(
        "--data-dir", default=None, help="folder holding MNIST / Fashion-MNIST files for training"
    )
    p.set_defaults(func=run)


def _bind(host: str, port: int) -> socket.socket:
    """Open the listening socket here, so a busy port is a clear one-line error."""
    if not 0 <= port <= 65535:
        raise CnnlabError(f"--port must be 0 to 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise CnnlabError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); "
            "choose another --port or --host"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _return_freed_memory() -> None:
    """Serve every allocation over 1 MB from its own mapping, returned to the system when freed.

    glibc raises its mmap threshold after the first big free, after which a decoded picture's
    buffers come from per-thread arenas that never shrink: 16 parallel 4000×4000 PNGs left the
    lab at 1.5 GB resident; with the threshold fixed at 1 MB, 0.46 GB (benchmarks/hostile.py).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):  # glibc; elsewhere the default stays
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from cnnlab.web.app import create_app
        from cnnlab.web.security import GuardedHttpToolsProtocol
    except ImportError as err:
        raise MissingPackageError(f"the web lab needs {err.name}", "lab") from None
    app = create_app(
        args.model,
        runs_dir=args.runs_dir,
        data_dir=args.data_dir,
        hosts=(args.host, *args.allow_host),
    )
    _return_freed_memory()
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"cnnlab lab: http://{shown}:{port}/", flush=True)
    active, why = app.state.registry.active(), app.state.registry.why
    print(f"model: {active[0] if active else 'none'} ({why})", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {args.host}: other machines can reach the lab",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        workers=1,
        http=GuardedHttpToolsProtocol,  # bounds the request head in bytes and seconds
        timeout_keep_alive=5,
        limit_concurrency=LIMIT_CONNECTIONS,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0
