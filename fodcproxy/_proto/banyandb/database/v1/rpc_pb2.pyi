from fodcproxy._proto.banyandb.common.v1 import common_pb2 as _common_pb2
from fodcproxy._proto.banyandb.database.v1 import database_pb2 as _database_pb2
from fodcproxy._proto.banyandb.database.v1 import schema_pb2 as _schema_pb2
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataInfo(_message.Message):
    __slots__ = ("node", "segment_info", "data_size_bytes")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INFO_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    node: _database_pb2.Node
    segment_info: _containers.RepeatedCompositeFieldContainer[SegmentInfo]
    data_size_bytes: int
    def __init__(self, node: _Optional[_Union[_database_pb2.Node, _Mapping]] = ..., segment_info: _Optional[_Iterable[_Union[SegmentInfo, _Mapping]]] = ..., data_size_bytes: _Optional[int] = ...) -> None: ...

class SegmentInfo(_message.Message):
    __slots__ = ("segment_id", "time_range_start", "time_range_end", "shard_info", "series_index_info")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_START_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_END_FIELD_NUMBER: _ClassVar[int]
    SHARD_INFO_FIELD_NUMBER: _ClassVar[int]
    SERIES_INDEX_INFO_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    time_range_start: str
    time_range_end: str
    shard_info: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    series_index_info: SeriesIndexInfo
    def __init__(self, segment_id: _Optional[str] = ..., time_range_start: _Optional[str] = ..., time_range_end: _Optional[str] = ..., shard_info: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., series_index_info: _Optional[_Union[SeriesIndexInfo, _Mapping]] = ...) -> None: ...

class SeriesIndexInfo(_message.Message):
    __slots__ = ("data_count", "data_size_bytes")
    DATA_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    data_count: int
    data_size_bytes: int
    def __init__(self, data_count: _Optional[int] = ..., data_size_bytes: _Optional[int] = ...) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("shard_id", "data_count", "data_size_bytes", "part_count", "inverted_index_info", "sidx_info", "file_part_count")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PART_COUNT_FIELD_NUMBER: _ClassVar[int]
    INVERTED_INDEX_INFO_FIELD_NUMBER: _ClassVar[int]
    SIDX_INFO_FIELD_NUMBER: _ClassVar[int]
    FILE_PART_COUNT_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    data_count: int
    data_size_bytes: int
    part_count: int
    inverted_index_info: InvertedIndexInfo
    sidx_info: SIDXInfo
    file_part_count: int
    def __init__(self, shard_id: _Optional[int] = ..., data_count: _Optional[int] = ..., data_size_bytes: _Optional[int] = ..., part_count: _Optional[int] = ..., inverted_index_info: _Optional[_Union[InvertedIndexInfo, _Mapping]] = ..., sidx_info: _Optional[_Union[SIDXInfo, _Mapping]] = ..., file_part_count: _Optional[int] = ...) -> None: ...

class InvertedIndexInfo(_message.Message):
    __slots__ = ("data_count", "data_size_bytes")
    DATA_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    data_count: int
    data_size_bytes: int
    def __init__(self, data_count: _Optional[int] = ..., data_size_bytes: _Optional[int] = ...) -> None: ...

class SIDXInfo(_message.Message):
    __slots__ = ("data_count", "data_size_bytes", "part_count")
    DATA_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PART_COUNT_FIELD_NUMBER: _ClassVar[int]
    data_count: int
    data_size_bytes: int
    part_count: int
    def __init__(self, data_count: _Optional[int] = ..., data_size_bytes: _Optional[int] = ..., part_count: _Optional[int] = ...) -> None: ...

class GroupRegistryServiceListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupRegistryServiceListResponse(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: _containers.RepeatedCompositeFieldContainer[_common_pb2.Group]
    def __init__(self, group: _Optional[_Iterable[_Union[_common_pb2.Group, _Mapping]]] = ...) -> None: ...

class IndexRuleRegistryServiceListRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class IndexRuleRegistryServiceListResponse(_message.Message):
    __slots__ = ("index_rule",)
    INDEX_RULE_FIELD_NUMBER: _ClassVar[int]
    index_rule: _containers.RepeatedCompositeFieldContainer[_schema_pb2.IndexRule]
    def __init__(self, index_rule: _Optional[_Iterable[_Union[_schema_pb2.IndexRule, _Mapping]]] = ...) -> None: ...

class IndexRuleBindingRegistryServiceListRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class IndexRuleBindingRegistryServiceListResponse(_message.Message):
    __slots__ = ("index_rule_binding",)
    INDEX_RULE_BINDING_FIELD_NUMBER: _ClassVar[int]
    index_rule_binding: _containers.RepeatedCompositeFieldContainer[_schema_pb2.IndexRuleBinding]
    def __init__(self, index_rule_binding: _Optional[_Iterable[_Union[_schema_pb2.IndexRuleBinding, _Mapping]]] = ...) -> None: ...

class StreamRegistryServiceListRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class StreamRegistryServiceListResponse(_message.Message):
    __slots__ = ("stream",)
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: _containers.RepeatedCompositeFieldContainer[_schema_pb2.Stream]
    def __init__(self, stream: _Optional[_Iterable[_Union[_schema_pb2.Stream, _Mapping]]] = ...) -> None: ...

class MeasureRegistryServiceListRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class MeasureRegistryServiceListResponse(_message.Message):
    __slots__ = ("measure",)
    MEASURE_FIELD_NUMBER: _ClassVar[int]
    measure: _containers.RepeatedCompositeFieldContainer[_schema_pb2.Measure]
    def __init__(self, measure: _Optional[_Iterable[_Union[_schema_pb2.Measure, _Mapping]]] = ...) -> None: ...

class TraceRegistryServiceListRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class TraceRegistryServiceListResponse(_message.Message):
    __slots__ = ("trace",)
    TRACE_FIELD_NUMBER: _ClassVar[int]
    trace: _containers.RepeatedCompositeFieldContainer[_schema_pb2.Trace]
    def __init__(self, trace: _Optional[_Iterable[_Union[_schema_pb2.Trace, _Mapping]]] = ...) -> None: ...

class StreamGroupSchemaStateRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class StreamGroupSchemaStateResponse(_message.Message):
    __slots__ = ("object", "trailer", "rule_table")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    RULE_TABLE_FIELD_NUMBER: _ClassVar[int]
    object: ObjectSnapshot
    trailer: SchemaSnapshotTrailer
    rule_table: SchemaRuleTable
    def __init__(self, object: _Optional[_Union[ObjectSnapshot, _Mapping]] = ..., trailer: _Optional[_Union[SchemaSnapshotTrailer, _Mapping]] = ..., rule_table: _Optional[_Union[SchemaRuleTable, _Mapping]] = ...) -> None: ...

class SchemaRuleTable(_message.Message):
    __slots__ = ("group", "rules")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    group: str
    rules: _containers.RepeatedCompositeFieldContainer[_schema_pb2.IndexRule]
    def __init__(self, group: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[_schema_pb2.IndexRule, _Mapping]]] = ...) -> None: ...

class SchemaBody(_message.Message):
    __slots__ = ("payload", "bound_index_rule_refs")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    BOUND_INDEX_RULE_REFS_FIELD_NUMBER: _ClassVar[int]
    payload: _any_pb2.Any
    bound_index_rule_refs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, payload: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., bound_index_rule_refs: _Optional[_Iterable[int]] = ...) -> None: ...

class ObjectSnapshot(_message.Message):
    __slots__ = ("group", "kind", "name", "cache", "runtime")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    group: str
    kind: str
    name: str
    cache: SchemaBody
    runtime: SchemaBody
    def __init__(self, group: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., cache: _Optional[_Union[SchemaBody, _Mapping]] = ..., runtime: _Optional[_Union[SchemaBody, _Mapping]] = ...) -> None: ...

class SchemaSnapshotTrailer(_message.Message):
    __slots__ = ("group", "node", "object_count", "errors")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    group: str
    node: str
    object_count: int
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., node: _Optional[str] = ..., object_count: _Optional[int] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...
