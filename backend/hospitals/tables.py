"""Institution table."""

from piccolo.columns import Integer, Serial, Timestamptz, Varchar
from piccolo.constraints import Check
from piccolo.table import Table


class Institution(Table, tablename="institution"):
    id = Serial(primary_key=True)
    code = Varchar(length=32, unique=True)
    name = Varchar(length=200)
    level = Integer()  # hospital level 1, 2 or 3: decides reimbursement ratios
    region_code = Varchar(length=6)
    created_at = Timestamptz()

    level_range = Check("level BETWEEN 1 AND 3")
