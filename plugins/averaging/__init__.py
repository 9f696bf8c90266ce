"""Weight averaging, EMA and SWA (issue 12). Functional core only, in :mod:`.core`; not registered yet."""
