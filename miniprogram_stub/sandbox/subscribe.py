"""Subscribe messages on any platform: the console's templates, users' one-time grants, deliveries.

Templates live in `data/templates.json`; WeChat's keyword rules are the ones it documents.
"""

import itertools
import re
import secrets
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any, Literal

import msgspec

Platform = Literal["wechat", "alipay"]
KeywordType = Literal[
    "thing", "amount", "time", "date", "character_string", "phrase", "name", "number", "keyword"
]
Decision = Literal["accept", "reject", "ban"]
# A dev server may run for days; keep the newest deliveries only.
_MAX_DELIVERED = 10_000


class Template(msgspec.Struct, frozen=True):
    id: str
    title: str
    keywords: dict[str, KeywordType]  # in the order the console shows them


@cache
def templates(platform: Platform) -> dict[str, Template]:
    text = (files("miniprogram_stub") / "sandbox" / "data" / "templates.json").read_bytes()
    console = msgspec.json.decode(text, type=dict[Platform, list[Template]])
    return {t.id: t for t in console[platform]}


_CJK = re.compile(r"[\u3400-\u9fff]")
_AMOUNT = re.compile(r"[¥￥]?\d+(\.\d+)?元?")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_CHARACTER_STRING = re.compile(r"[\x21-\x7e]+")
_PHRASE = re.compile(r"[\u3400-\u9fff]{1,5}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?")


def _at_most(limit: int) -> Callable[[str], str | None]:
    return lambda v: None if len(v) <= limit else f"exceeds {limit} characters"


def _pattern(pattern: re.Pattern[str], limit: int, shape: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if len(value) > limit:
            return f"exceeds {limit} characters"
        return None if pattern.fullmatch(value) else f"is not {shape}"

    return check


def _timestamp(value: str, pattern: re.Pattern[str], formats: tuple[str, ...], shape: str) -> str | None:
    if pattern.fullmatch(value):
        for layout in formats:
            try:
                datetime.strptime(value, layout)
            except ValueError:
                continue
            return None
    return f"is not {shape}"


def _name(value: str) -> str | None:
    # WeChat: a Chinese (or mixed) name up to 10 characters, a Latin one up to 20.
    limit = 10 if _CJK.search(value) else 20
    return None if len(value) <= limit else f"exceeds {limit} characters"


_RULES: dict[KeywordType, Callable[[str], str | None]] = {
    "thing": _at_most(20),
    "amount": _pattern(_AMOUNT, 32, "an amount such as 12.50元"),
    "time": lambda v: _timestamp(v, _TIME, ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"), "YYYY-MM-DD HH:MM[:SS]"),
    "date": lambda v: _timestamp(v, _DATE, ("%Y-%m-%d",), "YYYY-MM-DD"),
    "character_string": _pattern(_CHARACTER_STRING, 32, "letters, digits or symbols"),
    "phrase": _pattern(_PHRASE, 5, "up to 5 Chinese characters"),
    "name": _name,
    "number": _pattern(_NUMBER, 32, "digits"),
    "keyword": _at_most(50),  # Alipay
}


def data_problem(template: Template, data: Any) -> str | None:
    """Why `data` does not fill `template` (`{"<key>": {"value": "..."}}`), or None if it does."""
    if not isinstance(data, dict):
        return "data is not an object"
    extra = sorted(data.keys() - template.keywords.keys())
    if extra:
        return f"data.{extra[0]} is not a keyword of {template.id}"
    for key, kind in template.keywords.items():
        item = data.get(key)
        value = item.get("value") if isinstance(item, dict) else None
        if value is None or value == "":
            return f"data.{key}.value is empty"
        if not isinstance(value, str):
            return f"data.{key}.value is not a string"
        problem = _RULES[kind](value)
        if problem is not None:
            return f"data.{key}.value {problem} ({kind})"
    return None


class Delivered(msgspec.Struct):
    msgid: int
    user: str
    template_id: str
    page: str
    data: dict[str, Any]
    at: str  # ISO 8601, UTC


class Subscriptions:
    """One app on one platform: who has used it, their unspent one-time grants, what was sent."""

    def __init__(self) -> None:
        self._users: set[str] = set()
        self._grants: Counter[tuple[str, str]] = Counter()
        self._delivered: deque[Delivered] = deque(maxlen=_MAX_DELIVERED)
        self._msgids = itertools.count(secrets.randbelow(10**17) + 10**18)

    def add_user(self, user: str) -> None:
        self._users.add(user)

    def has_user(self, user: str) -> bool:
        return user in self._users

    def decide(
        self, user: str, decisions: Mapping[str, Decision], known: Mapping[str, Template]
    ) -> dict[str, str]:
        """The phone's subscribe dialog: each accept is one more one-time grant."""
        answers: dict[str, str] = {}
        for template_id, decision in decisions.items():
            if template_id not in known:
                answers[template_id] = "filter"  # a template the platform would not show
                continue
            if decision == "accept":
                self._grants[user, template_id] += 1
            elif decision == "ban":
                # The user switched the template off: grants not yet spent are gone too.
                self._grants.pop((user, template_id), None)
            answers[template_id] = decision
        return answers

    def spend(self, user: str, template_id: str) -> bool:
        if self._grants[user, template_id] <= 0:
            self._grants.pop((user, template_id), None)
            return False
        self._grants[user, template_id] -= 1
        return True

    def deliver(self, user: str, template_id: str, page: str, data: dict[str, Any]) -> Delivered:
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        message = Delivered(next(self._msgids), user, template_id, page, data, at)
        self._delivered.append(message)
        return message

    def delivered(self, user: str | None = None, template_id: str | None = None) -> list[Delivered]:
        """Oldest first."""
        return [
            m
            for m in self._delivered
            if (user is None or m.user == user) and (template_id is None or m.template_id == template_id)
        ]

    def clear_delivered(self) -> None:
        self._delivered.clear()
