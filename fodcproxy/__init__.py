"""fodcproxy: the FODC Proxy of Apache SkyWalking BanyanDB, on Trio.

Agents dial the proxy and hold two bi-directional gRPC streams open; the proxy keeps the registry
of agents and fans metric requests out to them on demand. It stores no metrics.
"""

__version__ = "0.1.0"
