import datetime

from fodcproxy._proto.banyandb.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_META: _ClassVar[Role]
    ROLE_DATA: _ClassVar[Role]
    ROLE_LIAISON: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_META: Role
ROLE_DATA: Role
ROLE_LIAISON: Role

class Node(_message.Message):
    __slots__ = ("metadata", "roles", "grpc_address", "http_address", "created_at", "labels", "property_repair_gossip_grpc_address", "property_schema_grpc_address", "property_schema_gossip_grpc_address")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_REPAIR_GOSSIP_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_SCHEMA_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_SCHEMA_GOSSIP_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    metadata: _common_pb2.Metadata
    roles: _containers.RepeatedScalarFieldContainer[Role]
    grpc_address: str
    http_address: str
    created_at: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    property_repair_gossip_grpc_address: str
    property_schema_grpc_address: str
    property_schema_gossip_grpc_address: str
    def __init__(self, metadata: _Optional[_Union[_common_pb2.Metadata, _Mapping]] = ..., roles: _Optional[_Iterable[_Union[Role, str]]] = ..., grpc_address: _Optional[str] = ..., http_address: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., property_repair_gossip_grpc_address: _Optional[str] = ..., property_schema_grpc_address: _Optional[str] = ..., property_schema_gossip_grpc_address: _Optional[str] = ...) -> None: ...
