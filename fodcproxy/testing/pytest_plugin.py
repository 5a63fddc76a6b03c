"""pytest fixtures for harnesses: a running proxy and a fake-agent factory (with pytest-trio).

Opt in from your `conftest.py`:

    pytest_plugins = ["fodcproxy.testing.pytest_plugin"]

(or run `pytest -p fodcproxy.testing.pytest_plugin`). The package also registers this module under
the `pytest11` entry point with the same name, so once fodcproxy is installed the fixtures are
available without either; both ways can be used together.

    async def test_three_roles(fodc_proxy, fodc_fake_agent):
        for role in ("liaison", "datanode-hot", "datanode-cold"):
            await fodc_fake_agent(role=role, series=[static("up_ratio", 1)])
        body = (await http_get(fodc_proxy.http_url + "/metrics")).text

Fixtures:
- `fodc_proxy_settings`: a dict of `ProxyConfig` overrides (default: none); override it in a
  conftest or a test module to change the proxy's timeouts and limits.
- `fodc_proxy`: a `ProxyHandle` (`grpc_address`, `http_url`, `proxy`) of a proxy on 127.0.0.1 with
  ports picked by the OS, shut down in order after the test.
- `fodc_fake_agent`: `await fodc_fake_agent(role=..., ip=..., port=..., series=[...], **options)`
  returns a registered `FakeAgent` of `fodc_proxy`; every agent made says goodbye after the test.

The fixtures are async: they need pytest-trio (`trio_mode = true`, or `@pytest.mark.trio` on the
tests). Importing this module has no side effects beyond defining the fixtures; fodcproxy itself is
imported only when a fixture is used.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from fodcproxy.testing.fake import FakeAgent, Series
    from fodcproxy.testing.harness import ProxyHandle

__all__ = ["FakeAgentFactory", "fodc_fake_agent", "fodc_proxy", "fodc_proxy_settings"]


class FakeAgentFactory(Protocol):
    """The type of the `fodc_fake_agent` fixture."""

    def __call__(self, *, role: str, ip: str | None = ..., port: int | None = ...,
                 labels: Mapping[str, str] | None = ..., series: Sequence[Series] = ...,
                 **options: Any) -> Awaitable[FakeAgent]: ...


@pytest.fixture
def fodc_proxy_settings() -> dict[str, Any]:
    """`ProxyConfig` overrides for `fodc_proxy`, e.g. `{"collect_timeout": 1.0}`. Override me."""
    return {}


@pytest.fixture
async def fodc_proxy(fodc_proxy_settings: dict[str, Any]) -> AsyncIterator[ProxyHandle]:
    """A proxy on 127.0.0.1 (ports picked by the OS) for the duration of the test."""
    from fodcproxy.testing.harness import open_proxy

    async with open_proxy(**fodc_proxy_settings) as handle:
        yield handle


@pytest.fixture
async def fodc_fake_agent(fodc_proxy: ProxyHandle) -> AsyncIterator[FakeAgentFactory]:
    """A factory of registered fake agents of `fodc_proxy`; all say goodbye after the test.

    `ip` defaults to 127.0.0.1 and `port` to a fresh number per agent (20000, 20001, ...), so
    agents made without them have distinct identities. Other keyword arguments go to `FakeAgent`:
    with `pod_name` (and no `ip`) the agent is a pod agent, like upstream BanyanDB's.
    """
    import trio

    from fodcproxy.testing.fake import FakeAgent

    ports = itertools.count(20000)
    agents: list[FakeAgent] = []
    async with trio.open_nursery() as nursery:

        async def make(*, role: str, ip: str | None = None, port: int | None = None,
                       labels: Mapping[str, str] | None = None, series: Sequence[Series] = (),
                       **options: Any) -> FakeAgent:
            if ip is None and options.get("pod_name"):
                ip, port = "", 0  # a pod agent
            agent = FakeAgent(fodc_proxy.grpc_address, role=role,
                              ip="127.0.0.1" if ip is None else ip,
                              port=next(ports) if port is None else port, labels=labels,
                              series=series, **options)
            agents.append(agent)
            await nursery.start(agent.run)
            return agent

        try:
            yield make
        finally:
            for agent in agents:
                agent.disconnect()
