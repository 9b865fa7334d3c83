"""The outside world in a box: partner sandboxes and a scripted phone, spoken to over HTTP only."""
