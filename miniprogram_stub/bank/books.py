"""The bank's own books: credit lines, drawdowns, repayments and refunds, all in fen.

Interest: after a drawdown's due date its principal outstanding accrues
`floor(principal * daily_interest_bp / 10000)` a day, on the bank's business dates. It is charged
when a repayment or an auto-debit is booked (paid first, before principal); a refund lowering the
principal first notes what the higher principal accrued until then, charged at the next booking.
"""

import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from miniprogram_stub.bank import config
from miniprogram_stub.bank.records import (
    BankError,
    Clock,
    Drawdown,
    Event,
    Line,
    LineStatus,
    Refund,
    Repayment,
    Rules,
    not_found,
)
from miniprogram_stub.bank.schemas import (
    Application,
    BooksView,
    Disbursement,
    DisbursementView,
    DrawdownRow,
    LineRow,
    RefundRow,
    RepaymentRow,
    Source,
)


def _ref(prefix: str) -> str:
    return prefix + secrets.token_hex(10)


@dataclass
class Books:
    rules: Rules = field(default_factory=Rules)
    clock: Clock = field(default_factory=Clock)
    lines: dict[str, Line] = field(default_factory=dict)
    drawdowns: dict[str, Drawdown] = field(default_factory=dict)
    repayments: dict[str, Repayment] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)

    def decide(self, ask: Application) -> Event:
        rules, who = self.rules, ask.applicant
        stream = f"application:{ask.application_id}"
        reason = None
        if who.age < rules.min_age:
            reason = "AGE_BELOW_MINIMUM"
        elif who.insurance_type in rules.decline_insurance_types:
            reason = "INSURANCE_TYPE_NOT_SERVED"
        elif who.ref in rules.decline_refs:
            reason = "APPLICANT_DECLINED"
        if reason is not None:
            return Event("line.declined", {"application_id": ask.application_id, "reason": reason}, stream)
        line = Line(
            _ref("L"),
            ask.application_id,
            min(ask.requested_limit_fen, rules.max_limit_fen),
            self.clock.today() + config.LINE_TERM,
        )
        self.lines[line.line_ref] = line
        data = {
            "application_id": ask.application_id,
            "line_ref": line.line_ref,
            "limit_fen": line.limit_fen,
            "expires_on": line.expires_on.isoformat(),
        }
        return Event("line.approved", data, stream)

    def line_principal(self, line_ref: str) -> int:
        return sum(d.principal_fen for d in self.drawdowns.values() if d.line_ref == line_ref)

    def set_line(self, line_ref: str, status: LineStatus) -> Line:
        line = self.lines.get(line_ref)
        if line is None:
            raise not_found()
        line.status = status
        return line

    def disburse(self, ask: Disbursement) -> Event:
        line = self.lines.get(ask.line_ref)
        stream = f"drawdown:{ask.drawdown_id}"
        reason = None
        if line is None:
            reason = "LINE_NOT_FOUND"
        elif line.status == "FROZEN":
            reason = "LINE_FROZEN"
        elif ask.amount_fen > line.limit_fen - self.line_principal(line.line_ref):
            reason = "LIMIT_EXCEEDED"
        elif self.rules.fail_disbursements:
            reason = "BANK_DECLINED"
        if reason is not None:
            failed = Drawdown(ask.drawdown_id, ask.line_ref, ask.amount_fen, "FAILED", reason)
            self.drawdowns[ask.drawdown_id] = failed
            return Event("drawdown.failed", {"drawdown_id": ask.drawdown_id, "reason": reason}, stream)
        due = self.clock.today() + timedelta(days=ask.interest_free_days)
        drawdown = Drawdown(
            ask.drawdown_id,
            ask.line_ref,
            ask.amount_fen,
            "DISBURSED",
            disbursement_ref=_ref("D"),
            disbursed_at=self.clock.stamp(),
            due_date=due,
            accrued_through=due,
            principal_fen=ask.amount_fen,
        )
        self.drawdowns[ask.drawdown_id] = drawdown
        data = {
            "drawdown_id": drawdown.drawdown_id,
            "line_ref": drawdown.line_ref,
            "amount_fen": drawdown.amount_fen,
            "disbursement_ref": drawdown.disbursement_ref,
            "disbursed_at": drawdown.disbursed_at,
            "due_date": due.isoformat(),
        }
        return Event("drawdown.disbursed", data, stream)

    def disbursement(self, drawdown_id: str) -> DisbursementView:
        d = self.drawdown(drawdown_id)
        due = d.due_date.isoformat() if d.due_date else None
        return DisbursementView(
            d.drawdown_id, d.status, d.amount_fen, d.disbursement_ref, d.disbursed_at, due, d.reason
        )

    def drawdown(self, drawdown_id: str) -> Drawdown:
        d = self.drawdowns.get(drawdown_id)
        if d is None:
            raise not_found()
        return d

    def _accruing(self, d: Drawdown) -> int:
        """Interest accrued since `accrued_through`, not noted yet."""
        if d.accrued_through is None:
            return 0
        days = (self.clock.today() - d.accrued_through).days
        return max(days, 0) * (d.principal_fen * self.rules.daily_interest_bp // 10_000)

    def _note_interest(self, d: Drawdown) -> None:
        d.interest_noted_fen += self._accruing(d)
        if d.accrued_through is not None:
            d.accrued_through = max(d.accrued_through, self.clock.today())

    def owed(self, d: Drawdown) -> int:
        interest = d.interest_charged_fen - d.interest_paid_fen + d.interest_noted_fen + self._accruing(d)
        return d.principal_fen + interest

    def open_repayment(
        self, repayment_id: str, drawdown_id: str, amount_fen: int, source: Source
    ) -> Repayment:
        d = self.drawdown(drawdown_id)
        owed = self.owed(d)
        if amount_fen > owed:
            raise BankError(422, "AMOUNT_EXCEEDS_OWED", owed_fen=owed)
        repayment = Repayment(repayment_id, drawdown_id, amount_fen, source)
        self.repayments[repayment_id] = repayment
        return repayment

    def repayment(self, repayment_id: str) -> Repayment:
        r = self.repayments.get(repayment_id)
        if r is None:
            raise not_found()
        return r

    def post(self, r: Repayment) -> Event:
        """Book a repayment the payer has paid: interest charged until today first, then principal."""
        d = self.drawdowns[r.drawdown_id]
        owed = self.owed(d)
        if r.amount_fen > owed:
            raise BankError(409, "AMOUNT_EXCEEDS_OWED", "a refund lowered what is owed", owed_fen=owed)
        self._note_interest(d)
        d.interest_charged_fen += d.interest_noted_fen
        d.interest_noted_fen = 0
        r.interest_fen = min(r.amount_fen, d.interest_charged_fen - d.interest_paid_fen)
        r.principal_fen = r.amount_fen - r.interest_fen
        d.interest_paid_fen += r.interest_fen
        d.principal_fen -= r.principal_fen
        d.principal_repaid_fen += r.principal_fen
        r.status, r.posted_at = "POSTED", self.clock.stamp()
        data = {
            "repayment_id": r.repayment_id,
            "drawdown_id": r.drawdown_id,
            "amount_fen": r.amount_fen,
            "principal_fen": r.principal_fen,
            "interest_fen": r.interest_fen,
            "source": r.source,
            "posted_at": r.posted_at,
        }
        return Event("repayment.posted", data, f"drawdown:{r.drawdown_id}")

    def fail(self, r: Repayment) -> Event:
        r.status = "FAILED"
        data = {"repayment_id": r.repayment_id, "drawdown_id": r.drawdown_id, "reason": "PAYER_CANCELLED"}
        return Event("repayment.failed", data, f"drawdown:{r.drawdown_id}")

    def auto_debit(self, drawdown_id: str, amount_fen: int | None) -> tuple[Repayment, Event]:
        d = self.drawdown(drawdown_id)
        amount = self.owed(d) if amount_fen is None else amount_fen
        if amount <= 0:
            raise BankError(422, "NOTHING_OWED", "the drawdown owes nothing")
        repayment = self.open_repayment(_ref("AD"), drawdown_id, amount, "auto_debit")
        return repayment, self.post(repayment)

    def refund(self, refund_id: str, drawdown_id: str, amount_fen: int) -> Event:
        d = self.drawdown(drawdown_id)
        if amount_fen > d.disbursed_fen - d.refunded_fen:
            raise BankError(422, "AMOUNT_EXCEEDS_DISBURSED")
        self._note_interest(d)
        reduced = min(amount_fen, d.principal_fen)
        refund = Refund(refund_id, drawdown_id, amount_fen, reduced, amount_fen - reduced, self.clock.stamp())
        d.principal_fen -= reduced
        d.reduced_by_refunds_fen += reduced
        d.returned_fen += refund.returned_fen
        self.refunds[refund_id] = refund
        data = {
            "refund_id": refund_id,
            "drawdown_id": drawdown_id,
            "amount_fen": amount_fen,
            "reduced_owed_fen": reduced,
            "returned_fen": refund.returned_fen,
            "posted_at": refund.posted_at,
        }
        return Event("refund.posted", data, f"drawdown:{drawdown_id}")

    def get_refund(self, refund_id: str) -> Refund:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise not_found()
        return refund

    def view(self) -> BooksView:
        lines = [
            LineRow(x.line_ref, x.application_id, x.limit_fen, x.status, self.line_principal(x.line_ref))
            for x in self.lines.values()
        ]
        drawdowns = [
            DrawdownRow(
                d.drawdown_id,
                d.line_ref,
                d.amount_fen,
                d.status,
                d.disbursed_at,
                d.due_date.isoformat() if d.due_date else None,
                d.principal_fen,
                d.interest_charged_fen,
                d.principal_repaid_fen + d.interest_paid_fen,
                d.reduced_by_refunds_fen,
                d.returned_fen,
                self.owed(d),
            )
            for d in self.drawdowns.values()
        ]
        repayments = [
            RepaymentRow(
                r.repayment_id,
                r.drawdown_id,
                r.status,
                r.amount_fen,
                r.principal_fen,
                r.interest_fen,
                r.source,
                r.posted_at,
            )
            for r in self.repayments.values()
        ]
        refunds = [
            RefundRow(
                f.refund_id,
                f.drawdown_id,
                "POSTED",
                f.amount_fen,
                f.reduced_owed_fen,
                f.returned_fen,
                f.posted_at,
            )
            for f in self.refunds.values()
        ]
        return BooksView(lines, drawdowns, repayments, refunds)
