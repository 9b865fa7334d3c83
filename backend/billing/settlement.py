"""Pre-settlement: splitting a bill into the fund's part, the personal account's and cash.

Pure integer arithmetic over a policy, the person's year-to-date usage and the bill's items, so
the same inputs always give the same split. The rules, applied to the items in line order:

1. An item's amount is quantity x unit price.
2. Category C (self-pay) is outside the fund's scope: all of it is the patient's `self_pay`.
   Category B pays a self-first share first: `self_first = ratio(amount, class_b_self_ratio)`;
   the rest is in scope. Category A is wholly in scope.
3. The deductible left for the year is met from the in-scope amounts, item by item.
4. Of what is left in scope, the fund pays `ratio(eligible, level ratio)`, within what is left
   of the annual cap; the rest of it is the patient's `copay`.
5. The personal account (employees, when asked) pays the patient's parts its policy allows,
   item by item, while its balance lasts.
6. Family mutual aid (家庭共济, when a relative pays with their own personal account): that
   account pays what is left of the item's in-scope self part (`deductible + copay`), counting
   the patient's own account against that part first, while its balance lasts. Out-of-scope
   parts (class C, class B's self-first share) are never paid by another person's account.
   Cash is what remains.

`ratio(x, bp)` rounds half up to the fen: `(x * bp + 5000) // 10000`. So every part is a whole
number of fen, the parts of an item sum to its amount and the items sum to the bill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASIS_POINTS = 10_000


def ratio(amount_fen: int, basis_points: int) -> int:
    """`amount_fen * basis_points / 10000`, rounded half up to the fen."""
    return (amount_fen * basis_points + BASIS_POINTS // 2) // BASIS_POINTS


@dataclass(frozen=True)
class Policy:
    region_code: str
    insurance_type: str
    year: int
    deductible_fen: int
    ratio_bp_by_level: dict[int, int]  # hospital level (1, 2, 3) -> fund ratio in basis points
    class_b_self_ratio_bp: int
    annual_cap_fen: int
    # Which of the patient's parts the personal account may pay: any of
    # "self_pay" (class C), "self_first" (class B's share), "deductible", "copay".
    personal_account_pays: frozenset[str]


@dataclass(frozen=True)
class Usage:
    """The insured person's year so far."""

    deductible_met_fen: int = 0
    fund_paid_fen: int = 0


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    category: str  # A | B | C
    quantity: int
    unit_price_fen: int

    @property
    def amount_fen(self) -> int:
        return self.quantity * self.unit_price_fen


@dataclass(frozen=True)
class ItemSplit:
    code: str
    category: str
    amount_fen: int
    self_pay_fen: int
    self_first_fen: int
    deductible_fen: int
    copay_fen: int
    fund_fen: int
    personal_account_fen: int
    family_account_fen: int
    cash_fen: int
    rule: str

    @property
    def patient_fen(self) -> int:
        return self.amount_fen - self.fund_fen


@dataclass(frozen=True)
class Split:
    total_fen: int
    fund_fen: int
    personal_account_fen: int
    family_account_fen: int
    cash_fen: int
    deductible_fen: int  # how much of the year's deductible this bill meets
    items: list[ItemSplit] = field(default_factory=list)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _percent(basis_points: int) -> str:
    whole, part = divmod(basis_points, 100)
    return f"{whole}%" if part == 0 else f"{whole}.{part:02d}%"


def presettle(
    policy: Policy,
    hospital_level: int,
    usage: Usage,
    items: list[Item],
    personal_account_balance_fen: int,
    family_account_balance_fen: int = 0,
) -> Split:
    """Split `items` under `policy`; a balance of 0 means no such account (the patient's own,
    or the relative's paying by family mutual aid)."""
    fund_ratio = policy.ratio_bp_by_level[hospital_level]
    deductible_left = max(0, policy.deductible_fen - usage.deductible_met_fen)
    cap_left = max(0, policy.annual_cap_fen - usage.fund_paid_fen)
    balance = personal_account_balance_fen
    family_balance = family_account_balance_fen
    splits = []
    for item in items:
        amount = item.amount_fen
        notes = []
        self_pay = amount if item.category == "C" else 0
        self_first = ratio(amount, policy.class_b_self_ratio_bp) if item.category == "B" else 0
        if item.category == "C":
            notes.append("class C: self-pay")
        elif item.category == "B":
            notes.append(f"class B: {_percent(policy.class_b_self_ratio_bp)} self-first")
        in_scope = amount - self_pay - self_first
        deductible = min(in_scope, deductible_left)
        deductible_left -= deductible
        if deductible:
            notes.append(f"deductible {_yuan(deductible)} yuan")
        eligible = in_scope - deductible
        fund = min(ratio(eligible, fund_ratio), cap_left)
        if eligible:
            notes.append(f"level-{hospital_level} fund ratio {_percent(fund_ratio)}")
            if fund < ratio(eligible, fund_ratio):
                notes.append("annual fund cap reached")
        cap_left -= fund
        copay = eligible - fund
        payable = sum(
            part
            for name, part in (
                ("self_pay", self_pay),
                ("self_first", self_first),
                ("deductible", deductible),
                ("copay", copay),
            )
            if name in policy.personal_account_pays
        )
        personal_account = min(payable, balance)
        balance -= personal_account
        if personal_account:
            notes.append(f"personal account {_yuan(personal_account)} yuan")
        family_account = min(max(0, deductible + copay - personal_account), family_balance)
        family_balance -= family_account
        if family_account:
            notes.append(f"family mutual aid {_yuan(family_account)} yuan")
        splits.append(
            ItemSplit(
                code=item.code,
                category=item.category,
                amount_fen=amount,
                self_pay_fen=self_pay,
                self_first_fen=self_first,
                deductible_fen=deductible,
                copay_fen=copay,
                fund_fen=fund,
                personal_account_fen=personal_account,
                family_account_fen=family_account,
                cash_fen=amount - fund - personal_account - family_account,
                rule="; ".join(notes) or "nothing to pay",
            )
        )
    return Split(
        total_fen=sum(s.amount_fen for s in splits),
        fund_fen=sum(s.fund_fen for s in splits),
        personal_account_fen=sum(s.personal_account_fen for s in splits),
        family_account_fen=sum(s.family_account_fen for s in splits),
        cash_fen=sum(s.cash_fen for s in splits),
        deductible_fen=sum(s.deductible_fen for s in splits),
        items=splits,
    )


@dataclass(frozen=True)
class RefundParts:
    fund_fen: int
    personal_account_fen: int
    cash_fen: int
    deductible_fen: int
    family_account_fen: int = 0


def refund_parts(amount_fen: int, remaining: RefundParts, remaining_total_fen: int) -> RefundParts:
    """How a refund of `amount_fen` is taken from what is left of each part of a paid bill.

    Each part gives back its proportional share, rounded down; the fen left over go to cash,
    then the family account (a relative's personal account that paid by mutual aid), then the
    patient's own personal account, then the fund, each up to what it has left. A refund of all
    that remains gives back exactly every part, so partial refunds never drift. The deductible
    the bill met is restored in the same proportion, rounded down (all of it on the last refund).
    """
    if amount_fen == remaining_total_fen:
        return remaining
    parts = {
        "cash_fen": remaining.cash_fen,
        "family_account_fen": remaining.family_account_fen,
        "personal_account_fen": remaining.personal_account_fen,
        "fund_fen": remaining.fund_fen,
    }
    shares = {name: left * amount_fen // remaining_total_fen for name, left in parts.items()}
    leftover = amount_fen - sum(shares.values())
    for name, left in parts.items():
        extra = min(leftover, left - shares[name])
        shares[name] += extra
        leftover -= extra
    return RefundParts(deductible_fen=remaining.deductible_fen * amount_fen // remaining_total_fen, **shares)
