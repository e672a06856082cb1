"""Test servers: a real S3-compatible server (moto) and local Icechunk repositories.

Fixtures (wire them into conftest.py with ``from servers import *`` or
``pytest_plugins = ["servers"]``; the tests directory is on ``sys.path`` under
pytest's default rootdir-relative import mode):

``moto_server``   session scope: a ``python -m``-style moto server subprocess bound
                  to 127.0.0.1 on a kernel-chosen free port; killed at session end.
``s3``            function scope: a fresh, empty bucket on that server; yields an
                  :class:`S3Bucket` with ``url``, ``storage_options``, ``env``.  If a
                  previous test killed the server (``s3.server.kill()``), a new one
                  is started first.
``icechunk_repo`` function scope: a new Icechunk repository on local disk under
                  ``tmp_path``.

All traffic stays on 127.0.0.1: credentials are fixed dummies, EC2/IMDS metadata
lookups are disabled in ``env``, proxies are bypassed for the loopback address.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

__all__ = ["MotoServer", "S3Bucket", "moto_server", "s3", "icechunk_repo", "start_moto_server"]

HOST = "127.0.0.1"
REGION = "us-east-1"
KEY = "testing"
SECRET = "testing"

# The child binds port 0 itself (no pick-a-port-then-bind race), then reports the
# port on stdout.  MOTO_PORT is set before moto is imported because moto uses it
# when it builds URLs that refer back to itself.
_LAUNCHER = r"""
import os, socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((sys.argv[1], 0))
port = sock.getsockname()[1]
sock.close()
os.environ["MOTO_PORT"] = str(port)
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
server = make_server(sys.argv[1], port, app, threaded=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@dataclasses.dataclass
class MotoServer:
    """A running moto server subprocess."""

    proc: subprocess.Popen
    host: str
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (for tests of failure handling); ``ensure_running`` revives it."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def ensure_running(self) -> None:
        """Start a replacement server (new port, empty) if this one has died."""
        if not self.alive():
            self.stop()
            new = start_moto_server(self.host)
            self.proc, self.port = new.proc, new.port

    def reset(self) -> None:
        """Drop every bucket and object (moto's reset API)."""
        req = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        _opener().open(req, timeout=10).close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _opener():
    # Never send loopback requests through a proxy from the environment.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start_moto_server(host: str = HOST, timeout: float = 60.0) -> MotoServer:
    """Start moto's S3 server in a subprocess on a free port and wait until it answers."""
    env = dict(os.environ)
    env.update(_base_env())
    env.pop("MOTO_PORT", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, host],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=True,  # a Ctrl-C aimed at pytest does not hit the server first
    )
    line = proc.stdout.readline()  # blocks until the port is printed or the child dies
    if not line.strip().isdigit():
        proc.kill()
        proc.wait()
        raise RuntimeError(f"moto server failed to start (exit code {proc.returncode}, output {line!r})")
    server = MotoServer(proc=proc, host=host, port=int(line))
    deadline = time.monotonic() + timeout
    while True:
        try:
            _opener().open(server.endpoint_url + "/moto-api/", timeout=5).close()
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            if not server.alive() or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("moto server did not become ready") from None
            time.sleep(0.05)


def _base_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


@dataclasses.dataclass
class S3Bucket:
    """One bucket on the test server.

    ``url``              ``"s3://<bucket>/"``
    ``storage_options``  kwargs for ``s3fs.S3FileSystem`` / ``zarr.storage.FsspecStore.from_url``
                         / ``xr.open_zarr(..., storage_options=...)``
    ``env``              environment variables for a child process (merge into ``os.environ``):
                         AWS_* credentials and region, ``AWS_ENDPOINT_URL`` (botocore, boto3,
                         s3fs via aiobotocore) and ``FSSPEC_S3_*`` (fsspec's per-protocol
                         defaults, so ``fsspec.filesystem("s3")`` works with no arguments).
    """

    name: str
    endpoint_url: str
    storage_options: dict
    env: dict
    server: MotoServer

    @property
    def url(self) -> str:
        return f"s3://{self.name}/"

    def path(self, *parts: str) -> str:
        """``s3://bucket/a/b`` for ``path("a", "b")``."""
        return self.url + "/".join(p.strip("/") for p in parts)

    def filesystem(self, **kwargs):
        """A fresh (not instance-cached) ``s3fs.S3FileSystem`` for this server."""
        import s3fs

        return s3fs.S3FileSystem(**{**self.storage_options, "skip_instance_cache": True, **kwargs})

    def client(self):
        """A synchronous boto3 S3 client for this server (direct, uncached API access)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name=REGION,
        )


def _storage_options(endpoint_url: str) -> dict:
    return {
        "endpoint_url": endpoint_url,
        "key": KEY,
        "secret": SECRET,
        "anon": False,
        "client_kwargs": {"region_name": REGION},
        # another process (or a raw client) may change the bucket: never trust stale listings
        "use_listings_cache": False,
    }


def _env(endpoint_url: str) -> dict:
    env = _base_env()
    env.update({
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ENDPOINT_URL_S3": endpoint_url,
        "FSSPEC_S3_ENDPOINT_URL": endpoint_url,
        "FSSPEC_S3_KEY": KEY,
        "FSSPEC_S3_SECRET": SECRET,
    })
    return env


@pytest.fixture(scope="session")
def moto_server():
    """A moto S3 server subprocess on 127.0.0.1:<free port>, for the whole session."""
    server = start_moto_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server):
    """A fresh empty bucket on the session's moto server."""
    moto_server.ensure_running()  # an earlier test may have killed it
    endpoint = moto_server.endpoint_url
    bucket = S3Bucket(
        name=f"test-{uuid.uuid4().hex[:16]}",
        endpoint_url=endpoint,
        storage_options=_storage_options(endpoint),
        env=_env(endpoint),
        server=moto_server,
    )
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    yield bucket
    # Free the server's memory; a test that killed the server must not fail here.
    if moto_server.alive():
        try:
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket.name):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
            client.delete_bucket(Bucket=bucket.name)
        except Exception:
            pass


@pytest.fixture
def icechunk_repo(tmp_path):
    """A new, empty Icechunk repository on local disk (``tmp_path / "repo.icechunk"``)."""
    import icechunk

    storage = icechunk.local_filesystem_storage(str(tmp_path / "repo.icechunk"))
    yield icechunk.Repository.create(storage)
