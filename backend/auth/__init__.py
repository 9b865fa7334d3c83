"""Patients' login from the mini-programs, access and refresh tokens."""
