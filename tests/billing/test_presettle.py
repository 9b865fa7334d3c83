"""Pre-settlement splits a bill by its patient's policy, year-to-date usage and personal account."""

from __future__ import annotations

from backend.billing.tables import InsuredYearUsage
from backend.ledger.tables import Journal
from tests.billing.factories import WITH_CT, his_headers, insured_patient, new_bill, pay

ITEMS = WITH_CT


async def presettle(client, patient, bill_id, use_personal_account=True):
    answer = await client.post(
        f"/api/v1/bills/{bill_id}/presettle",
        json={"use_personal_account": use_personal_account},
        headers=patient.headers,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_an_employee_meets_the_deductible_then_the_fund_pays_its_ratio(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    bill = await new_bill(client, await his_headers(client), patient, ITEMS)

    split = await presettle(client, patient, bill["id"])

    # Hangzhou employees 2026: deductible 500.00, level-3 ratio 80%, class B self-first 10%.
    assert split["policy"] == {
        "region_code": "330100",
        "insurance_type": "employee",
        "year": split["policy"]["year"],
    }
    ct = split["items"][3]
    assert (ct["deductible_fen"], ct["fund_fen"], ct["copay_fen"]) == (50000 - 2500 - 3330, 12664, 3166)
    assert ct["rule"] == "deductible 441.70 yuan; level-3 fund ratio 80%; personal account 473.36 yuan"
    assert split["items"][1]["self_first_fen"] == 370
    assert split["items"][1]["rule"].startswith("class B: 10% self-first")
    assert split["items"][2]["self_pay_fen"] == 6800
    assert (split["fund_fen"], split["personal_account_fen"], split["cash_fen"]) == (12664, 73000 - 12664, 0)
    assert split["personal_account_balance_fen"] >= 100000

    without = await presettle(client, patient, bill["id"], use_personal_account=False)
    assert (without["fund_fen"], without["personal_account_fen"], without["cash_fen"]) == (12664, 0, 60336)
    assert await presettle(client, patient, bill["id"]) == split  # deterministic, and nothing was written
    assert await Journal.count() == 0


async def test_a_resident_has_no_personal_account_and_ratios_round_half_up(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, ITEMS)

    split = await presettle(client, patient, bill["id"])

    # Hangzhou residents 2026: deductible 300.00, level-3 ratio 50% (35645 * 50% = 17822.5 -> 17823).
    assert split["items"][3]["fund_fen"] == 17823
    assert split["items"][1]["self_first_fen"] == 555  # 15% of 3700
    assert (split["fund_fen"], split["personal_account_fen"], split["cash_fen"]) == (17823, 0, 73000 - 17823)
    assert split["personal_account_balance_fen"] == 0


async def test_the_years_usage_carries_into_the_next_bill(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    his = await his_headers(client)
    first = await new_bill(client, his, patient, ITEMS)
    paid = await pay(client, patient, first["id"], use_personal_account=True)
    assert paid.status_code == 200, paid.text
    assert paid.json()["state"] == "PAID"
    usage = await InsuredYearUsage.select().first()
    assert (usage["deductible_met_fen"], usage["fund_paid_fen"]) == (50000, 12664)

    second = await new_bill(client, his, patient, ITEMS)
    split = await presettle(client, patient, second["id"])

    # The deductible is met: 80% of every in-scope fen (A 2500, B 3330 after self-first, A 60000).
    assert split["fund_fen"] == 2000 + 2664 + 48000
    assert all(item["deductible_fen"] == 0 for item in split["items"])


async def test_shanghai_employees_personal_account_does_not_pay_self_pay_items(
    client, sandbox_http, settings
):
    patient = await insured_patient(
        client, sandbox_http, settings, insurance="employee", region="310104", visiting="H31010001"
    )
    bill = await new_bill(client, await his_headers(client, "H31010001"), patient, ITEMS)

    split = await presettle(client, patient, bill["id"])

    assert split["policy"]["region_code"] == "310100"
    assert split["items"][2]["personal_account_fen"] == 0
    assert split["items"][2]["cash_fen"] == 6800
    assert split["fund_fen"] == 0  # the 1,500.00 deductible absorbs every in-scope fen
    assert split["cash_fen"] == 6800
