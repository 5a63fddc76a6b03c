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

class TagType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TAG_TYPE_UNSPECIFIED: _ClassVar[TagType]
    TAG_TYPE_STRING: _ClassVar[TagType]
    TAG_TYPE_INT: _ClassVar[TagType]
    TAG_TYPE_STRING_ARRAY: _ClassVar[TagType]
    TAG_TYPE_INT_ARRAY: _ClassVar[TagType]
    TAG_TYPE_DATA_BINARY: _ClassVar[TagType]
    TAG_TYPE_TIMESTAMP: _ClassVar[TagType]

class FieldType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_TYPE_UNSPECIFIED: _ClassVar[FieldType]
    FIELD_TYPE_STRING: _ClassVar[FieldType]
    FIELD_TYPE_INT: _ClassVar[FieldType]
    FIELD_TYPE_DATA_BINARY: _ClassVar[FieldType]
    FIELD_TYPE_FLOAT: _ClassVar[FieldType]

class EncodingMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_METHOD_UNSPECIFIED: _ClassVar[EncodingMethod]
    ENCODING_METHOD_GORILLA: _ClassVar[EncodingMethod]

class CompressionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_METHOD_UNSPECIFIED: _ClassVar[CompressionMethod]
    COMPRESSION_METHOD_ZSTD: _ClassVar[CompressionMethod]
TAG_TYPE_UNSPECIFIED: TagType
TAG_TYPE_STRING: TagType
TAG_TYPE_INT: TagType
TAG_TYPE_STRING_ARRAY: TagType
TAG_TYPE_INT_ARRAY: TagType
TAG_TYPE_DATA_BINARY: TagType
TAG_TYPE_TIMESTAMP: TagType
FIELD_TYPE_UNSPECIFIED: FieldType
FIELD_TYPE_STRING: FieldType
FIELD_TYPE_INT: FieldType
FIELD_TYPE_DATA_BINARY: FieldType
FIELD_TYPE_FLOAT: FieldType
ENCODING_METHOD_UNSPECIFIED: EncodingMethod
ENCODING_METHOD_GORILLA: EncodingMethod
COMPRESSION_METHOD_UNSPECIFIED: CompressionMethod
COMPRESSION_METHOD_ZSTD: CompressionMethod

class TagFamilySpec(_message.Message):
    __slots__ = ("name", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tags: _containers.RepeatedCompositeFieldContainer[TagSpec]
    def __init__(self, name: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[TagSpec, _Mapping]]] = ...) -> None: ...

class TagSpec(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: TagType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[TagType, str]] = ...) -> None: ...

class Stream(_message.Message):
    __slots__ = ("metadata", "tag_families", "entity", "updated_at", "created_at")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAG_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    metadata: _common_pb2.Metadata
    tag_families: _containers.RepeatedCompositeFieldContainer[TagFamilySpec]
    entity: Entity
    updated_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, metadata: _Optional[_Union[_common_pb2.Metadata, _Mapping]] = ..., tag_families: _Optional[_Iterable[_Union[TagFamilySpec, _Mapping]]] = ..., entity: _Optional[_Union[Entity, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("tag_names",)
    TAG_NAMES_FIELD_NUMBER: _ClassVar[int]
    tag_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tag_names: _Optional[_Iterable[str]] = ...) -> None: ...

class ShardingKey(_message.Message):
    __slots__ = ("tag_names",)
    TAG_NAMES_FIELD_NUMBER: _ClassVar[int]
    tag_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tag_names: _Optional[_Iterable[str]] = ...) -> None: ...

class FieldSpec(_message.Message):
    __slots__ = ("name", "field_type", "encoding_method", "compression_method")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIELD_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_METHOD_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_METHOD_FIELD_NUMBER: _ClassVar[int]
    name: str
    field_type: FieldType
    encoding_method: EncodingMethod
    compression_method: CompressionMethod
    def __init__(self, name: _Optional[str] = ..., field_type: _Optional[_Union[FieldType, str]] = ..., encoding_method: _Optional[_Union[EncodingMethod, str]] = ..., compression_method: _Optional[_Union[CompressionMethod, str]] = ...) -> None: ...

class Measure(_message.Message):
    __slots__ = ("metadata", "tag_families", "fields", "entity", "interval", "updated_at", "index_mode", "sharding_key", "created_at")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAG_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    INDEX_MODE_FIELD_NUMBER: _ClassVar[int]
    SHARDING_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    metadata: _common_pb2.Metadata
    tag_families: _containers.RepeatedCompositeFieldContainer[TagFamilySpec]
    fields: _containers.RepeatedCompositeFieldContainer[FieldSpec]
    entity: Entity
    interval: str
    updated_at: _timestamp_pb2.Timestamp
    index_mode: bool
    sharding_key: ShardingKey
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, metadata: _Optional[_Union[_common_pb2.Metadata, _Mapping]] = ..., tag_families: _Optional[_Iterable[_Union[TagFamilySpec, _Mapping]]] = ..., fields: _Optional[_Iterable[_Union[FieldSpec, _Mapping]]] = ..., entity: _Optional[_Union[Entity, _Mapping]] = ..., interval: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., index_mode: _Optional[bool] = ..., sharding_key: _Optional[_Union[ShardingKey, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IndexRule(_message.Message):
    __slots__ = ("metadata", "tags", "type", "updated_at", "analyzer", "no_sort", "created_at")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[IndexRule.Type]
        TYPE_INVERTED: _ClassVar[IndexRule.Type]
        TYPE_SKIPPING: _ClassVar[IndexRule.Type]
        TYPE_TREE: _ClassVar[IndexRule.Type]
    TYPE_UNSPECIFIED: IndexRule.Type
    TYPE_INVERTED: IndexRule.Type
    TYPE_SKIPPING: IndexRule.Type
    TYPE_TREE: IndexRule.Type
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ANALYZER_FIELD_NUMBER: _ClassVar[int]
    NO_SORT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    metadata: _common_pb2.Metadata
    tags: _containers.RepeatedScalarFieldContainer[str]
    type: IndexRule.Type
    updated_at: _timestamp_pb2.Timestamp
    analyzer: str
    no_sort: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, metadata: _Optional[_Union[_common_pb2.Metadata, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., type: _Optional[_Union[IndexRule.Type, str]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., analyzer: _Optional[str] = ..., no_sort: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Subject(_message.Message):
    __slots__ = ("catalog", "name")
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    catalog: _common_pb2.Catalog
    name: str
    def __init__(self, catalog: _Optional[_Union[_common_pb2.Catalog, str]] = ..., name: _Optional[str] = ...) -> None: ...

class IndexRuleBinding(_message.Message):
    __slots__ = ("metadata", "rules", "subject", "begin_at", "expire_at", "updated_at", "created_at")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BEGIN_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    metadata: _common_pb2.Metadata
    rules: _containers.RepeatedScalarFieldContainer[str]
    subject: Subject
    begin_at: _timestamp_pb2.Timestamp
    expire_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, metadata: _Optional[_Union[_common_pb2.Metadata, _Mapping]] = ..., rules: _Optional[_Iterable[str]] = ..., subject: _Optional[_Union[Subject, _Mapping]] = ..., begin_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TraceTagSpec(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: TagType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[TagType, str]] = ...) -> None: ...

class Trace(_message.Message):
    __slots__ = ("metadata", "tags", "trace_id_tag_name", "timestamp_tag_name", "updated_at", "span_id_tag_name", "created_at")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_TAG_NAME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_TAG_NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_TAG_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    metadata: _common_pb2.Metadata
    tags: _containers.RepeatedCompositeFieldContainer[TraceTagSpec]
    trace_id_tag_name: str
    timestamp_tag_name: str
    updated_at: _timestamp_pb2.Timestamp
    span_id_tag_name: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, metadata: _Optional[_Union[_common_pb2.Metadata, _Mapping]] = ..., tags: _Optional[_Iterable[_Union[TraceTagSpec, _Mapping]]] = ..., trace_id_tag_name: _Optional[str] = ..., timestamp_tag_name: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., span_id_tag_name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
