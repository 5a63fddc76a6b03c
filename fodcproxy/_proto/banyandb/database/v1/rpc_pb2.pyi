from fodcproxy._proto.banyandb.database.v1 import database_pb2 as _database_pb2
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
