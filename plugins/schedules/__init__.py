"""Learning-rate schedules (issue 12). Functional core only, in :mod:`.core`; not registered yet."""
