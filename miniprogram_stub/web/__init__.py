"""H5 pages a person can click: the mini-program's screens, a hospital terminal, a cashier (docs/pages.md)."""
