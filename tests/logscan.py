"""No secret and no personal data in any log line of a test session: a pytest plugin.

Every record the test process's logging hands to its handlers is rendered as the product renders
it (the formatter `configure_logging` put on the root logger) and kept; at the end the output of
our own processes that the tests started (`servers.web`, `servers.arq_worker`) is read from their
files. Each line is checked against the rules below, and against the real secret values the
session holds (settings, development and sandbox keys) searched for literally. A line that breaks
one fails the session, shown with what it holds masked. The partners' own processes (sandboxes,
bank) are not ours and not read.

Under pytest-xdist each worker scans its own lines and the controller adds up what they found.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests import servers

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "logscan"
# The whole suite logs tens of thousands of lines: a run of at least this many tests that saw
# fewer than MIN_LINES_PER_TEST each is not capturing, whatever it found.
FULL_RUN_TESTS = 300
MIN_LINES_PER_TEST = 3
CANARY = "logscan canary: the product's logging reaches the scan"
SHOWN = 20  # findings printed per rule

# GB 11643: weights of the first 17 digits, and the check character by the sum modulo 11.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# Names the tests give people outside insured.json and the 测试 pattern.
TEST_NAMES = ("张三", "李四", "王五", "赵六", "张三丰", "欧阳娜娜", "陈大文", "李秀英")


def resident_id_valid(text: str) -> bool:
    """An 18-character resident ID (or HK/Macau/Taiwan/foreigner permit) with a right check character."""
    total = sum(int(d) * w for d, w in zip(text[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == text[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


@dataclass(frozen=True)
class Rule:
    """A kind of secret: `pattern` finds candidates, `accept` (if any) keeps the real ones."""

    name: str
    pattern: re.Pattern[str]
    accept: Callable[[re.Match[str]], bool] | None = None
    group: int = 0  # the part of a match that is the secret (masked, and shown as the span)

    def spans(self, line: str) -> Iterator[tuple[int, int]]:
        for match in self.pattern.finditer(line):
            if self.accept is None or self.accept(match):
                yield match.span(self.group)


def _id_number(match: re.Match[str]) -> bool:
    return resident_id_valid(match.group(0))


def _card_number(match: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", match.group(0))
    # Alipay user ids (2088 and 12 digits) and app ids are not cards; a resident ID has its rule.
    if re.fullmatch(r"2088\d{12}|20\d{14}", digits) or (len(digits) == 18 and resident_id_valid(digits)):
        return False
    return luhn_valid(digits)


_NOT_WORD = r"(?<![0-9A-Za-z])"
_NOT_WORD_AFTER = r"(?![0-9A-Za-z])"
_B64URL = r"A-Za-z0-9_\-"
RULES: tuple[Rule, ...] = (
    Rule(
        "resident ID number",
        re.compile(
            _NOT_WORD
            + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
            + _NOT_WORD_AFTER
        ),
        _id_number,
    ),
    Rule(
        "card or account number",
        re.compile(_NOT_WORD + r"(?:\d{16,19}|\d{4}(?:[ -]\d{4}){3}(?:[ -]?\d{1,3})?)" + _NOT_WORD_AFTER),
        _card_number,
    ),
    Rule("JWT", re.compile(r"eyJ[" + _B64URL + r"]{4,}\.eyJ[" + _B64URL + r"]{4,}\.[" + _B64URL + r"]*")),
    Rule("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----")),
    Rule("Standard Webhooks secret", re.compile(r"whsk_[A-Za-z0-9+/=]{20,}")),
    # secrets.token_urlsafe(32): refresh tokens, OAuth client secrets, visit tokens.
    Rule(
        "opaque token (token_urlsafe(32))",
        re.compile(r"(?<![" + _B64URL + r"])[" + _B64URL + r"]{43}(?![" + _B64URL + r"=])"),
        lambda m: bool(re.search(r"[0-9]", m.group(0)) and re.search(r"[a-z]", m.group(0))),
    ),
    # WeChat's session_key: base64 of 16 random bytes.
    Rule("WeChat session_key", re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{22}==(?![A-Za-z0-9+/=])")),
    Rule(
        "a secret named by its key",
        re.compile(
            r"(?i)(?<![A-Za-z0-9_])(?:refresh_token|client_secret|session_key|password|passwd|secret"
            r"|app_secret|apiv3_key|api_key|private_key|signing_key|data_key|digest_key|js_code|auth_code"
            r"|authorization)['\"]?\s*[:=]\s*(?:b?['\"])?((?!\*|None\b|null\b|\[|\{)[^\s'\",;&)}\]]{6,})"
        ),
        group=1,
    ),
    Rule("password in a URL", re.compile(r"://[^/\s:@'\"]+:([^/\s@'\"]+)@"), group=1),
)


@dataclass
class Scanner:
    """The rules, the secret values searched for literally, and the names of the tests' people."""

    literals: dict[str, str] = field(default_factory=dict)  # value -> what it is
    names: frozenset[str] = frozenset()
    rules: tuple[Rule, ...] = RULES

    def __post_init__(self) -> None:
        values = sorted((v for v in self.literals if len(v) >= 8), key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, values))) if values else None
        names = sorted(self.names, key=len, reverse=True)
        # A 测试 name as the tests make them (测试林一, 测试12号), or one of the people they use.
        alternatives = [r"测试[\u4e00-\u9fff0-9]{0,8}", *map(re.escape, names)]
        self._names = re.compile("|".join(alternatives))

    def findings(self, line: str) -> list[tuple[str, int, int]]:
        """(rule, start, end) of each secret in `line`; JSON's \\u escapes are read as characters."""
        text = _unescaped(line)
        found = [(rule.name, *span) for rule in self.rules for span in rule.spans(text)]
        if self._literal is not None:
            for match in self._literal.finditer(text):
                found.append((f"secret value: {self.literals[match.group(0)]}", *match.span()))
        found += [("person's name", *match.span()) for match in self._names.finditer(text)]
        return found

    def masked(self, line: str) -> str:
        """`line` with what each finding holds replaced by `***` (after its first two characters, if
        it is longer than six)."""
        text = _unescaped(line)
        spans = sorted((start, end) for _, start, end in self.findings(text))
        out, at = [], 0
        for start, end in spans:
            if start < at:
                start = at
            if start >= end:
                continue
            out += [text[at:start], text[start : start + 2] if end - start > 6 else "", "***"]
            at = end
        return "".join([*out, text[at:]])


def _unescaped(line: str) -> str:
    if "\\u" not in line:
        return line
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), line)


def _pem_lines(path: Path) -> Iterator[str]:
    """The base64 lines of a private key's PEM: any of them in a log is the key, or part of it."""
    text = path.read_text()
    if "PRIVATE KEY" not in text:
        return
    for line in text.splitlines():
        if len(line) >= 40 and not line.startswith("-----"):
            yield line


def secret_values() -> dict[str, str]:
    """The secret values this session's processes hold: settings (as the tests' environment gives
    them), the development keys, and the sandbox partners' keys we could be handed."""
    import os

    from backend import settings as product
    from miniprogram_stub.bank import config as bank
    from miniprogram_stub.sandbox import config as sandbox

    env = {**os.environ, "MEDPAY_ENV": "test"}
    s = product.Settings.from_env(env)
    found: dict[str, str] = {
        s.wechat.secret: "MEDPAY_WECHAT_SECRET",
        s.wechatpay.apiv3_key: "MEDPAY_WECHATPAY_APIV3_KEY",
        s.ecert.app_secret: "MEDPAY_ECERT_APP_SECRET",
        s.ecert.data_key: "MEDPAY_ECERT_DATA_KEY",
        s.ecert.qr_key: "MEDPAY_ECERT_QR_KEY",
        s.vault.digest_key: "MEDPAY_VAULT_DIGEST_KEY",
        s.credit.request_signing_key: "MEDPAY_CREDIT_REQUEST_SIGNING_KEY",
        s.credit.request_signing_key.removeprefix("whsk_"): "MEDPAY_CREDIT_REQUEST_SIGNING_KEY",
        sandbox.PLATFORM_SECRET.decode(): "the e-certificate platform's secret",
    }
    for entry in s.vault.keys.split(","):
        found[entry.partition(":")[2]] = "MEDPAY_VAULT_KEYS"
    for name, key in bank.SIGNING_KEYS.items():
        found[key] = found[key.removeprefix("whsk_")] = f"the sandbox bank's signing key {name}"
    for value in (s.ecert.data_key, s.ecert.qr_key, s.vault.digest_key):
        raw = base64.b64decode(value)
        found[raw.hex()] = found[base64.urlsafe_b64encode(raw).decode().rstrip("=")] = "a key, re-encoded"
    keys = {
        s.auth.signing_key_file,
        s.alipay.app_private_key_file,
        s.wechatpay.merchant_private_key_file,
        *(ROOT / "backend" / "devkeys").glob("*.pem"),
        *(ROOT / "miniprogram_stub" / "keys").glob("*.pem"),
    }
    for path in keys:
        if path.is_file():
            found.update(dict.fromkeys(_pem_lines(path), f"private key {path.name}"))
    for password in (_url_password(s.database.url), _url_password(s.redis.url)):
        if password:
            found[password] = "a database or Redis password"
    return {value: what for value, what in found.items() if value}


def _url_password(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).password or "" if url else ""


def people() -> frozenset[str]:
    """The names of the sandbox's insured people and of the people the tests make up."""
    insured = json.loads((ROOT / "miniprogram_stub/sandbox/data/insured.json").read_text("utf-8"))
    return frozenset({person["name"] for person in insured} | set(TEST_NAMES))


@dataclass(frozen=True)
class Finding:
    rule: str
    source: str
    line: str  # masked

    def shown(self) -> str:
        return "\n".join(f"  [{self.source}] {line[:300]}" for line in self.line.split("\n")[:6])


class LogScan:
    """The plugin: keeps every rendered line of the session, scans them at its end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.lines: list[tuple[str, str]] = []  # (source, line)
        self.findings: list[Finding] = []
        self.counts: dict[str, int] = {}
        self.problems: list[str] = []  # why the scan could not vouch for the session
        self.tests = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._original: Any = None
        self._fallback = logging.Formatter("%(levelname)s %(name)s %(message)s")

    # -- capture -------------------------------------------------------------------------------

    def install(self) -> None:
        """Sees every record any logger hands its handlers, whatever handlers are set meanwhile
        (`configure_logging` replaces the root's)."""
        original = self._original = logging.Logger.callHandlers
        scan = self

        def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
            scan.keep(record)
            original(logger, record)

        logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        if self._original is not None:
            logging.Logger.callHandlers = self._original  # type: ignore[method-assign]
            self._original = None

    def formatter(self) -> logging.Formatter:
        for handler in logging.getLogger().handlers:
            if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
                return handler.formatter
        return self._fallback

    def keep(self, record: logging.LogRecord) -> None:
        # A record logged while one is rendered (the garbage collector's asyncio warnings can come
        # at any moment) is kept unrendered rather than rendered within the rendering.
        rendering = getattr(self._local, "rendering", False)
        try:
            self._local.rendering = True
            text = (self._fallback if rendering else self.formatter()).format(record)
        except Exception as exc:  # the record is still scanned, raw
            text = f"{record.msg!r} {record.args!r} (not rendered: {exc!r})"
        finally:
            self._local.rendering = rendering
        with self._lock:
            self.lines.append(("test process", text))

    # -- scan ----------------------------------------------------------------------------------

    def scan(self, scanner: Scanner) -> None:
        lines = list(self.lines)
        for path in dict.fromkeys(servers.LOG_FILES):  # a file written twice is read once
            try:
                text = path.read_text("utf-8", errors="replace")
            except OSError as exc:
                self.problems.append(f"{path} unreadable: {exc}")
                continue
            lines += [(path.name, line) for line in text.splitlines()]
        for source, text in lines:
            kind = re.sub(r"(-\d+)?\.log$", "", source)  # "arq-worker-3.log": arq-worker
            self.counts[kind] = self.counts.get(kind, 0) + text.count("\n") + 1
            found = scanner.findings(text)
            if not found:
                continue
            text = _unescaped(text)
            masked = scanner.masked(text).split("\n")
            for rule in sorted({f[0] for f in found}):
                # A record of many lines (a traceback): its first line, and those holding the secret.
                at = sorted({text.count("\n", 0, start) for name, start, _ in found if name == rule})
                shown = [masked[0], *(f"    | {masked[i]}" for i in at if i > 0)]
                self.findings.append(Finding(rule, source, "\n".join(shown)))

    def report(self) -> list[str]:
        shown: list[str] = []
        by_rule: dict[str, list[Finding]] = {}
        for finding in self.findings:
            by_rule.setdefault(finding.rule, []).append(finding)
        for rule, found in sorted(by_rule.items()):
            shown.append(f"{rule}: {len(found)} line(s)")
            shown += [f.shown() for f in found[:SHOWN]]
        return shown

    # -- pytest hooks --------------------------------------------------------------------------

    def role(self) -> str:
        """Under pytest-xdist "worker" or "controller", else "alone"."""
        if hasattr(self.config, "workerinput"):
            return "worker"
        return "controller" if self.config.pluginmanager.has_plugin("dsession") else "alone"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.tests += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        role = self.role()
        if role != "controller":
            self._finish_here()
        if role == "worker":  # the controller adds it up
            self.config.workeroutput[PLUGIN] = json.dumps(  # type: ignore[attr-defined]
                {
                    "counts": self.counts,
                    "problems": self.problems,
                    "findings": [vars(f) for f in self.findings],
                }
            )
            return
        lines = sum(self.counts.values())
        if self.tests >= FULL_RUN_TESTS and lines < self.tests * MIN_LINES_PER_TEST:
            self.problems.append(f"only {lines} log lines for {self.tests} tests: is the capture working?")
        if (self.findings or self.problems) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _finish_here(self) -> None:
        if self.formatter() is not self._fallback:  # the product configured logging: check we see it
            self._canary()
        self.uninstall()
        if self.tests:
            self.scan(Scanner(secret_values(), people()))

    def _canary(self) -> None:
        """A line through structlog, as the product logs, must reach the scan (and nowhere else)."""
        root = logging.getLogger()
        handlers, quiet = root.handlers[:], logging.NullHandler()
        quiet.setFormatter(self.formatter())
        root.handlers[:] = [quiet]
        before = len(self.lines)
        try:
            structlog.get_logger("backend.logscan").warning(CANARY)
        finally:
            root.handlers[:] = handlers
        if any(CANARY in text for _, text in self.lines[before:]):
            del self.lines[before:]
        else:
            self.problems.append("a line logged through structlog never reached the scan")

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """On the xdist controller: what a worker found."""
        sent = getattr(node, "workeroutput", {}).get(PLUGIN)
        if sent is None:
            if error is None:
                self.problems.append(f"{getattr(node, 'gateway', node)} sent no scan")
            return
        got = json.loads(sent)
        for kind, n in got["counts"].items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        self.problems += got["problems"]
        self.findings += [Finding(**f) for f in got["findings"]]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.role() == "worker" or not (self.counts or self.problems or self.findings):
            return
        tr = terminalreporter
        counted = ", ".join(f"{n} from {kind}" for kind, n in sorted(self.counts.items()))
        if self.findings or self.problems:
            tr.section("secrets in logs", sep="=", red=True, bold=True)
            tr.line("The session fails: these log lines hold what no log may (masked here).")
            for line in [*self.problems, *self.report()]:
                tr.line(line)
            tr.line(f"log lines scanned: {counted}")
        else:
            tr.line(f"logscan: no secret in {counted} log lines")


@pytest.fixture(scope="session", autouse=True)
def _subprocess_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Our processes (`servers.arq_worker`) write their output under the session's tmp dir."""
    servers.LOG_DIR = tmp_path_factory.mktemp("logs")
    yield
    servers.LOG_DIR = None


def pytest_configure(config: pytest.Config) -> None:
    plugin = LogScan(config)
    config.pluginmanager.register(plugin, PLUGIN)
    plugin.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(PLUGIN)
    if isinstance(plugin, LogScan):
        plugin.uninstall()


def scan_lines(lines: Iterable[str], scanner: Scanner | None = None) -> list[tuple[str, str]]:
    """(rule, masked line) for each secret in `lines`: the plugin's check, for its own tests."""
    scanner = scanner or Scanner(secret_values(), people())
    return [
        (rule, scanner.masked(line))
        for line in lines
        for rule in sorted({found[0] for found in scanner.findings(line)})
    ]
