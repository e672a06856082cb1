"""Fixtures shared by the test modules."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _away_from_the_source_tree(tmp_path_factory):
    """Run the tests (and the interpreters they start, which inherit it) from an empty folder.

    ``python -c``/``-m`` put the working directory first on ``sys.path``: from a fresh clone's
    root they would import its uncompiled source tree instead of the chunkpress under test.
    """
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(here)


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


@pytest.fixture(params=["threads", "cluster"])
def scheduler(request):
    """Run the test on the local threaded scheduler, then on the module's LocalCluster."""
    import dask

    if request.param == "cluster":
        request.getfixturevalue("client")
        yield request.param
    else:  # the module's cluster may be up (an earlier test): not used here
        with dask.config.set(scheduler="threads"):
            yield request.param


# the real S3-compatible server (moto) and Icechunk repositories: see servers.py
from servers import icechunk_repo, moto_server, s3  # noqa: E402,F401
