"""Run the sandbox bank: `python -m miniprogram_stub.bank [--host 127.0.0.1] [--port 8101]
[--callback-url URL]`."""

import argparse
import signal
from types import FrameType

import uvicorn

from miniprogram_stub.bank import config
from miniprogram_stub.bank.app import create_app


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniprogram_stub.bank", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=config.DEFAULT_PORT)
    parser.add_argument(
        "--callback-url",
        default=config.CALLBACK_URL,
        help="where callbacks go (else SANDBOX_BANK_CALLBACK_URL, or later PUT /_bank/config)",
    )
    args = parser.parse_args(argv)
    # uvicorn shuts down gracefully, restores these handlers, then re-raises the signal:
    # ours turn that into exit status 0 instead of a KeyboardInterrupt trace or a SIGTERM death.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_quietly)
    # One process: the books, faults, deliveries and recorded calls live in its memory.
    # Keep-alive longer than clients' (httpx: 5 s), as the sandbox's is.
    uvicorn.run(
        create_app(args.callback_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_keep_alive=30,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
