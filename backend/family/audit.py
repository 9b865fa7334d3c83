"""Family's invariants over the money. Every family mutual-aid journal was made under a link whose
version it was paid under was live and granted `manage` and `pay`, from the holder's personal
account, for a bill of the link's relative; what was given back went to that account, never more
than was paid. Every drawdown for a relative was made under a version granting `credit`, within
the month's cap as it stood. Versions, not clocks: a payment records the version of the link it
held locked, so no comparison of timestamps taken on different machines is needed."""

from __future__ import annotations

from backend.family.tables import FamilyLink


async def audit() -> tuple[list[str], dict[str, int]]:
    problems = []
    for row in await FamilyLink.raw(
        """
        SELECT j.id, j.reference, b.family_link_id, b.family_link_version, a.code AS account, e.amount_fen
        FROM ledger_journal j
        JOIN ledger_entry e ON e.journal_id = j.id
        JOIN ledger_account a ON a.id = e.account_id AND a.kind = 'personal_account'
        LEFT JOIN bill b
          ON b.id = CASE WHEN j.reference LIKE 'bill:%' THEN substr(j.reference, 6)::uuid END
        LEFT JOIN family_link l ON l.id = b.family_link_id
        LEFT JOIN family_grant_change g ON g.link_id = l.id AND g.version = b.family_link_version
        WHERE j.kind = 'bill.family_aid' AND NOT (
            b.id IS NOT NULL AND l.id IS NOT NULL AND g.id IS NOT NULL
            AND l.holder_id = b.family_insured_id AND l.relative_id = b.insured_id
            AND a.code = 'personal_account:' || l.holder_id::text
            AND -e.amount_fen = b.family_account_fen
            AND NOT g.ended AND g.grant_manage AND g.grant_pay
        )
        """
    ):
        problems.append(
            f"family mutual aid {row['reference']} (journal {row['id']}, {-row['amount_fen']} fen from "
            f"{row['account']}) was not made under a live link granting `pay` from the holder to the "
            f"bill's patient (link {row['family_link_id']}, version {row['family_link_version']})"
        )
    problems += await _given_back()
    problems += await _drawn_for_relatives()
    return problems, {"family_links": await FamilyLink.count()}


async def _given_back() -> list[str]:
    """Each bill's mutual aid, net of what was given back, on the holder's account alone: all of
    it while the bill stands, less its standing refunds' shares; nothing once it closed unpaid."""
    problems = []
    for row in await FamilyLink.raw(
        """
        WITH moved AS (
            SELECT coalesce(b.id, r.bill_id) AS bill_id, a.code, sum(e.amount_fen) AS amount
            FROM ledger_journal j
            JOIN ledger_entry e ON e.journal_id = j.id
            JOIN ledger_account a ON a.id = e.account_id AND a.kind = 'personal_account'
            LEFT JOIN bill b
              ON b.id = CASE WHEN j.reference LIKE 'bill:%' THEN substr(j.reference, 6)::uuid END
            LEFT JOIN bill_refund r
              ON r.id = CASE WHEN j.reference LIKE 'refund:%' THEN substr(j.reference, 8)::uuid END
            WHERE j.kind IN ('bill.family_aid', 'bill.family_aid_reversed', 'bill.family_aid_refunded')
            GROUP BY 1, 2
        ), expected AS (
            SELECT b.id AS bill_id, b.bill_no, b.state,
                   'personal_account:' || b.family_insured_id::text AS code,
                   CASE WHEN b.state IN ('CLOSED', 'FAILED') THEN 0
                        ELSE -(b.family_account_fen - coalesce((
                            SELECT sum(r.family_account_fen) FROM bill_refund r WHERE r.bill_id = b.id
                            AND r.state IN ('PROCESSING', 'SUCCEEDED', 'ATTENTION')), 0)) END AS amount
            FROM bill b WHERE b.family_account_fen > 0
        )
        SELECT coalesce(x.bill_no, m.bill_id::text) AS bill, x.state, coalesce(m.code, x.code) AS code,
               coalesce(m.amount, 0) AS moved, coalesce(x.amount, 0) AS expected
        FROM moved m FULL JOIN expected x ON x.bill_id = m.bill_id AND x.code = m.code
        WHERE coalesce(m.amount, 0) <> coalesce(x.amount, 0)
        """
    ):
        problems.append(
            f"bill {row['bill']} ({row['state']}): family mutual aid moved {row['moved']} fen on "
            f"{row['code']}, expected {row['expected']}"
        )
    return problems


async def _drawn_for_relatives() -> list[str]:
    """Each drawdown for a relative: under a live version granting a cap, and the month's drawdowns
    under the link up to it (less what refunds took off) within that cap."""
    problems = []
    for row in await FamilyLink.raw(
        """
        WITH drawn AS (
            SELECT d.id, d.family_link_id, d.family_link_version, d.created_at,
                   sum(d.amount_fen - d.refunded_fen) OVER (
                       PARTITION BY d.family_link_id,
                                    date_trunc('month', d.created_at AT TIME ZONE 'Asia/Shanghai')
                       ORDER BY d.created_at, d.id) AS month_so_far
            FROM credit_drawdown d WHERE d.family_link_id IS NOT NULL AND d.status <> 'FAILED'
        )
        SELECT w.id, w.family_link_id, w.family_link_version, w.month_so_far, g.credit_cap_fen, g.ended
        FROM drawn w
        LEFT JOIN family_grant_change g ON g.link_id = w.family_link_id AND g.version = w.family_link_version
        WHERE g.id IS NULL OR g.ended OR NOT g.grant_manage OR g.credit_cap_fen IS NULL
           OR w.month_so_far > g.credit_cap_fen
        """
    ):
        problems.append(
            f"drawdown {row['id']} for a relative (link {row['family_link_id']}, version "
            f"{row['family_link_version']}): {row['month_so_far']} fen drawn this month under a cap of "
            f"{row['credit_cap_fen']}{' (ended)' if row['ended'] else ''}"
        )
    return problems
