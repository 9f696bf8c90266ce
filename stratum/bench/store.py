"""The results store, as the bench knows it: :mod:`stratum.store` (moved there so that the
report, which reads it, does not import the bench package: layers import one way).

Kept so that ``from stratum.bench.store import Store`` keeps working.
"""

from ..store import (  # noqa: F401
    ResultsStoreError,
    Store,
    check_summary,
    json_safe,
    parse_json_column,
    process_token,
    results_db_path,
    token_alive,
)
