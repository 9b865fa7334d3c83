-- Run by `medpay bench` (tests/bench/ceilings.py) on a copy of the bench database, after the
-- scenarios, before pay.pgbench: one row per bill the `pay` scenario paid by personal account,
-- with what its statements name (the bill, its person, their user, the accounts its journal
-- moved), so that each pgbench transaction pays a bill picked at random as the API paid it.
--
-- Each row of `bench_pgbench_vars (name, value)` is given to pgbench as `-D name=value`.

DROP TABLE IF EXISTS bench_pay_target;
CREATE TABLE bench_pay_target AS
SELECT row_number() OVER (ORDER BY b.id) AS k,
       b.id AS bill_id, b.insured_id, b.institution_id, b.payer_user_id AS user_id,
       b.policy_year AS year, b.state,
       -- the city's policy, as policy.pooling_region finds it (330106 -> 330100)
       left(p.region_code, 4) || '00' AS policy_region, p.insurance_type,
       max(a.code) FILTER (WHERE a.kind = 'personal_account') AS pa_code,
       max(a.code) FILTER (WHERE a.kind = 'hospital_receivable') AS receivable_code
FROM bill b
JOIN insured_person p ON p.id = b.insured_id
JOIN ledger_journal j ON j.kind = 'bill.settled' AND j.reference = 'bill:' || b.id
JOIN ledger_entry e ON e.journal_id = j.id
JOIN ledger_account a ON a.id = e.account_id
-- The scenario's bills: a registration the personal account pays whole (no fund part, no cash).
WHERE b.state = 'PAID' AND b.cash_fen = 0 AND b.fund_fen = 0 AND b.personal_account_fen > 0
GROUP BY b.id, p.region_code, p.insurance_type;
CREATE UNIQUE INDEX ON bench_pay_target (k);
ANALYZE bench_pay_target;

DROP TABLE IF EXISTS bench_pgbench_vars;
CREATE TABLE bench_pgbench_vars AS
SELECT 'rows'::text AS name, count(*)::bigint AS value FROM bench_pay_target;
