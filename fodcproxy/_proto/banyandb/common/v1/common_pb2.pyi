import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Catalog(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATALOG_UNSPECIFIED: _ClassVar[Catalog]
    CATALOG_STREAM: _ClassVar[Catalog]
    CATALOG_MEASURE: _ClassVar[Catalog]
    CATALOG_PROPERTY: _ClassVar[Catalog]
    CATALOG_TRACE: _ClassVar[Catalog]

class PipelineEvent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIPELINE_EVENT_UNSPECIFIED: _ClassVar[PipelineEvent]
    PIPELINE_EVENT_MERGE: _ClassVar[PipelineEvent]
    PIPELINE_EVENT_FINALIZE: _ClassVar[PipelineEvent]
CATALOG_UNSPECIFIED: Catalog
CATALOG_STREAM: Catalog
CATALOG_MEASURE: Catalog
CATALOG_PROPERTY: Catalog
CATALOG_TRACE: Catalog
PIPELINE_EVENT_UNSPECIFIED: PipelineEvent
PIPELINE_EVENT_MERGE: PipelineEvent
PIPELINE_EVENT_FINALIZE: PipelineEvent

class Metadata(_message.Message):
    __slots__ = ("group", "name", "id", "create_revision", "mod_revision")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    group: str
    name: str
    id: int
    create_revision: int
    mod_revision: int
    def __init__(self, group: _Optional[str] = ..., name: _Optional[str] = ..., id: _Optional[int] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ...) -> None: ...

class IntervalRule(_message.Message):
    __slots__ = ("unit", "num")
    class Unit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNIT_UNSPECIFIED: _ClassVar[IntervalRule.Unit]
        UNIT_HOUR: _ClassVar[IntervalRule.Unit]
        UNIT_DAY: _ClassVar[IntervalRule.Unit]
    UNIT_UNSPECIFIED: IntervalRule.Unit
    UNIT_HOUR: IntervalRule.Unit
    UNIT_DAY: IntervalRule.Unit
    UNIT_FIELD_NUMBER: _ClassVar[int]
    NUM_FIELD_NUMBER: _ClassVar[int]
    unit: IntervalRule.Unit
    num: int
    def __init__(self, unit: _Optional[_Union[IntervalRule.Unit, str]] = ..., num: _Optional[int] = ...) -> None: ...

class LifecycleStage(_message.Message):
    __slots__ = ("name", "shard_num", "segment_interval", "ttl", "node_selector", "close", "replicas")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARD_NUM_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    shard_num: int
    segment_interval: IntervalRule
    ttl: IntervalRule
    node_selector: str
    close: bool
    replicas: int
    def __init__(self, name: _Optional[str] = ..., shard_num: _Optional[int] = ..., segment_interval: _Optional[_Union[IntervalRule, _Mapping]] = ..., ttl: _Optional[_Union[IntervalRule, _Mapping]] = ..., node_selector: _Optional[str] = ..., close: _Optional[bool] = ..., replicas: _Optional[int] = ...) -> None: ...

class ResourceOpts(_message.Message):
    __slots__ = ("shard_num", "segment_interval", "ttl", "stages", "default_stages", "replicas")
    SHARD_NUM_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STAGES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    shard_num: int
    segment_interval: IntervalRule
    ttl: IntervalRule
    stages: _containers.RepeatedCompositeFieldContainer[LifecycleStage]
    default_stages: _containers.RepeatedScalarFieldContainer[str]
    replicas: int
    def __init__(self, shard_num: _Optional[int] = ..., segment_interval: _Optional[_Union[IntervalRule, _Mapping]] = ..., ttl: _Optional[_Union[IntervalRule, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[LifecycleStage, _Mapping]]] = ..., default_stages: _Optional[_Iterable[str]] = ..., replicas: _Optional[int] = ...) -> None: ...

class SamplerPlugin(_message.Message):
    __slots__ = ("path", "symbol", "abi_version", "config")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ABI_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    path: str
    symbol: str
    abi_version: int
    config: _struct_pb2.Struct
    def __init__(self, path: _Optional[str] = ..., symbol: _Optional[str] = ..., abi_version: _Optional[int] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Plugin(_message.Message):
    __slots__ = ("name", "sampler")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    name: str
    sampler: SamplerPlugin
    def __init__(self, name: _Optional[str] = ..., sampler: _Optional[_Union[SamplerPlugin, _Mapping]] = ...) -> None: ...

class StageRule(_message.Message):
    __slots__ = ("stage", "plugins")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    plugins: _containers.RepeatedCompositeFieldContainer[Plugin]
    def __init__(self, stage: _Optional[str] = ..., plugins: _Optional[_Iterable[_Union[Plugin, _Mapping]]] = ...) -> None: ...

class TracePipelineConfig(_message.Message):
    __slots__ = ("enabled", "plugins", "merge_grace", "finalize_grace", "stages", "schema_names", "schema_name_regex", "enabled_events")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    MERGE_GRACE_FIELD_NUMBER: _ClassVar[int]
    FINALIZE_GRACE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_NAMES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_NAME_REGEX_FIELD_NUMBER: _ClassVar[int]
    ENABLED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    plugins: _containers.RepeatedCompositeFieldContainer[Plugin]
    merge_grace: _duration_pb2.Duration
    finalize_grace: _duration_pb2.Duration
    stages: _containers.RepeatedCompositeFieldContainer[StageRule]
    schema_names: _containers.RepeatedScalarFieldContainer[str]
    schema_name_regex: str
    enabled_events: _containers.RepeatedScalarFieldContainer[PipelineEvent]
    def __init__(self, enabled: _Optional[bool] = ..., plugins: _Optional[_Iterable[_Union[Plugin, _Mapping]]] = ..., merge_grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., finalize_grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[StageRule, _Mapping]]] = ..., schema_names: _Optional[_Iterable[str]] = ..., schema_name_regex: _Optional[str] = ..., enabled_events: _Optional[_Iterable[_Union[PipelineEvent, str]]] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("metadata", "catalog", "resource_opts", "updated_at", "created_at", "pipeline")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_OPTS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    catalog: Catalog
    resource_opts: ResourceOpts
    updated_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    pipeline: TracePipelineConfig
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., catalog: _Optional[_Union[Catalog, str]] = ..., resource_opts: _Optional[_Union[ResourceOpts, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pipeline: _Optional[_Union[TracePipelineConfig, _Mapping]] = ...) -> None: ...
