"""Properties of the settlement arithmetic, over policies, usage, balances and bills hypothesis draws."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.billing.settlement import Item, Policy, RefundParts, Usage, presettle, ratio, refund_parts

PARTS = ("self_pay", "self_first", "deductible", "copay")

policies = st.builds(
    Policy,
    region_code=st.just("330100"),
    insurance_type=st.sampled_from(["employee", "resident"]),
    year=st.just(2026),
    deductible_fen=st.integers(0, 300_000),
    ratio_bp_by_level=st.fixed_dictionaries(
        {1: st.integers(0, 10_000), 2: st.integers(0, 10_000), 3: st.integers(0, 10_000)}
    ),
    class_b_self_ratio_bp=st.integers(0, 10_000),
    annual_cap_fen=st.integers(0, 1_000_000),
    personal_account_pays=st.frozensets(st.sampled_from(PARTS)),
)
items = st.lists(
    st.builds(
        Item,
        code=st.from_regex(r"[A-Z]{2}[0-9]{3}", fullmatch=True),
        name=st.just("item"),
        category=st.sampled_from("ABC"),
        quantity=st.integers(1, 20),
        unit_price_fen=st.integers(1, 500_000),
    ),
    min_size=1,
    max_size=8,
)
usages = st.builds(Usage, deductible_met_fen=st.integers(0, 400_000), fund_paid_fen=st.integers(0, 1_200_000))
levels = st.sampled_from([1, 2, 3])
balances = st.integers(0, 2_000_000)


@settings(max_examples=300)
@given(policies, levels, usages, items, balances)
def test_parts_sum_to_the_total_and_none_is_negative(policy, level, usage, bill, balance):
    split = presettle(policy, level, usage, bill, balance)
    assert split.total_fen == sum(i.amount_fen for i in bill)
    assert split.fund_fen + split.personal_account_fen + split.cash_fen == split.total_fen
    for item, part in zip(bill, split.items, strict=True):
        assert part.amount_fen == item.amount_fen
        assert part.fund_fen + part.personal_account_fen + part.cash_fen == part.amount_fen
        assert (
            part.self_pay_fen + part.self_first_fen + part.deductible_fen + part.copay_fen + part.fund_fen
            == (part.amount_fen)
        )
        assert min(part.fund_fen, part.personal_account_fen, part.cash_fen, part.copay_fen) >= 0
        if item.category == "C":
            assert part.fund_fen == 0
    assert split.personal_account_fen <= balance


@settings(max_examples=300)
@given(policies, levels, usages, items, balances)
def test_deductible_and_annual_cap_are_respected(policy, level, usage, bill, balance):
    split = presettle(policy, level, usage, bill, balance)
    deductible_left = max(0, policy.deductible_fen - usage.deductible_met_fen)
    assert split.deductible_fen <= deductible_left
    assert split.fund_fen <= max(0, policy.annual_cap_fen - usage.fund_paid_fen)
    in_scope = sum(p.amount_fen - p.self_pay_fen - p.self_first_fen for p in split.items)
    # The fund pays nothing until the deductible is met, and the deductible is met first.
    assert split.deductible_fen == min(in_scope, deductible_left)
    if split.deductible_fen < deductible_left:
        assert split.fund_fen == 0


@settings(max_examples=300)
@given(policies, levels, usages, items, balances, st.data())
def test_paying_more_never_costs_the_patient_or_the_fund_less(policy, level, usage, bill, balance, data):
    line = data.draw(st.integers(0, len(bill) - 1))
    raise_by = data.draw(st.integers(1, 100_000))
    dearer = list(bill)
    dearer[line] = replace(bill[line], unit_price_fen=bill[line].unit_price_fen + raise_by)
    before = presettle(policy, level, usage, bill, balance)
    after = presettle(policy, level, usage, dearer, balance)
    assert after.fund_fen >= before.fund_fen
    assert after.total_fen - after.fund_fen >= before.total_fen - before.fund_fen  # the patient's share
    assert after.cash_fen >= before.cash_fen


@given(policies, levels, usages, items, balances)
def test_the_same_inputs_give_the_same_split(policy, level, usage, bill, balance):
    assert presettle(policy, level, usage, bill, balance) == presettle(policy, level, usage, bill, balance)


@given(st.integers(0, 10**12), st.integers(0, 10_000))
def test_ratio_rounds_half_up_within_the_amount(amount, basis_points):
    exact = amount * basis_points / 10_000
    assert 0 <= ratio(amount, basis_points) <= amount
    assert abs(ratio(amount, basis_points) - exact) <= 0.5


@settings(max_examples=300)
@given(
    st.integers(0, 1_000_000),
    st.integers(0, 1_000_000),
    st.integers(0, 1_000_000),
    st.integers(0, 300_000),
    st.lists(st.integers(1, 400_000), max_size=6),
)
def test_partial_refunds_never_exceed_a_part_and_the_last_returns_exactly_the_rest(
    fund, personal_account, cash, deductible, amounts
):
    remaining = RefundParts(fund, personal_account, cash, min(deductible, fund + personal_account + cash))
    left = fund + personal_account + cash
    for amount in amounts:
        if amount >= left:
            break
        parts = refund_parts(amount, remaining, left)
        assert parts.fund_fen + parts.personal_account_fen + parts.cash_fen == amount
        assert 0 <= parts.fund_fen <= remaining.fund_fen
        assert 0 <= parts.personal_account_fen <= remaining.personal_account_fen
        assert 0 <= parts.cash_fen <= remaining.cash_fen
        assert 0 <= parts.deductible_fen <= remaining.deductible_fen
        remaining = RefundParts(
            remaining.fund_fen - parts.fund_fen,
            remaining.personal_account_fen - parts.personal_account_fen,
            remaining.cash_fen - parts.cash_fen,
            remaining.deductible_fen - parts.deductible_fen,
        )
        left -= amount
    if left:
        assert refund_parts(left, remaining, left) == remaining


@settings(max_examples=300)
@given(policies, levels, usages, items, balances, balances)
def test_family_mutual_aid_pays_only_the_in_scope_self_part_after_the_patients_own(
    policy, level, usage, bill, balance, family_balance
):
    alone = presettle(policy, level, usage, bill, balance)
    aided = presettle(policy, level, usage, bill, balance, family_balance)
    assert aided.fund_fen == alone.fund_fen and aided.personal_account_fen == alone.personal_account_fen
    assert aided.family_account_fen <= family_balance
    assert aided.fund_fen + aided.personal_account_fen + aided.family_account_fen + aided.cash_fen == (
        aided.total_fen
    )
    for part in aided.items:
        assert part.family_account_fen >= 0
        # Never the out-of-scope parts: at most what the patient's own account left of the in-scope part.
        in_scope_self = part.deductible_fen + part.copay_fen
        assert part.family_account_fen <= max(0, in_scope_self - part.personal_account_fen)
        assert part.cash_fen >= 0
    if family_balance >= aided.total_fen:  # a full account leaves no in-scope self part to cash
        for part in aided.items:
            assert part.cash_fen == part.amount_fen - part.fund_fen - part.personal_account_fen - max(
                0, part.deductible_fen + part.copay_fen - part.personal_account_fen
            )
