"""Fund supervision of face payments: every bill paid at a kiosk has exactly one face payment
bound to it (this kiosk, this patient, this amount, a live face; each assertion pays once, by the
unique assertion id),
and every face payment is a kiosk's payment of its bill; a relative's money paid only under a
version of their link that allowed kiosks."""

from __future__ import annotations

from backend.kiosk.tables import FacePayment


async def audit() -> tuple[list[str], dict[str, int]]:
    problems = []
    for row in await FacePayment.raw(
        """
        WITH paid AS (
            SELECT b.bill_no, b.settlement->>'kiosk' AS kiosk, count(f.id) AS payments,
                   coalesce(bool_and(
                       f.kiosk_client_id = b.settlement->>'kiosk' AND f.insured_id = b.insured_id
                       AND f.amount_fen = b.total_fen - b.fund_fen AND f.liveness
                   ), false) AS bound
            FROM bill b LEFT JOIN face_payment f ON f.bill_id = b.id
            WHERE b.settlement ? 'kiosk' GROUP BY b.id
        )
        SELECT * FROM paid WHERE payments <> 1 OR NOT bound
        """
    ):
        problems.append(
            f"bill {row['bill_no']} was paid at kiosk {row['kiosk']} with {row['payments']} face payments "
            f"bound to it{'' if row['bound'] else ' that do not match it'}"
        )
    for row in await FacePayment.raw(
        """
        SELECT f.id, f.kiosk_client_id, b.bill_no FROM face_payment f JOIN bill b ON b.id = f.bill_id
        WHERE b.settlement IS NULL OR NOT b.settlement ? 'kiosk'
        """
    ):
        problems.append(
            f"face payment {row['id']} at {row['kiosk_client_id']}: "
            f"bill {row['bill_no']} says it was not paid at a kiosk"
        )
    for row in await FacePayment.raw(
        """
        SELECT b.bill_no, f.family_link_id FROM face_payment f JOIN bill b ON b.id = f.bill_id
        LEFT JOIN family_grant_change g ON g.link_id = b.family_link_id AND g.version = b.family_link_version
        WHERE b.family_link_id IS NOT NULL
          AND (b.family_link_id IS DISTINCT FROM f.family_link_id
               OR g.id IS NULL OR g.ended OR NOT g.grant_kiosk)
        """
    ):
        problems.append(
            f"bill {row['bill_no']}: a relative's account paid it at a kiosk "
            "under a link that did not allow kiosks"
        )
    for row in await FacePayment.raw(
        """
        SELECT b.bill_no, f.family_link_id, d.family_link_id AS drawn_under
        FROM face_payment f JOIN bill b ON b.id = f.bill_id
        JOIN credit_drawdown d ON d.bill_id = b.id AND d.status <> 'FAILED'
        LEFT JOIN family_grant_change g ON g.link_id = d.family_link_id AND g.version = d.family_link_version
        WHERE f.family_link_id IS NOT NULL
          AND (d.family_link_id IS DISTINCT FROM f.family_link_id
               OR g.id IS NULL OR g.ended OR NOT g.grant_kiosk)
        """
    ):
        problems.append(
            f"bill {row['bill_no']}: a relative's credit paid it at a kiosk under link {row['drawn_under']}, "
            f"which did not allow kiosks then (the face payment names link {row['family_link_id']})"
        )
    return problems, {"face_payments": await FacePayment.count()}
