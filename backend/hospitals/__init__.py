"""Hospitals and other medical institutions: who bills, who scans, at which level."""
