"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture(scope="module")
def client():
    """A distributed client of a LocalCluster of two single-thread worker processes.

    One cluster per module: a module that kills workers leaves no trace in another.
    """
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, worker_dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


# the real S3-compatible server (moto) and Icechunk repositories: see servers.py
from servers import icechunk_repo, moto_server, s3  # noqa: E402,F401
