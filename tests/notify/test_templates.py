"""The templates file is data, checked when loaded: a template the code cannot send stops the start."""

from pathlib import Path

import pytest

from backend.notify.templates import FILE, TEMPLATES, TemplateError, load

GOOD = """
[paid]
title = "缴费成功"
page = "pages/bill/detail?id={bill_id}"
inbox = "{0}：{1}"
wechat_id = "wx-1"
alipay_id = "ali-1"
fields = [
    { keyword = "thing1", param = "hospital", format = "thing" },
    { keyword = "amount2", param = "amount_fen", format = "yuan" },
]
sample = { hospital = "杭州市第一人民医院", amount_fen = 12850, bill_id = 1 }
"""


def test_the_shipped_file_loads_every_template() -> None:
    assert load(FILE) == TEMPLATES
    assert TEMPLATES["payment_succeeded"].inbox_text(TEMPLATES["payment_succeeded"].sample) == (
        "您在杭州市第一人民医院的账单B202611220001已缴费成功，金额128.50元，时间2026-11-22 09:30。"
    )


def test_a_good_file_loads(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text(GOOD)
    [paid] = load(tmp_path / "t.toml").values()
    assert paid.key == "paid"
    assert paid.alipay_data(paid.sample) == {
        "keyword1": {"value": "杭州市第一人民医院"},
        "keyword2": {"value": "128.50元"},
    }


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (('format = "yuan"', 'format = "euro"'), "format"),
        ((", bill_id = 1 }", " }"), "sample does not render"),
        (("fields = [", "fields = [[["), "templates.toml|t.toml"),
        (('inbox = "{0}：{1}"', 'inbox = "{0}：{2}"'), "names a field it does not have"),
        (('keyword = "amount2"', 'keyword = "thing1"'), "keyword appears twice"),
        (('title = "缴费成功"', 'title = "缴费成功"\ncolour = "red"'), "colour"),
        (("amount_fen = 12850", 'amount_fen = "128.50"'), "sample does not render"),
    ],
)
def test_a_template_the_code_cannot_send_is_refused_at_load(tmp_path: Path, change, complaint) -> None:
    (tmp_path / "t.toml").write_text(GOOD.replace(*change))

    with pytest.raises(TemplateError, match=complaint):
        load(tmp_path / "t.toml")
