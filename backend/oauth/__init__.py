"""Partner access (hospital HIS, terminals, banks): OAuth2 client credentials with scopes."""
