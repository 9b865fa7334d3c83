"""The README documents every setting the code reads."""

import msgspec

from backend.settings import Settings
from tests.servers import ROOT


def test_every_variable_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for group in msgspec.structs.fields(Settings):
        for field in msgspec.structs.fields(group.type):
            assert f"`{group.type.variable(field.name)}`" in readme, field.name
