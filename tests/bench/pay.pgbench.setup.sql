-- Run by `medpay bench` (tests/bench/system.py) on a copy of the bench database, after the
-- scenarios and before `pay.pgbench`. PLACEHOLDER: to be replaced with what the SQL of one pay
-- request needs.
--
-- Convention: each row of a table `bench_pgbench_vars (name, value)` left here is given to
-- pgbench as `-D name=value`.

-- What to pay with where the scenarios left none: a personal account and a receivable of its own.
INSERT INTO ledger_account (code, kind, balance_fen, created_at)
VALUES ('personal_account:pgbench', 'personal_account', 1000000000000, now()),
       ('hospital_receivable:pgbench', 'hospital_receivable', NULL, now())
ON CONFLICT (code) DO NOTHING;

DROP TABLE IF EXISTS bench_pay_target;
CREATE TABLE bench_pay_target AS
SELECT row_number() OVER (ORDER BY b.id) AS k, b.id AS bill_id,
       coalesce(personal.id, spare_personal.id) AS personal_id,
       coalesce(receivable.id, spare_receivable.id) AS receivable_id
FROM bill b
JOIN institution i ON i.id = b.institution_id
LEFT JOIN ledger_account personal ON personal.code = 'personal_account:' || b.insured_id
LEFT JOIN ledger_account receivable ON receivable.code = 'hospital_receivable:' || i.code
CROSS JOIN (SELECT id FROM ledger_account WHERE code = 'personal_account:pgbench') spare_personal
CROSS JOIN (SELECT id FROM ledger_account WHERE code = 'hospital_receivable:pgbench') spare_receivable;
CREATE UNIQUE INDEX ON bench_pay_target (k);
ANALYZE bench_pay_target;

DROP TABLE IF EXISTS bench_pgbench_vars;
CREATE TABLE bench_pgbench_vars AS
SELECT 'rows'::text AS name, count(*)::bigint AS value FROM bench_pay_target;
