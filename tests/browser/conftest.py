"""Browser tests: headless Chromium clicks the H5 pages the sandbox serves, which call `medpay web`
(a real process) through the sandbox's proxy; a real worker completes the payments."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from backend.audit import full_audit
from backend.platform.runtime import Runtime
from backend.seed import seed
from backend.settings import Settings
from tests import servers

# Debian's chromium: Playwright's own browser download cannot reach its hosts from here.
CHROMIUM = os.environ.get("MEDPAY_CHROMIUM", "/usr/bin/chromium")
# The flags this machine needs: no sandbox as root, and no background calls to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = servers.ROOT / "artifacts" / "browser"  # git-ignored
DOC_SHOTS = servers.ROOT / "docs" / "screenshots"
# The few shown in the README and docs/pages.md.
DOC_NAMES = {"login", "qr", "bill", "cashier", "paid", "terminal", "inbox", "appointments"}
Shot = Callable[[Page, str], Awaitable[None]]
OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture(scope="session")
def chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return CHROMIUM


# A real worker consumes the queue: it must be gone before the other tests' modules, which run
# their jobs themselves (`run_worker`), hence module scope, and the web process with it.
@pytest.fixture(scope="module")
def web_url(settings: Settings, runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API served by `medpay web`, where the channels post their notifications."""
    with servers.web(settings, tmp_path_factory.mktemp("web") / "web.log") as url:
        yield url


@pytest.fixture(scope="module")
def worker(settings: Settings, runtime: Runtime) -> Iterator[None]:
    process = servers.arq_worker(settings)
    try:
        yield
    finally:
        process.terminate()
        try:  # a worker stops once its jobs are cancelled and its pools closed: give it a minute
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(autouse=True)
async def demo_hospital(
    clean_slate: None, sandbox_http: httpx.AsyncClient, web_url: str, worker: None
) -> AsyncIterator[None]:
    """The demo institutions, partners and policies, the pages' proxy pointed at our web process;
    after the test, the books must be clean."""
    await seed()
    answer = await sandbox_http.put("/_web/config", json={"api": web_url})
    assert answer.status_code == 200, answer.text
    yield
    problems, _ = await full_audit()
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)


@pytest.fixture
async def new_page(browser: Browser, sandbox_http: httpx.AsyncClient) -> AsyncIterator[OpenPage]:
    """A phone (or desk) of its own: a browser context, its page opened at a sandbox path; every
    script error on it fails the test."""
    contexts = []
    errors: list[str] = []

    async def open_page(path: str, phone: bool = True) -> Page:
        viewport = {"width": 375, "height": 780} if phone else {"width": 1000, "height": 900}
        context = await browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{sandbox_http.base_url}{path}")
        return page

    yield open_page
    for context in contexts:
        await context.close()
    assert errors == [], errors


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shot:
    """A screenshot as a test artifact (`artifacts/browser/`); with MEDPAY_DOC_SCREENSHOTS=1, the docs'
    ones also as small palette PNGs (`docs/screenshots/`)."""

    async def take(page: Page, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        await page.screenshot(path=path)
        if os.environ.get("MEDPAY_DOC_SCREENSHOTS") and name in DOC_NAMES:
            small(path, DOC_SHOTS / f"{name}.png")

    return take


def small(source: Path, target: Path) -> None:
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as picture:
        picture.convert("RGB").quantize(colors=64).save(target, optimize=True)
