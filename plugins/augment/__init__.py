"""Train-only data augmentation (issue 12). Functional core only, in :mod:`.core`; not registered yet."""
