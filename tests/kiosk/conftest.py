"""Kiosk tests: the money tests' books, seeded, then audited after each test and compared with
the sandbox channels'."""

from tests.billing.conftest import audited_books

__all__ = ["audited_books"]
