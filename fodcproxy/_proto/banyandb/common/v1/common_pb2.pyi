from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
