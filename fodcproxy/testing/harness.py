"""`open_proxy()`: a proxy inside the caller's nursery, on 127.0.0.1 with ports picked by the OS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio

from fodcproxy.config import ProxyConfig
from fodcproxy.proxy import Proxy, ProxyAddresses


@attrs.frozen
class ProxyHandle:
    proxy: Proxy
    addresses: ProxyAddresses

    @property
    def grpc_address(self) -> str:
        """"127.0.0.1:<port>", for agents."""
        return self.addresses.grpc_address

    @property
    def http_url(self) -> str:
        """"http://127.0.0.1:<port>", for clients."""
        return self.addresses.http_url


@contextlib.asynccontextmanager
async def open_proxy(**overrides: Any) -> AsyncIterator[ProxyHandle]:
    """Start a proxy; leaving the block shuts it down in order (HTTP, then agents, then tasks).

    `overrides` are `ProxyConfig` fields, e.g. `agent_heartbeat_timeout=2.0, collect_timeout=1.0`.
    Unlike the program's default, `diagnostics_refresh_interval` is 0: the proxy asks the agents'
    crash and pressure streams only when the test does, so what a fake agent is asked is exactly
    what the test caused (pass a positive interval to test the background refresh).
    """
    settings: dict[str, Any] = dict(grpc_host="127.0.0.1", grpc_port=0, http_host="127.0.0.1",
                                    http_port=0, diagnostics_refresh_interval=0.0)
    settings.update(overrides)
    config = ProxyConfig(**settings)
    async with trio.open_nursery() as nursery:
        proxy = Proxy(config)
        addresses = await nursery.start(proxy.run)
        try:
            yield ProxyHandle(proxy, addresses)
        finally:
            proxy.shutdown()
