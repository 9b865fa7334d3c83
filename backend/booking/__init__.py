"""Appointment booking: hospitals' schedules, places held and paid for, waitlists, check-in."""
