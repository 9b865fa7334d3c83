"""The messages patients receive, kept as data in `templates.toml` and validated when loaded.

WeChat and Alipay templates are configured in each platform's console; the ids and keyword
names in the file must match them. Amounts are formatted from fen with integer arithmetic.
"""

from __future__ import annotations

import string
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

CHINA = ZoneInfo("Asia/Shanghai")
Params = dict[str, Any]


def yuan(fen: int) -> str:
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError(f"amounts are integers of fen, not {fen!r}")
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}元"


def clock(value: str) -> str:
    """An ISO timestamp as the platforms' `time` keyword: local time to the minute."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamps carry their zone: {value!r}")
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def thing(text: str, limit: int = 20) -> str:
    if not isinstance(text, str) or not text:
        raise TypeError(f"a text field needs text, not {text!r}")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Field(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One keyword of a template, made from one param."""

    keyword: str
    param: str
    format: Literal["thing", "yuan", "clock", "text"]
    limit: int = 20  # for `thing`: the platforms cut text keywords at this length
    default: str | None = None  # the value of a param that may be left out

    def value(self, params: Params) -> str:
        raw = params[self.param] if self.default is None else params.get(self.param, self.default)
        if self.format == "thing":
            return thing(raw, self.limit)
        if self.format == "yuan":
            return yuan(raw)
        if self.format == "clock":
            return clock(raw)
        return str(raw)


class Template(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    title: str
    page: str  # the mini-program page the message opens; {placeholders} from the params
    inbox: str  # the inbox text; {0}, {1}... from the fields' values
    wechat_id: str
    alipay_id: str
    fields: tuple[Field, ...]
    sample: Params
    key: str = ""  # the template's table name in the file

    def values(self, params: Params) -> list[str]:
        return [field.value(params) for field in self.fields]

    def wechat_data(self, params: Params) -> dict[str, dict[str, str]]:
        return {
            field.keyword: {"value": value}
            for field, value in zip(self.fields, self.values(params), strict=True)
        }

    def alipay_data(self, params: Params) -> dict[str, dict[str, str]]:
        return {f"keyword{n}": {"value": v} for n, v in enumerate(self.values(params), start=1)}

    def page_for(self, params: Params) -> str:
        return self.page.format(**params)

    def inbox_text(self, params: Params) -> str:
        return self.inbox.format(*self.values(params))

    def render(self, params: Params) -> dict[str, Any]:
        """Everything a delivery needs, made once when the notification is recorded (so bad
        params fail the caller, and every retry sends the same thing)."""
        return {
            "page": self.page_for(params),
            "wechat": {"template_id": self.wechat_id, "data": self.wechat_data(params)},
            "alipay": {"template_id": self.alipay_id, "data": self.alipay_data(params)},
        }


class TemplateError(Exception):
    """The templates file is not what the code can send; the message names the template."""


def _check(template: Template) -> None:
    keywords = [field.keyword for field in template.fields]
    if len(set(keywords)) != len(keywords):
        raise TemplateError(f"{template.key}: a keyword appears twice")
    used = {name for _, name, _, _ in string.Formatter().parse(template.inbox) if name is not None}
    if not used <= {str(n) for n in range(len(template.fields))}:
        raise TemplateError(f"{template.key}: the inbox text names a field it does not have")
    try:
        template.render(template.sample)
        template.inbox_text(template.sample)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise TemplateError(f"{template.key}: its sample does not render: {exc!r}") from exc


FILE = Path(__file__).with_name("templates.toml")


def load(path: Path = FILE) -> dict[str, Template]:
    try:
        loaded = msgspec.toml.decode(path.read_bytes(), type=dict[str, Template])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise TemplateError(f"{path.name}: {exc}") from exc
    templates = {key: msgspec.structs.replace(t, key=key) for key, t in loaded.items()}
    for template in templates.values():
        _check(template)
    return templates


TEMPLATES = load()
