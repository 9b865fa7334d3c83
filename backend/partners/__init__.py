"""Clients for the outside world: chat platforms, the e-certificate platform, banks."""
