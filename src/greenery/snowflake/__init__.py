"""Snowflake parity: the sqlglot dialect check (dialect) and the fakesnow emulation of the
`snowflake` target (emulation)."""
