"""The messages patients receive, as data: Chinese text, and each platform's template and page.

WeChat and Alipay templates are configured in each platform's console; the ids and keyword
names here must match them. Amounts are formatted from fen with integer arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

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


@dataclass(frozen=True)
class Template:
    key: str
    title: str
    page: str  # the mini-program page the message opens; {placeholders} from the params
    inbox: str  # the inbox text; {placeholders} from the formatted fields
    wechat_id: str
    alipay_id: str
    # (wechat keyword, how to make its value from the params); Alipay uses keyword1..N in order
    fields: tuple[tuple[str, Callable[[Params], str]], ...]
    sample: Params

    def values(self, params: Params) -> list[str]:
        return [make(params) for _, make in self.fields]

    def wechat_data(self, params: Params) -> dict[str, dict[str, str]]:
        return {
            name: {"value": value} for (name, _), value in zip(self.fields, self.values(params), strict=True)
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


TEMPLATES = {
    t.key: t
    for t in (
        Template(
            key="payment_succeeded",
            title="缴费成功",
            page="pages/bill/detail?id={bill_id}",
            inbox="您在{0}的账单{3}已缴费成功，金额{1}，时间{2}。",
            wechat_id="wxtpl-pay-success",
            alipay_id="alitpl-pay-success",
            fields=(
                ("thing1", lambda p: thing(p["hospital"])),
                ("amount2", lambda p: yuan(p["amount_fen"])),
                ("time3", lambda p: clock(p["at"])),
                ("character_string4", lambda p: str(p["bill_no"])),
            ),
            sample={
                "hospital": "杭州市第一人民医院",
                "amount_fen": 12850,
                "at": "2026-11-22T09:30:00+08:00",
                "bill_no": "B202611220001",
                "bill_id": 1,
            },
        ),
        Template(
            key="refund_succeeded",
            title="退款成功",
            page="pages/bill/detail?id={bill_id}",
            inbox="{0}已为您退款{1}（{3}），时间{2}。",
            wechat_id="wxtpl-refund",
            alipay_id="alitpl-refund",
            fields=(
                ("thing1", lambda p: thing(p["hospital"])),
                ("amount2", lambda p: yuan(p["amount_fen"])),
                ("time3", lambda p: clock(p["at"])),
                ("thing4", lambda p: thing(p["reason"])),
            ),
            sample={
                "hospital": "杭州市第一人民医院",
                "amount_fen": 3000,
                "at": "2026-11-22T10:00:00+08:00",
                "reason": "检查项目取消",
                "bill_id": 1,
            },
        ),
        Template(
            key="appointment_booked",
            title="预约成功",
            page="pages/appointment/detail?id={appointment_id}",
            inbox="已为{3}预约{0}{1}医生，就诊时间{2}。",
            wechat_id="wxtpl-appt-booked",
            alipay_id="alitpl-appt-booked",
            fields=(
                ("thing1", lambda p: thing(p["department"])),
                ("name2", lambda p: thing(p["doctor"], 10)),
                ("time3", lambda p: clock(p["starts_at"])),
                ("thing4", lambda p: thing(p["patient"])),
            ),
            sample={
                "department": "心血管内科",
                "doctor": "王建国",
                "starts_at": "2026-11-23T08:30:00+08:00",
                "patient": "张*",
                "appointment_id": 1,
            },
        ),
        Template(
            key="appointment_reminder",
            title="就诊提醒",
            page="pages/appointment/detail?id={appointment_id}",
            inbox="明天{1}请到{0}就诊。{2}",
            wechat_id="wxtpl-appt-remind",
            alipay_id="alitpl-appt-remind",
            fields=(
                ("thing1", lambda p: thing(p["department"])),
                ("time2", lambda p: clock(p["starts_at"])),
                ("thing3", lambda p: thing(p.get("note", "请携带医保电子凭证，提前15分钟到达"))),
            ),
            sample={
                "department": "心血管内科",
                "starts_at": "2026-11-23T08:30:00+08:00",
                "appointment_id": 1,
            },
        ),
        Template(
            key="appointment_cancelled",
            title="预约已取消",
            page="pages/appointment/detail?id={appointment_id}",
            inbox="您{1}在{0}的预约已取消：{2}。",
            wechat_id="wxtpl-appt-cancel",
            alipay_id="alitpl-appt-cancel",
            fields=(
                ("thing1", lambda p: thing(p["department"])),
                ("time2", lambda p: clock(p["starts_at"])),
                ("thing3", lambda p: thing(p["reason"])),
            ),
            sample={
                "department": "心血管内科",
                "starts_at": "2026-11-23T08:30:00+08:00",
                "reason": "医生停诊",
                "appointment_id": 1,
            },
        ),
        Template(
            key="credit_approved",
            title="信用就医额度已开通",
            page="pages/credit/index",
            inbox="{2}已为您开通信用就医额度{0}，最长免息{1}天。",
            wechat_id="wxtpl-credit-ok",
            alipay_id="alitpl-credit-ok",
            fields=(
                ("amount1", lambda p: yuan(p["limit_fen"])),
                ("number2", lambda p: str(p["interest_free_days"])),
                ("thing3", lambda p: thing(p["bank"])),
            ),
            sample={"limit_fen": 500000, "interest_free_days": 49, "bank": "示范银行"},
        ),
        Template(
            key="repayment_due",
            title="还款提醒",
            page="pages/credit/repay?id={drawdown_id}",
            inbox="您有一笔信用就医欠款{0}将于{1}到期。{2}",
            wechat_id="wxtpl-repay-due",
            alipay_id="alitpl-repay-due",
            fields=(
                ("amount1", lambda p: yuan(p["amount_fen"])),
                ("date2", lambda p: str(p["due_date"])),
                ("thing3", lambda p: thing(p.get("note", "请按时还款，避免产生利息"))),
            ),
            sample={"amount_fen": 25600, "due_date": "2026-12-31", "drawdown_id": 1},
        ),
        Template(
            key="repayment_overdue",
            title="还款已逾期",
            page="pages/credit/repay?id={drawdown_id}",
            inbox="您的信用就医欠款{0}已于{1}逾期。{2}",
            wechat_id="wxtpl-repay-overdue",
            alipay_id="alitpl-repay-overdue",
            fields=(
                ("amount1", lambda p: yuan(p["amount_fen"])),
                ("date2", lambda p: str(p["due_date"])),
                ("thing3", lambda p: thing(p.get("note", "请尽快还款以免影响信用"))),
            ),
            sample={"amount_fen": 25600, "due_date": "2026-11-20", "drawdown_id": 1},
        ),
        Template(
            key="relative_invited",
            title="亲情账户邀请",
            page="pages/family/invitation?id={invitation_id}",
            inbox="{0}邀请您成为其{1}，{2}",
            wechat_id="wxtpl-family-invite",
            alipay_id="alitpl-family-invite",
            fields=(
                ("name1", lambda p: thing(p["inviter"], 10)),
                ("phrase2", lambda p: thing(p["relation"], 5)),
                ("thing3", lambda p: thing(p.get("note", "同意后可为其代缴医疗费用"))),
            ),
            sample={"inviter": "张*", "relation": "家人", "invitation_id": 1},
        ),
    )
}
