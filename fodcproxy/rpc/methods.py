"""The FODC service's method paths: what the proxy's handlers serve and the agent's client calls.

A module of its own so that the agent side can name the methods without importing the proxy's
handlers (`fodcproxy.rpc.service` imports the hub).
"""

SERVICE = "banyandb.fodc.v1.FODCService"
REGISTER = f"/{SERVICE}/RegisterAgent"
STREAM_METRICS = f"/{SERVICE}/StreamMetrics"
STREAM_CLUSTER_TOPOLOGY = f"/{SERVICE}/StreamClusterTopology"
STREAM_LIFECYCLE = f"/{SERVICE}/StreamLifecycle"
STREAM_SCHEMA_REGISTRY = f"/{SERVICE}/StreamSchemaRegistry"
STREAM_CRASH_DIAGNOSTICS = f"/{SERVICE}/StreamCrashDiagnostics"
STREAM_PRESSURE_PROFILES = f"/{SERVICE}/StreamPressureProfiles"
