"""Booking tests: the money tests' books, seeded, then audited after every test (places counted,
appointments against their bills) and checked against the sandbox channels."""

from tests.billing.conftest import audited_books

__all__ = ["audited_books"]
