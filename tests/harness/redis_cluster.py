"""A private three-node Redis Cluster on free loopback ports (no replicas), for cluster tests.

Each node is a :class:`~tests.harness.redis.RedisServer` started with ``--cluster-enabled yes``
and its own bus port (``--cluster-port``: the default, port + 10000, may be above 65535 for a
free port); ``redis-cli --cluster create`` then assigns the 16384 slots, and :meth:`start`
returns once every node says ``cluster_state:ok`` and knows all three.
"""

from __future__ import annotations

import subprocess

from .binaries import require
from .ports import free_port
from .process import ServiceError, wait_until
from .redis import RedisServer

NODES = 3


class RedisClusterServers:
    """Three cluster-enabled redis-servers holding all slots between them."""

    def __init__(self, start_timeout: float = 20.0) -> None:
        """Describe the cluster; :meth:`start` runs it."""
        self.start_timeout = start_timeout
        self.nodes: list[RedisServer] = []

    def start(self) -> None:
        """Start the nodes, create the cluster, and wait until every node reports it ok."""
        cli = require("redis-cli")
        try:
            for _ in range(NODES):
                node = RedisServer(
                    extra_args=[
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-port", str(free_port()),
                        "--cluster-node-timeout", "5000",
                    ],
                )  # fmt: skip
                self.nodes.append(node)
                node.start()
            addresses = [f"{node.host}:{node.port}" for node in self.nodes]
            created = subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=self.start_timeout,
                check=False,
            )
            if created.returncode != 0:
                raise ServiceError(f"redis-cli --cluster create failed:\n{created.stdout[-800:]}")
            wait_until(self._ready, self.start_timeout, "the Redis Cluster to report ok")
        except BaseException:
            self.cleanup()
            raise

    def _ready(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                info = client.cluster("INFO")
                if (
                    info.get("cluster_state") != "ok"
                    or int(info.get("cluster_known_nodes", 0)) != NODES
                ):
                    return False
        return True

    @property
    def host(self) -> str:
        """The address every node listens on."""
        return self.nodes[0].host

    @property
    def port(self) -> int:
        """The port of the first node: a client's start-up node."""
        return self.nodes[0].port

    def cleanup(self) -> None:
        """Stop every node and remove its directory."""
        for node in reversed(self.nodes):
            node.cleanup()
        self.nodes = []
