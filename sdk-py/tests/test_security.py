"""Authentication from Python: a LocalCluster requires the credentials it
made; its own clients and worker processes prove them with no setup, a
stranger (client or worker, with no credentials, a worker's file or
another cluster's) is refused with a message saying so, and the cluster
keeps serving its members meanwhile."""

import os
import subprocess
import sys

import pytest

import dask_rs


def inc(x):
    return x + 1


def stranger_env(tmp_path):
    """An environment that finds no credentials: an empty DASK_RS_HOME."""
    home = tmp_path / "stranger-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, DASK_RS_HOME=str(home))
    env.pop("DASK_CREDENTIALS", None)
    return env


def test_a_local_cluster_serves_its_members_and_refuses_strangers(tmp_path):
    with dask_rs.LocalCluster(n_workers=1, processes=True) as cluster, dask_rs.Client(cluster) as member:
        address = cluster.scheduler_address
        # Its worker process proved the worker secret from the cluster's file.
        assert member.submit(inc, 1).result() == 2
        assert len(member.scheduler_info()["workers"]) == 1

        # A client proving nothing.
        with pytest.raises(ConnectionError, match="authentication required"):
            dask_rs.Client(address, credentials=False, timeout=20)

        # A client in another process that finds no credentials file.
        code = "import sys, dask_rs; dask_rs.Client(sys.argv[1], timeout=20)"
        out = subprocess.run([sys.executable, "-c", code, address], env=stranger_env(tmp_path),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "authentication required" in out.stderr, out.stderr

        # A worker process that finds none: not registered, exits 1 saying why.
        out = subprocess.run([sys.executable, "-m", "dask_rs.worker", address, "--name", "stranger"],
                             env=stranger_env(tmp_path), capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and "authentication required" in out.stderr, out.stderr

        # A worker's file cannot submit work: refused before connecting.
        worker_file = tmp_path / "worker.json"
        cluster.export_credentials(str(worker_file), "worker")
        with pytest.raises(PermissionError, match="holds no client secret"):
            dask_rs.Client(address, credentials=worker_file, timeout=20)

        # Another cluster's client secret fails to prove.
        with dask_rs.LocalCluster(n_workers=0) as other:
            foreign = tmp_path / "foreign-client.json"
            other.export_credentials(str(foreign), "client")
            with pytest.raises(ConnectionError, match="failed to prove"):
                dask_rs.Client(address, credentials=foreign, timeout=20)

        # The exported client file gets a process of its own in.
        client_file = tmp_path / "client.json"
        cluster.export_credentials(str(client_file))
        assert oct(client_file.stat().st_mode & 0o777) == "0o600"
        code = "import sys, dask_rs; print(dask_rs.Client(sys.argv[1], credentials=sys.argv[2]).submit('add', 40, 2).result())"
        out = subprocess.run([sys.executable, "-c", code, address, str(client_file)], env=stranger_env(tmp_path),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.split() == ["42"], out.stderr

        # The members kept being served; no stranger registered.
        assert member.gather(member.map(inc, range(5))) == [1, 2, 3, 4, 5]
        names = [w["name"] for w in member.scheduler_info()["workers"].values()]
        assert "stranger" not in names and len(names) == 1


def test_an_in_process_worker_proves_the_local_clusters_secret_or_is_refused():
    with dask_rs.LocalCluster(n_workers=0) as cluster:
        with pytest.raises(OSError, match="authentication required"):
            dask_rs.Worker(cluster.scheduler_address, name="stranger", credentials=False)
        with dask_rs.Worker(cluster.scheduler_address, name="member"), dask_rs.Client(cluster) as client:
            assert client.submit(inc, 41).result() == 42
            assert [w["name"] for w in client.scheduler_info()["workers"].values()] == ["member"]


def test_the_session_cluster_refuses_a_stranger_when_it_requires_credentials(cluster):
    # dask-scheduler made the credentials file in this session's
    # DASK_RS_HOME (conftest.py), where every member found it.
    if not (cluster.home / "credentials.json").exists():
        pytest.skip("this dask-scheduler runs without authentication")
    with pytest.raises(ConnectionError, match="authentication required"):
        dask_rs.Client(cluster.address, credentials=False, timeout=20)
