"""Family: relatives linked to a holder, by invitation or by proxy, and the grants on each link."""
