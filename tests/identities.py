"""Valid identity documents for tests, by the e-certificate sandbox's documented rule:
a name starting with 测试 and any valid resident ID is an insured person."""

from __future__ import annotations

import itertools

from backend.ecert.documents import check_character

_serial = itertools.count(1)


def resident_id(region: str = "330106", born: str = "19880716", sequence: int | None = None) -> str:
    """A well-formed 18-digit resident ID; a fresh one on every call unless `sequence` is given."""
    number = f"{region}{born}{(next(_serial) if sequence is None else sequence) % 1000:03d}"
    return number + check_character(number)


def employee_id(region: str = "330106") -> str:
    """A resident ID the sandbox files under employee insurance (odd 17th digit)."""
    while True:
        number = resident_id(region)
        if int(number[16]) % 2 == 1:
            return number
