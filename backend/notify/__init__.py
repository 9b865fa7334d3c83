"""Notifications: subscribe messages through the chat platforms, and the in-app inbox."""
