"""The double-entry ledger: accounts with balances, journals, and the entries that move money."""

from piccolo.columns import BigInt, BigSerial, ForeignKey, Serial, Timestamptz, Varchar
from piccolo.constraints import Check, Unique
from piccolo.table import Table


class Account(Table, tablename="ledger_account"):
    id = Serial(primary_key=True)
    code = Varchar(length=100, unique=True)  # "<kind>:<owner>", e.g. "personal_account:42"
    kind = Varchar(length=32)
    balance_fen = BigInt(default=0)  # always the sum of the account's entries
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
