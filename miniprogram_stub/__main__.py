"""Run the partner sandboxes: `python -m miniprogram_stub [--host 127.0.0.1] [--port 8100]`."""

import argparse
import signal
from types import FrameType

import uvicorn

from miniprogram_stub.sandbox.app import create_app


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniprogram_stub", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    # uvicorn shuts down gracefully, restores these handlers, then re-raises the signal:
    # ours turn that into exit status 0 instead of a KeyboardInterrupt trace or a SIGTERM death.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_quietly)
    # One process: faults, recorded calls and login codes live in its memory.
    # Keep-alive longer than clients' (httpx: 5 s), as partners' servers have it: a client then
    # never reuses a connection the server is closing.
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", timeout_keep_alive=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
