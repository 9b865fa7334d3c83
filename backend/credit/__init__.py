"""Credit payment ("treat first, pay later"): banks' credit lines, drawdowns, repayment."""
