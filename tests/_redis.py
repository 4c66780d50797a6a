"""Real redis-server processes for tests: one standalone server and a 3-master cluster.

No fakeredis, no mocks. Servers listen on free loopback ports, keep nothing on
disk, and can be stopped, killed and restarted on the same port inside a test.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
REQUIRE = os.environ.get("OPSKIT_REQUIRE_REDIS") == "1"
MISSING_REASON = "redis-server is not on PATH (install it, or set REDIS_URL)"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, bus: bool = False) -> int:
    """A free loopback port; with ``bus``, port + 10000 is free too and below 65536."""
    if not bus:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    rng = random.Random()
    for _ in range(500):
        port = rng.randint(20000, 55000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """One redis-server process on a fixed port that can go down and come back."""

    def __init__(self, port: int | None = None, *, cluster: bool = False) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError(MISSING_REASON)
        self.port = port or free_port(bus=cluster)
        self.cluster = cluster
        self.dir = Path(tempfile.mkdtemp(prefix=f"opskit-redis-{self.port}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        assert REDIS_SERVER is not None
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "5000"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ping()
        return self

    def _wait_ping(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if self.proc is not None and self.proc.poll() is not None:
                    log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server on {self.port} exited:\n{log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} did not answer PING")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop it (SIGTERM) and wait until the port is closed."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill it abruptly (SIGKILL), as a crash would."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: object) -> redis.Redis:
        """A client that fails at once when the server is down (no retry backoff),
        so outage tests see the error in milliseconds, not seconds."""
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(port=self.port, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ExternalRedis:
    """A server named by ``REDIS_URL``: usable, but not ours to stop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("port", 6379)

    def client(self, **kwargs: object) -> redis.Redis:
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis.from_url(self.url, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        pass


class RedisClusterProcs:
    """Three masters in cluster mode, slots spread by ``redis-cli --cluster create``."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RedisServer(cluster=True) for _ in range(size)]

    def start(self) -> RedisClusterProcs:
        if REDIS_CLI is None:
            raise RuntimeError("redis-cli is not on PATH")
        for node in self.nodes:
            node.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for node in self.nodes:
            c = node.client()
            try:
                while b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("cluster did not reach cluster_state:ok")
                    time.sleep(0.05)
            finally:
                c.close()
        return self

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.nodes]

    def close(self) -> None:
        for node in self.nodes:
            node.close()
