"""The double-entry ledger: accounts, journals, and the entries that move money."""

from piccolo.columns import BigInt, BigSerial, ForeignKey, Serial, Timestamptz, Varchar
from piccolo.constraints import Check, Unique
from piccolo.table import Table

# Accounts whose balance is kept on their row, updated by every posting under the row's lock: one
# person's or one line's, where a limit applies (a personal account never below zero). Every other
# account (a region's fund pool, a hospital's receivable, a channel's clearing, a bank's) is shared
# by every payment of its region, hospital or channel at once: its balance is the sum of its
# entries, read when asked, so no payment waits on another's lock on it (docs/billing.md).
KEPT_KINDS = ("personal_account", "credit_debt")


class Account(Table, tablename="ledger_account"):
    id = Serial(primary_key=True)
    code = Varchar(length=100, unique=True)  # "<kind>:<owner>", e.g. "personal_account:42"
    kind = Varchar(length=32)
    # Kept kinds: always the sum of the account's entries. Shared ones: NULL, never read (their
    # balance is summed from their entries; a row an older release opened may hold a stale figure).
    balance_fen = BigInt(null=True, default=None)
    created_at = Timestamptz()

    personal_account_not_negative = Check("kind <> 'personal_account' OR balance_fen >= 0")


class Journal(Table, tablename="ledger_journal"):
    """One money movement; its entries sum to zero. (kind, reference) is posted once."""

    id = BigSerial(primary_key=True)
    kind = Varchar(length=40)
    reference = Varchar(length=100)
    correlation_id = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz()

    posted_once = Unique([kind, reference])


class Entry(Table, tablename="ledger_entry"):
    id = BigSerial(primary_key=True)
    journal_id = ForeignKey(Journal, null=False, index=True)
    account_id = ForeignKey(Account, null=False, index=True)
    amount_fen = BigInt()
