"""TLS on both ports and bearer tokens for agents and HTTP clients (all off by default)."""

from __future__ import annotations

import logging
import ssl

import grpc
import pytest
import trio
import trustme

from fodcproxy.agent.client import AgentClient, AgentSpec
from fodcproxy.core.model import LATEST
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc import convert
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.service import REGISTER, STREAM_METRICS
from fodcproxy.security import client_context
from fodcproxy.testing import open_proxy
from fodcproxy.testing.http import http_get

TOKEN = "s3cr3t-agent-token-0123456789"


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca, tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = d / "cert.pem", d / "key.pem", d / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    return str(cert_path), str(key_path), str(ca_path)


def ident(**kw):
    return convert.registration_to_proto(role="liaison", ip="127.0.0.1", port=1, **kw)


async def test_grpc_over_tls_with_our_client_and_grpcio(cert_files):
    cert, key, ca_file = cert_files
    with trio.fail_after(20):
        async with open_proxy(grpc_tls_cert_file=cert, grpc_tls_key_file=key) as proxy:
            ctx = client_context(ca_file, flag="--proxy-tls-ca-file", alpn=["h2"])
            async with open_channel("127.0.0.1", proxy.addresses.grpc_port, ssl_context=ctx) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(ident())
                assert (await call.receive()).success

            # a plaintext client is refused (the handshake fails), the proxy lives on
            with pytest.raises(Exception):
                async with open_channel("127.0.0.1", proxy.addresses.grpc_port, connect_timeout=5) as ch:
                    call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                    await call.send(ident(labels={"x": "y"}))
                    if await call.receive() is None:
                        raise ConnectionError(call.status)

            def grpcio_register():
                with open(ca_file, "rb") as f:
                    creds = grpc.ssl_channel_credentials(root_certificates=f.read())
                with grpc.secure_channel(proxy.grpc_address, creds) as channel:
                    register = channel.stream_stream(REGISTER, request_serializer=pb.RegisterAgentRequest.SerializeToString,
                                                     response_deserializer=pb.RegisterAgentResponse.FromString)
                    it = register(iter([ident(labels={"via": "grpcio"})]))
                    return next(it)

            first = await trio.to_thread.run_sync(grpcio_register, abandon_on_cancel=True)
            assert first.success


async def test_https_api(cert_files):
    cert, key, ca_file = cert_files
    with trio.fail_after(20):
        async with open_proxy(http_tls_cert_file=cert, http_tls_key_file=key) as proxy:
            assert proxy.http_url.startswith("https://")
            ctx = ssl.create_default_context(cafile=ca_file)
            r = await http_get(proxy.http_url + "/health", ssl_context=ctx)
            assert r.status == 200 and r.json()["status"] == "ok"


async def test_agent_token_required_before_anything_is_registered(caplog):
    # Our own loggers at their most verbose. (hpack logs decoded headers at DEBUG; the CLI keeps
    # hpack and h2 at WARNING for that reason.)
    caplog.set_level(logging.DEBUG, logger="fodcproxy")
    with trio.fail_after(20):
        async with open_proxy(agent_token=TOKEN) as proxy:
            port = proxy.addresses.grpc_port
            async with open_channel("127.0.0.1", port) as ch:
                for metadata in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
                    call = await ch.start_call(REGISTER, pb.RegisterAgentResponse, metadata=metadata)
                    await call.send(ident())
                    assert await call.receive() is None
                    assert call.status[0] == GrpcCode.UNAUTHENTICATED
                    assert "--agent-token-file" in call.status[1]
                call = await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                           metadata={"agent_id": "x"})
                assert await call.receive() is None
                assert call.status[0] == GrpcCode.UNAUTHENTICATED
            assert len(proxy.proxy.registry) == 0
            # the right token works, for the fake agents of fodcproxy.testing too
            async with open_channel("127.0.0.1", port) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse,
                                           metadata={"authorization": f"Bearer {TOKEN}"})
                await call.send(ident())
                assert (await call.receive()).success
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("fodcproxy")]
    assert any("missing or wrong agent token" in m for m in ours)
    assert not any(TOKEN in m for m in ours)


async def test_agent_client_sends_its_token_over_tls(cert_files):
    cert, key, ca_file = cert_files

    async def source(window):
        return [pb.Metric(name="x", value=1.0)]

    with trio.fail_after(20):
        async with open_proxy(agent_token=TOKEN, grpc_tls_cert_file=cert, grpc_tls_key_file=key) as proxy:
            ctx = client_context(ca_file, flag="--proxy-tls-ca-file", alpn=["h2"])
            client = AgentClient("127.0.0.1", proxy.addresses.grpc_port,
                                 AgentSpec(role="liaison", ip="127.0.0.1", port=1), source,
                                 token=TOKEN, ssl_context=ctx)
            async with trio.open_nursery() as nursery:
                agent_id = await nursery.start(client.run)
                hub = proxy.proxy.hub
                [result] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5)
                assert result.up and result.meta.agent_id == agent_id
                assert [m.name for m in result.samples] == ["x"]
                client.stop()


async def test_http_token_protects_everything_but_health():
    with trio.fail_after(20):
        async with open_proxy(http_token=TOKEN) as proxy:
            assert (await http_get(proxy.http_url + "/health")).status == 200
            assert (await http_get(proxy.http_url + "/")).status == 200  # the console page asks itself
            for path in ("/metrics", "/metrics-windows", "/cluster", "/cluster/config", "/sd"):
                r = await http_get(proxy.http_url + path)
                assert r.status == 401, path
                assert "--http-token-file" in r.json()["error"]
                assert r.headers["www-authenticate"].startswith("Bearer")
                r = await http_get(proxy.http_url + path, headers={"Authorization": "Bearer nope"})
                assert r.status == 401
                r = await http_get(proxy.http_url + path, headers={"Authorization": f"Bearer {TOKEN}"})
                assert r.status == 200, (path, r.text)
