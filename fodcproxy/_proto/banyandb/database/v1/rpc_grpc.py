import purerpc
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as banyandb_dot_database_dot_v1_dot_rpc__pb2
from fodcproxy._proto.banyandb.common.v1 import common_pb2 as banyandb_dot_common_dot_v1_dot_common__pb2
from fodcproxy._proto.banyandb.database.v1 import database_pb2 as banyandb_dot_database_dot_v1_dot_database__pb2
from fodcproxy._proto.banyandb.database.v1 import schema_pb2 as banyandb_dot_database_dot_v1_dot_schema__pb2
import google.protobuf.any_pb2 as google_dot_protobuf_dot_any__pb2


class GroupRegistryServiceServicer(purerpc.Servicer):
    async def List(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.database.v1.GroupRegistryService"
        )
        service_obj.add_method(
            "List",
            self.List,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.GroupRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.GroupRegistryServiceListResponse,
            )
        )
        return service_obj


class GroupRegistryServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.database.v1.GroupRegistryService",
            channel
        )
        self.List = self._client.get_method_stub(
            "List",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.GroupRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.GroupRegistryServiceListResponse,
            )
        )


class IndexRuleRegistryServiceServicer(purerpc.Servicer):
    async def List(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.database.v1.IndexRuleRegistryService"
        )
        service_obj.add_method(
            "List",
            self.List,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.IndexRuleRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.IndexRuleRegistryServiceListResponse,
            )
        )
        return service_obj


class IndexRuleRegistryServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.database.v1.IndexRuleRegistryService",
            channel
        )
        self.List = self._client.get_method_stub(
            "List",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.IndexRuleRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.IndexRuleRegistryServiceListResponse,
            )
        )


class IndexRuleBindingRegistryServiceServicer(purerpc.Servicer):
    async def List(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.database.v1.IndexRuleBindingRegistryService"
        )
        service_obj.add_method(
            "List",
            self.List,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.IndexRuleBindingRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.IndexRuleBindingRegistryServiceListResponse,
            )
        )
        return service_obj


class IndexRuleBindingRegistryServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.database.v1.IndexRuleBindingRegistryService",
            channel
        )
        self.List = self._client.get_method_stub(
            "List",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.IndexRuleBindingRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.IndexRuleBindingRegistryServiceListResponse,
            )
        )


class StreamRegistryServiceServicer(purerpc.Servicer):
    async def List(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.database.v1.StreamRegistryService"
        )
        service_obj.add_method(
            "List",
            self.List,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.StreamRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.StreamRegistryServiceListResponse,
            )
        )
        return service_obj


class StreamRegistryServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.database.v1.StreamRegistryService",
            channel
        )
        self.List = self._client.get_method_stub(
            "List",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.StreamRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.StreamRegistryServiceListResponse,
            )
        )


class MeasureRegistryServiceServicer(purerpc.Servicer):
    async def List(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.database.v1.MeasureRegistryService"
        )
        service_obj.add_method(
            "List",
            self.List,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.MeasureRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.MeasureRegistryServiceListResponse,
            )
        )
        return service_obj


class MeasureRegistryServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.database.v1.MeasureRegistryService",
            channel
        )
        self.List = self._client.get_method_stub(
            "List",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.MeasureRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.MeasureRegistryServiceListResponse,
            )
        )


class TraceRegistryServiceServicer(purerpc.Servicer):
    async def List(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.database.v1.TraceRegistryService"
        )
        service_obj.add_method(
            "List",
            self.List,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.TraceRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.TraceRegistryServiceListResponse,
            )
        )
        return service_obj


class TraceRegistryServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.database.v1.TraceRegistryService",
            channel
        )
        self.List = self._client.get_method_stub(
            "List",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.TraceRegistryServiceListRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.TraceRegistryServiceListResponse,
            )
        )


class NodeSchemaStateServiceServicer(purerpc.Servicer):
    async def StreamGroupSchemaState(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "banyandb.database.v1.NodeSchemaStateService"
        )
        service_obj.add_method(
            "StreamGroupSchemaState",
            self.StreamGroupSchemaState,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_STREAM,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.StreamGroupSchemaStateRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.StreamGroupSchemaStateResponse,
            )
        )
        return service_obj


class NodeSchemaStateServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "banyandb.database.v1.NodeSchemaStateService",
            channel
        )
        self.StreamGroupSchemaState = self._client.get_method_stub(
            "StreamGroupSchemaState",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_STREAM,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.StreamGroupSchemaStateRequest,
                banyandb_dot_database_dot_v1_dot_rpc__pb2.StreamGroupSchemaStateResponse,
            )
        )