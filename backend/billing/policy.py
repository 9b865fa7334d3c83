"""Settlement policies as data: one row per region, insurance type and year, and the year's usage."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.billing.settlement import Policy, Usage
from backend.billing.tables import InsuredYearUsage, SettlementPolicy
from backend.platform.errors import Conflict

DEMO_POLICIES = Path(__file__).with_name("policies.toml")


def _row_to_policy(row: dict[str, Any]) -> Policy:
    return Policy(
        region_code=row["region_code"],
        insurance_type=row["insurance_type"],
        year=row["year"],
        deductible_fen=row["deductible_fen"],
        ratio_bp_by_level={
            1: row["ratio_level1_bp"],
            2: row["ratio_level2_bp"],
            3: row["ratio_level3_bp"],
        },
        class_b_self_ratio_bp=row["class_b_self_ratio_bp"],
        annual_cap_fen=row["annual_cap_fen"],
        personal_account_pays=frozenset(row["personal_account_pays"]),
    )


async def load(path: Path = DEMO_POLICIES) -> int:
    """Insert or update the policies in a TOML file; returns how many rows it holds."""
    count = 0
    text = await asyncio.to_thread(path.read_text)
    for entry in tomllib.loads(text)["policy"]:
        fields = {k: v for k, v in entry.items() if k != "years"}
        for year in entry["years"]:
            await SettlementPolicy.raw(
                """
                INSERT INTO settlement_policy (region_code, insurance_type, year, deductible_fen,
                    ratio_level1_bp, ratio_level2_bp, ratio_level3_bp, class_b_self_ratio_bp,
                    annual_cap_fen, personal_account_pays, updated_at)
                VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, now())
                ON CONFLICT (region_code, insurance_type, year) DO UPDATE SET
                    deductible_fen = EXCLUDED.deductible_fen,
                    ratio_level1_bp = EXCLUDED.ratio_level1_bp,
                    ratio_level2_bp = EXCLUDED.ratio_level2_bp,
                    ratio_level3_bp = EXCLUDED.ratio_level3_bp,
                    class_b_self_ratio_bp = EXCLUDED.class_b_self_ratio_bp,
                    annual_cap_fen = EXCLUDED.annual_cap_fen,
                    personal_account_pays = EXCLUDED.personal_account_pays,
                    updated_at = now()
                """,
                fields["region_code"],
                fields["insurance_type"],
                year,
                fields["deductible_fen"],
                fields["ratio_level1_bp"],
                fields["ratio_level2_bp"],
                fields["ratio_level3_bp"],
                fields["class_b_self_ratio_bp"],
                fields["annual_cap_fen"],
                fields["personal_account_pays"],
            )
            count += 1
    return count


def pooling_region(region_code: str) -> str:
    """Insurance is pooled by city: a district's people follow their city's policy (330106 -> 330100)."""
    return region_code[:4] + "00"


async def policy_for(region_code: str, insurance_type: str, year: int) -> Policy:
    row = (
        await SettlementPolicy.select()
        .where(
            (SettlementPolicy.region_code == pooling_region(region_code))
            & (SettlementPolicy.insurance_type == insurance_type)
            & (SettlementPolicy.year == year)
        )
        .first()
    )
    if row is None:
        raise Conflict(
            f"no settlement policy for region {pooling_region(region_code)}, {insurance_type}, {year}",
            code="POLICY_MISSING",
        )
    return _row_to_policy(row)


async def usage(insured_id: int, year: int, *, lock: bool = False) -> Usage:
    """The year's usage so far; with `lock`, created if missing and locked until the caller commits."""
    query = InsuredYearUsage.select(
        InsuredYearUsage.deductible_met_fen, InsuredYearUsage.fund_paid_fen
    ).where((InsuredYearUsage.insured_id == insured_id) & (InsuredYearUsage.year == year))
    rows = await (query.lock_rows() if lock else query)
    if not rows and lock:  # the year's first payment: its row made, then locked as the others are
        await InsuredYearUsage.raw(
            """
            INSERT INTO insured_year_usage (insured_id, year, deductible_met_fen, fund_paid_fen, updated_at)
            VALUES ({}, {}, 0, 0, now()) ON CONFLICT (insured_id, year) DO NOTHING
            """,
            insured_id,
            year,
        )
        rows = await query.lock_rows()
    if not rows:
        return Usage()
    return Usage(deductible_met_fen=rows[0]["deductible_met_fen"], fund_paid_fen=rows[0]["fund_paid_fen"])


async def add_usage(insured_id: int, year: int, deductible_fen: int, fund_fen: int) -> None:
    """Count a payment (positive) or a reversal or refund (negative) in the year's usage."""
    await InsuredYearUsage.update(
        {
            InsuredYearUsage.deductible_met_fen: InsuredYearUsage.deductible_met_fen + deductible_fen,
            InsuredYearUsage.fund_paid_fen: InsuredYearUsage.fund_paid_fen + fund_fen,
            InsuredYearUsage.updated_at: datetime.now(UTC),
        }
    ).where((InsuredYearUsage.insured_id == insured_id) & (InsuredYearUsage.year == year))
