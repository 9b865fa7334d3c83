"""Identity documents are checked locally before the platform is asked."""

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from backend.ecert.documents import check_character, mask_id, mask_name, problem

digits = st.text(alphabet="0123456789", min_size=17, max_size=17)
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 12, 31))
regions = st.sampled_from(["110105", "310104", "330106", "440305", "650102"])


@given(regions, births, st.integers(0, 999))
def test_every_well_formed_resident_id_passes(region, born, sequence) -> None:
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    assert problem("resident_id", first17 + check_character(first17)) is None


@given(digits, st.integers(0, 16), st.integers(1, 9))
def test_the_check_character_catches_every_single_digit_error(first17, position, shift) -> None:
    number = first17 + check_character(first17)
    changed = first17[:position] + str((int(first17[position]) + shift) % 10) + first17[position + 1 :]
    assert check_character(changed) != number[17]


@given(digits, st.integers(0, 15))
def test_the_check_character_catches_swapped_neighbours(first17, position) -> None:
    a, b = first17[position], first17[position + 1]
    swapped = first17[:position] + b + a + first17[position + 2 :]
    if a != b:
        assert check_character(swapped) != check_character(first17)


def test_known_numbers() -> None:
    assert check_character("11010519491231002") == "X"  # the standard's own example
    assert problem("resident_id", "11010519491231002X") is None
    assert problem("resident_id", "110105194912310021") == "check character does not match"
    assert (
        problem(
            "resident_id", "110105194902300029".replace("0029", "002" + check_character("11010519490230002"))
        )
        == "birth date is not a real date"
    )
    assert problem("resident_id", "99010519491231002" + check_character("99010519491231002")) == (
        "region code is not a real region"
    )
    future = "11010520991231002"
    assert problem("resident_id", future + check_character(future)) == "birth date is out of range"


def test_other_documents() -> None:
    hk = "81000019900101001"
    assert problem("hk_macau_tw_residence", hk + check_character(hk)) is None
    assert problem("hk_macau_tw_residence", "330106199001010011") is not None
    foreign = "93310619900101001"
    assert problem("foreign_permanent_residence", foreign + check_character(foreign)) is None
    assert problem("hk_macau_permit", "H12345678") is None
    assert problem("hk_macau_permit", "X12345678") is not None
    assert problem("taiwan_permit", "12345678") is None
    assert problem("passport", "E12345678") == "unknown document type"


def test_masks_keep_only_what_a_person_needs_to_recognise_their_own() -> None:
    assert mask_id("33010619880716123X") == "330***********123X"
    assert mask_name("张三") == "张*"
    assert mask_name("张三丰") == "张*丰"
    assert mask_name("欧阳娜娜") == "欧**娜"
