import purerpc
from fodcproxy._proto.banyandb.fodc.v1 import rpc_pb2 as banyandb_dot_fodc_dot_v1_dot_rpc__pb2
from fodcproxy._proto.banyandb.common.v1 import common_pb2 as banyandb_dot_common_dot_v1_dot_common__pb2
from fodcproxy._proto.banyandb.database.v1 import database_pb2 as banyandb_dot_database_dot_v1_dot_database__pb2
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as banyandb_dot_database_dot_v1_dot_rpc__pb2
import google.protobuf.struct_pb2 as google_dot_protobuf_dot_struct__pb2
import google.protobuf.timestamp_pb2 as google_dot_protobuf_dot_timestamp__pb2


class FODCServiceServicer(purerpc.Servicer):
    async def RegisterAgent(self, input_messages):
        raise NotImplementedError()

    async def StreamMetrics(self, input_messages):
        raise NotImplementedError()

    async def StreamClusterTopology(self, input_messages):
        raise NotImplementedError()

    async def StreamLifecycle(self, input_messages):
        raise NotImplementedError()

    async def StreamCrashDiagnostics(self, input_messages):
        raise NotImplementedError()

    async def StreamPressureProfiles(self, input_messages):
        raise NotImplementedError()

    async def StreamSchemaRegistry(self, input_messages):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.fodc.v1.FODCService"
        )
        service_obj.add_method(
            "RegisterAgent",
            self.RegisterAgent,
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.RegisterAgentRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.RegisterAgentResponse,
            )
        )
        service_obj.add_method(
            "StreamMetrics",
            self.StreamMetrics,
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamMetricsRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamMetricsResponse,
            )
        )
        service_obj.add_method(
            "StreamClusterTopology",
            self.StreamClusterTopology,
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamClusterTopologyRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamClusterTopologyResponse,
            )
        )
        service_obj.add_method(
            "StreamLifecycle",
            self.StreamLifecycle,
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamLifecycleRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamLifecycleResponse,
            )
        )
        service_obj.add_method(
            "StreamCrashDiagnostics",
            self.StreamCrashDiagnostics,
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamCrashDiagnosticsRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamCrashDiagnosticsResponse,
            )
        )
        service_obj.add_method(
            "StreamPressureProfiles",
            self.StreamPressureProfiles,
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamPressureProfilesRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamPressureProfilesResponse,
            )
        )
        service_obj.add_method(
            "StreamSchemaRegistry",
            self.StreamSchemaRegistry,
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamSchemaRegistryRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamSchemaRegistryResponse,
            )
        )
        return service_obj


class FODCServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.fodc.v1.FODCService",
            channel
        )
        self.RegisterAgent = self._client.get_method_stub(
            "RegisterAgent",
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.RegisterAgentRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.RegisterAgentResponse,
            )
        )
        self.StreamMetrics = self._client.get_method_stub(
            "StreamMetrics",
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamMetricsRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamMetricsResponse,
            )
        )
        self.StreamClusterTopology = self._client.get_method_stub(
            "StreamClusterTopology",
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamClusterTopologyRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamClusterTopologyResponse,
            )
        )
        self.StreamLifecycle = self._client.get_method_stub(
            "StreamLifecycle",
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamLifecycleRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamLifecycleResponse,
            )
        )
        self.StreamCrashDiagnostics = self._client.get_method_stub(
            "StreamCrashDiagnostics",
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamCrashDiagnosticsRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamCrashDiagnosticsResponse,
            )
        )
        self.StreamPressureProfiles = self._client.get_method_stub(
            "StreamPressureProfiles",
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamPressureProfilesRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamPressureProfilesResponse,
            )
        )
        self.StreamSchemaRegistry = self._client.get_method_stub(
            "StreamSchemaRegistry",
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamSchemaRegistryRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.StreamSchemaRegistryResponse,
            )
        )


class GroupLifecycleServiceServicer(purerpc.Servicer):
    async def InspectAll(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.fodc.v1.GroupLifecycleService"
        )
        service_obj.add_method(
            "InspectAll",
            self.InspectAll,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.InspectAllRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.InspectAllResponse,
            )
        )
        return service_obj


class GroupLifecycleServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.fodc.v1.GroupLifecycleService",
            channel
        )
        self.InspectAll = self._client.get_method_stub(
            "InspectAll",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.InspectAllRequest,
                banyandb_dot_fodc_dot_v1_dot_rpc__pb2.InspectAllResponse,
            )
        )