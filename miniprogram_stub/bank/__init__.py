"""A sandbox bank offering "treat first, pay later" credit lines; its own HTTP process."""
