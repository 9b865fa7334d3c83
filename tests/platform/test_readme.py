"""docs/configuration.md documents every variable the code reads (the settings and the sandbox's),
and the README links every page of the manual."""

import re

import msgspec

from backend.settings import Settings
from tests.servers import ROOT

PAGE = ROOT / "docs" / "configuration.md"


def test_every_setting_is_in_the_configuration_page() -> None:
    page = PAGE.read_text()
    for group in msgspec.structs.fields(Settings):
        for field in msgspec.structs.fields(group.type):
            assert f"| `{group.type.variable(field.name)}` |" in page, field.name


def test_every_sandbox_variable_is_in_the_configuration_page() -> None:
    page = PAGE.read_text()
    for config in ("sandbox/config.py", "bank/config.py"):
        source = (ROOT / "miniprogram_stub" / config).read_text()
        variables = re.findall(r"os\.environ\.get\(\s*\"(\w+)\"", source)
        assert variables, config
        for variable in variables:
            assert f"| `{variable}` |" in page, variable


def test_the_readme_links_every_page_of_the_manual() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, page.name
