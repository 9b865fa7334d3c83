"""`./run soak`: the chaos soak (see __main__.py)."""
