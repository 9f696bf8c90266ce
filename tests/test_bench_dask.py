"""`stratum bench --executor dask`: the same matrix on a real Dask cluster (no mocks)."""

from __future__ import annotations

import logging

import pytest

from stratum.bench.store import Store

from .conftest import run_cli

distributed = pytest.importorskip("distributed")

TINY = ["--dataset", "cubic", "--model", "mlp", "--hidden", "16", "--epochs", "2", "--steps-per-epoch", "4"]


@pytest.fixture(scope="module")
def cluster():
    """A real local cluster: a scheduler and 2 single-threaded worker processes."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as local:
        yield local


def test_bench_on_a_two_worker_dask_cluster(cluster, tmp_path):
    with distributed.Client(cluster.scheduler_address) as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
    db = tmp_path / "d.sqlite"
    result = run_cli("bench", "--strategies", "sgd", "--seeds", "4", "--axis", "lr=0.01,1000", *TINY, "--db", db,
                     "--executor", "dask", "--address", cluster.scheduler_address, "--no-report")
    assert result.exit_code == 0, result
    assert f"executor dask at {cluster.scheduler_address}" in result.stdout
    with Store(db, create=False) as store:
        rows = store.bench_rows()
        owners = {r[0] for r in store.conn.execute("SELECT owner FROM runs")}
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    assert sorted(r["seed"] for r in rows) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sum(r["diverged"] for r in rows) == 4  # lr=1000 diverges on every seed, and is recorded
    assert owners == {None}  # every claim was released by a stored result
    for r in rows:
        assert r["summary"]["threads"] == 1 and r["summary"]["history"]

    # Resume works the same way on the cluster.
    again = run_cli("bench", "--strategies", "sgd", "--seeds", "5", "--axis", "lr=0.01,1000", *TINY, "--db", db,
                    "--executor", "dask", "--address", cluster.scheduler_address, "--no-report")
    assert again.exit_code == 0, again
    assert "10 runs (8 already done, 2 to run)" in again.stdout


def test_dask_results_match_the_local_pool(cluster, tmp_path):
    """Same run ids, same (deterministic) accuracies whichever executor ran them."""
    common = ["--strategies", "sgd", "--seeds", "2", *TINY, "--no-report"]
    assert run_cli("bench", *common, "--db", tmp_path / "a.sqlite", "--executor", "dask",
                   "--address", cluster.scheduler_address).exit_code == 0
    assert run_cli("bench", *common, "--db", tmp_path / "b.sqlite", "--workers", "2").exit_code == 0

    def losses(db):
        with Store(db, create=False) as store:
            return {r["run_id"]: [h["val_loss"] for h in r["summary"]["history"]] for r in store.bench_rows()}

    a, b = losses(tmp_path / "a.sqlite"), losses(tmp_path / "b.sqlite")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-6)


def test_ray_is_refused_with_a_pointer_to_dask():
    result = run_cli("bench", "--strategies", "sgd", "--seeds", "1", "--executor", "ray", "--model", "mlp")
    assert result.exit_code == 2 and "--executor ray is not built in" in result.stderr


def test_address_needs_the_dask_executor():
    result = run_cli("bench", "--strategies", "sgd", "--seeds", "1", "--address", "tcp://x:1", "--model", "mlp")
    assert result.exit_code == 2 and "--address needs --executor dask" in result.stderr
