"""`medpay demo` walks the golden path against a running `medpay dev`, printing each step's figures."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_dev import BIN, start_dev, stop
from tests.servers import ROOT, free_port, wait_until_up


@pytest.mark.timeout(150)
def test_the_demo_walks_the_golden_path_against_a_running_system(tmp_path: Path) -> None:
    port, sandbox_port, bank_port = free_port(), free_port(), free_port()
    base, sandbox = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sandbox_port}"
    system = start_dev(tmp_path, port, sandbox_port, bank_port)
    try:
        wait_until_up(f"{base}/health/ready", timeout=90)
        wait_until_up(f"{sandbox}/health")
        started = time.monotonic()
        demo = subprocess.run(
            [str(BIN / "medpay"), "demo", "--api", base, "--sandbox", sandbox],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        took = time.monotonic() - started
    finally:
        stop(system)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    shown = demo.stdout
    # Her own bill: fund, her personal account (all ¥1,037.37 of it) and cash by WeChat Pay.
    assert (
        "presettle       fund ¥126.64 / personal account ¥1,037.37 (balance ¥1,037.37) / cash ¥165.99"
        in shown
    )
    assert shown.count("PAID, cash ¥165.99 by wechat") == 2  # hers, and her mother's
    assert "inbox           缴费成功 (payment_succeeded" in shown
    assert "granted manage" in shown
    assert "credit line     ACTIVE: limit ¥5,000.00" in shown
    assert "PAID, cash ¥803.36 by credit" in shown
    assert "drawdown        DISBURSED ¥803.36, owed ¥803.36 by " in shown
    assert "repaid          ¥803.36 at the bank's cashier: ¥5,000.00 available again" in shown
    assert took < 60, f"the demo took {took:.0f} s"


def test_demo_help_is_the_demos_own() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "backend.cli", "demo", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "--api" in shown and "--sandbox" in shown
