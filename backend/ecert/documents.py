"""Identity documents as the e-certificate platform lists them, checked before anyone is asked.

Resident ID cards, residence permits of Hong Kong, Macao and Taiwan residents, and the 2023
foreign permanent-residence card all use 18 characters with the GB 11643 check character; the
two travel permits have letters and digits of their own.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Literal

IdType = Literal[
    "resident_id",  # 居民身份证
    "hk_macau_tw_residence",  # 港澳台居民居住证
    "foreign_permanent_residence",  # 外国人永久居留身份证 (2023 format)
    "hk_macau_permit",  # 港澳居民来往内地通行证
    "taiwan_permit",  # 台湾居民来往大陆通行证
]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# Province-level codes of GB/T 2260 (11 Beijing ... 65 Xinjiang).
_PROVINCES = {
    11,
    12,
    13,
    14,
    15,
    21,
    22,
    23,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    41,
    42,
    43,
    44,
    45,
    46,
    50,
    51,
    52,
    53,
    54,
    61,
    62,
    63,
    64,
    65,
}
_RESIDENCE_PREFIXES = ("810000", "820000", "830000")  # Hong Kong, Macao, Taiwan residents
# A newborn's 出生医学证明编号: not a document one binds with, but whom a newborn is insured as.
BIRTH_CERTIFICATE = "birth_certificate"


def check_character(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def _gb11643_problem(number: str, today: date) -> str | None:
    if not re.fullmatch(r"[0-9]{17}[0-9X]", number):
        return "must be 17 digits and a digit or X"
    if check_character(number[:17]) != number[17]:
        return "check character does not match"
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return "birth date is not a real date"
    if born > today or born.year < 1900:
        return "birth date is out of range"
    return None


def problem(id_type: str, number: str, today: date | None = None) -> str | None:
    """What is wrong with `number` as a document of `id_type`, or None if it is well formed."""
    today = today or date.today()
    if id_type == "resident_id":
        if (found := _gb11643_problem(number, today)) is not None:
            return found
        if int(number[:2]) not in _PROVINCES or number[2:6] == "0000":
            return "region code is not a real region"
        return None
    if id_type == "hk_macau_tw_residence":
        if not number.startswith(_RESIDENCE_PREFIXES):
            return "must start with 810000, 820000 or 830000"
        return _gb11643_problem(number, today)
    if id_type == "foreign_permanent_residence":
        if not number.startswith("9"):
            return "must start with 9"
        if (found := _gb11643_problem(number, today)) is not None:
            return found
        return None
    if id_type == "hk_macau_permit":
        return None if re.fullmatch(r"[HM][0-9]{8}", number) else "must be H or M and 8 digits"
    if id_type == "taiwan_permit":
        return None if re.fullmatch(r"[0-9]{8}", number) else "must be 8 digits"
    return "unknown document type"


def birth_certificate_problem(number: str) -> str | None:
    """What is wrong with a birth-certificate number (a letter and 9 digits), or None."""
    return None if re.fullmatch(r"[A-Z][0-9]{9}", number) else "must be a letter and 9 digits"


def normalize(number: str) -> str:
    """Full-width digits and letters (as some keyboards type them) become ASCII: one document,
    one spelling, one digest."""
    return unicodedata.normalize("NFKC", number).strip().upper()


def mask_id(number: str) -> str:
    """18 characters keep the first 3 and last 4 (enough to recognise one's own); shorter
    documents keep 1 and 2, so at least half is always hidden."""
    head, tail = (3, 4) if len(number) >= 14 else (1, 2)
    return number[:head] + "*" * (len(number) - head - tail) + number[-tail:]


def mask_name(name: str) -> str:
    """张 -> *, 张三 -> 张*, 张三丰 -> 张*丰, 欧阳娜娜 -> 欧**娜."""
    if len(name) <= 2:
        return "*" if len(name) == 1 else name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
