import purerpc
from fodcproxy._proto.banyandb.fodc.v1 import rpc_pb2 as banyandb_dot_fodc_dot_v1_dot_rpc__pb2
import google.protobuf.struct_pb2 as google_dot_protobuf_dot_struct__pb2
import google.protobuf.timestamp_pb2 as google_dot_protobuf_dot_timestamp__pb2


class FODCServiceServicer(purerpc.Servicer):
    async def RegisterAgent(self, input_messages):
        raise NotImplementedError()

    async def StreamMetrics(self, input_messages):
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