import datetime

from fodcproxy._proto.banyandb.common.v1 import common_pb2 as _common_pb2
from fodcproxy._proto.banyandb.database.v1 import database_pb2 as _database_pb2
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as _rpc_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetricType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_TYPE_UNSPECIFIED: _ClassVar[MetricType]
    METRIC_TYPE_GAUGE: _ClassVar[MetricType]
    METRIC_TYPE_COUNTER: _ClassVar[MetricType]
    METRIC_TYPE_HISTOGRAM: _ClassVar[MetricType]
    METRIC_TYPE_SUMMARY: _ClassVar[MetricType]
    METRIC_TYPE_UNTYPED: _ClassVar[MetricType]

class SchemaIssueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEMA_ISSUE_TYPE_UNSPECIFIED: _ClassVar[SchemaIssueType]
    SCHEMA_ISSUE_TYPE_MISSING_IN_CACHE: _ClassVar[SchemaIssueType]
    SCHEMA_ISSUE_TYPE_ORPHAN: _ClassVar[SchemaIssueType]
    SCHEMA_ISSUE_TYPE_CACHE_STALE: _ClassVar[SchemaIssueType]
    SCHEMA_ISSUE_TYPE_RUNTIME_NOT_APPLIED: _ClassVar[SchemaIssueType]

class ConsistencyStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_STATUS_UNSPECIFIED: _ClassVar[ConsistencyStatus]
    CONSISTENCY_STATUS_CONSISTENT: _ClassVar[ConsistencyStatus]
    CONSISTENCY_STATUS_INCONSISTENT: _ClassVar[ConsistencyStatus]
    CONSISTENCY_STATUS_UNKNOWN: _ClassVar[ConsistencyStatus]
METRIC_TYPE_UNSPECIFIED: MetricType
METRIC_TYPE_GAUGE: MetricType
METRIC_TYPE_COUNTER: MetricType
METRIC_TYPE_HISTOGRAM: MetricType
METRIC_TYPE_SUMMARY: MetricType
METRIC_TYPE_UNTYPED: MetricType
SCHEMA_ISSUE_TYPE_UNSPECIFIED: SchemaIssueType
SCHEMA_ISSUE_TYPE_MISSING_IN_CACHE: SchemaIssueType
SCHEMA_ISSUE_TYPE_ORPHAN: SchemaIssueType
SCHEMA_ISSUE_TYPE_CACHE_STALE: SchemaIssueType
SCHEMA_ISSUE_TYPE_RUNTIME_NOT_APPLIED: SchemaIssueType
CONSISTENCY_STATUS_UNSPECIFIED: ConsistencyStatus
CONSISTENCY_STATUS_CONSISTENT: ConsistencyStatus
CONSISTENCY_STATUS_INCONSISTENT: ConsistencyStatus
CONSISTENCY_STATUS_UNKNOWN: ConsistencyStatus

class Address(_message.Message):
    __slots__ = ("ip", "port")
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ip: str
    port: int
    def __init__(self, ip: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class NodeConfig(_message.Message):
    __slots__ = ("startup_params", "runtime_config", "collected_at")
    class StartupParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STARTUP_PARAMS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_CONFIG_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    startup_params: _containers.ScalarMap[str, str]
    runtime_config: _struct_pb2.Struct
    collected_at: _timestamp_pb2.Timestamp
    def __init__(self, startup_params: _Optional[_Mapping[str, str]] = ..., runtime_config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterAgentRequest(_message.Message):
    __slots__ = ("node_role", "labels", "primary_address", "pod_name", "container_names", "node_config", "secondary_addresses")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecondaryAddressesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Address
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Address, _Mapping]] = ...) -> None: ...
    NODE_ROLE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAMES_FIELD_NUMBER: _ClassVar[int]
    NODE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    node_role: str
    labels: _containers.ScalarMap[str, str]
    primary_address: Address
    pod_name: str
    container_names: _containers.RepeatedScalarFieldContainer[str]
    node_config: NodeConfig
    secondary_addresses: _containers.MessageMap[str, Address]
    def __init__(self, node_role: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., primary_address: _Optional[_Union[Address, _Mapping]] = ..., pod_name: _Optional[str] = ..., container_names: _Optional[_Iterable[str]] = ..., node_config: _Optional[_Union[NodeConfig, _Mapping]] = ..., secondary_addresses: _Optional[_Mapping[str, Address]] = ...) -> None: ...

class RegisterAgentResponse(_message.Message):
    __slots__ = ("success", "message", "heartbeat_interval_seconds", "agent_id")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    heartbeat_interval_seconds: int
    agent_id: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., heartbeat_interval_seconds: _Optional[int] = ..., agent_id: _Optional[str] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("name", "labels", "value", "description", "timestamp", "type")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    value: float
    description: str
    timestamp: _timestamp_pb2.Timestamp
    type: MetricType
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., value: _Optional[float] = ..., description: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[_Union[MetricType, str]] = ...) -> None: ...

class StreamMetricsRequest(_message.Message):
    __slots__ = ("metrics", "timestamp", "request_id", "more")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    timestamp: _timestamp_pb2.Timestamp
    request_id: int
    more: bool
    def __init__(self, metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class StreamMetricsResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "request_id")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    request_id: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[int] = ...) -> None: ...

class Call(_message.Message):
    __slots__ = ("id", "target", "source")
    ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    target: str
    source: str
    def __init__(self, id: _Optional[str] = ..., target: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class Topology(_message.Message):
    __slots__ = ("nodes", "calls")
    NODES_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_database_pb2.Node]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_database_pb2.Node, _Mapping]]] = ..., calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class StreamClusterTopologyRequest(_message.Message):
    __slots__ = ("timestamp", "topology")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    topology: Topology
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., topology: _Optional[_Union[Topology, _Mapping]] = ...) -> None: ...

class StreamClusterTopologyResponse(_message.Message):
    __slots__ = ("request_topology",)
    REQUEST_TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    request_topology: bool
    def __init__(self, request_topology: _Optional[bool] = ...) -> None: ...

class StreamLifecycleRequest(_message.Message):
    __slots__ = ("timestamp", "pod_name", "lifecycle_data")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_DATA_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    pod_name: str
    lifecycle_data: LifecycleData
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pod_name: _Optional[str] = ..., lifecycle_data: _Optional[_Union[LifecycleData, _Mapping]] = ...) -> None: ...

class StreamLifecycleResponse(_message.Message):
    __slots__ = ("request_lifecycle",)
    REQUEST_LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    request_lifecycle: bool
    def __init__(self, request_lifecycle: _Optional[bool] = ...) -> None: ...

class StreamSchemaRegistryRequest(_message.Message):
    __slots__ = ("group", "done")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    group: SchemaRegistryGroup
    done: bool
    def __init__(self, group: _Optional[_Union[SchemaRegistryGroup, _Mapping]] = ..., done: _Optional[bool] = ...) -> None: ...

class StreamSchemaRegistryResponse(_message.Message):
    __slots__ = ("request_registry",)
    REQUEST_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    request_registry: bool
    def __init__(self, request_registry: _Optional[bool] = ...) -> None: ...

class SchemaRegistryGroup(_message.Message):
    __slots__ = ("group", "objects", "error")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    group: str
    objects: _containers.RepeatedCompositeFieldContainer[SchemaObjectFingerprint]
    error: str
    def __init__(self, group: _Optional[str] = ..., objects: _Optional[_Iterable[_Union[SchemaObjectFingerprint, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class SchemaObjectFingerprint(_message.Message):
    __slots__ = ("kind", "name", "fingerprint")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    fingerprint: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., fingerprint: _Optional[int] = ...) -> None: ...

class LifecycleData(_message.Message):
    __slots__ = ("reports", "groups")
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[LifecycleReport]
    groups: _containers.RepeatedCompositeFieldContainer[GroupLifecycleInfo]
    def __init__(self, reports: _Optional[_Iterable[_Union[LifecycleReport, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[GroupLifecycleInfo, _Mapping]]] = ...) -> None: ...

class GroupLifecycleInfo(_message.Message):
    __slots__ = ("name", "catalog", "resource_opts", "data_info", "errors", "schema_consistency")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_OPTS_FIELD_NUMBER: _ClassVar[int]
    DATA_INFO_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    name: str
    catalog: str
    resource_opts: _common_pb2.ResourceOpts
    data_info: _containers.RepeatedCompositeFieldContainer[_rpc_pb2.DataInfo]
    errors: _containers.RepeatedScalarFieldContainer[str]
    schema_consistency: SchemaConsistency
    def __init__(self, name: _Optional[str] = ..., catalog: _Optional[str] = ..., resource_opts: _Optional[_Union[_common_pb2.ResourceOpts, _Mapping]] = ..., data_info: _Optional[_Iterable[_Union[_rpc_pb2.DataInfo, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ..., schema_consistency: _Optional[_Union[SchemaConsistency, _Mapping]] = ...) -> None: ...

class SchemaConsistency(_message.Message):
    __slots__ = ("status", "objects", "issues")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    status: ConsistencyStatus
    objects: _containers.RepeatedCompositeFieldContainer[ObjectConsistency]
    issues: _containers.RepeatedCompositeFieldContainer[SchemaIssue]
    def __init__(self, status: _Optional[_Union[ConsistencyStatus, str]] = ..., objects: _Optional[_Iterable[_Union[ObjectConsistency, _Mapping]]] = ..., issues: _Optional[_Iterable[_Union[SchemaIssue, _Mapping]]] = ...) -> None: ...

class ObjectConsistency(_message.Message):
    __slots__ = ("kind", "name", "registry_fingerprint", "node_fingerprints")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    NODE_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    registry_fingerprint: int
    node_fingerprints: _containers.RepeatedCompositeFieldContainer[NodeFingerprint]
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., registry_fingerprint: _Optional[int] = ..., node_fingerprints: _Optional[_Iterable[_Union[NodeFingerprint, _Mapping]]] = ...) -> None: ...

class NodeFingerprint(_message.Message):
    __slots__ = ("node", "cache_fingerprint", "runtime_fingerprint")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CACHE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    node: str
    cache_fingerprint: int
    runtime_fingerprint: int
    def __init__(self, node: _Optional[str] = ..., cache_fingerprint: _Optional[int] = ..., runtime_fingerprint: _Optional[int] = ...) -> None: ...

class SchemaIssue(_message.Message):
    __slots__ = ("kind", "name", "node", "type")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    node: str
    type: SchemaIssueType
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., node: _Optional[str] = ..., type: _Optional[_Union[SchemaIssueType, str]] = ...) -> None: ...

class LifecycleReport(_message.Message):
    __slots__ = ("filename", "report_json")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    filename: str
    report_json: str
    def __init__(self, filename: _Optional[str] = ..., report_json: _Optional[str] = ...) -> None: ...

class CrashBreadcrumb(_message.Message):
    __slots__ = ("time", "stage", "component", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    stage: str
    component: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stage: _Optional[str] = ..., component: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CrashPanicRecord(_message.Message):
    __slots__ = ("occurred_at", "component", "panic_value", "recovered", "goroutine_stack", "breadcrumbs", "process_metadata")
    class ProcessMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    PANIC_VALUE_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_FIELD_NUMBER: _ClassVar[int]
    GOROUTINE_STACK_FIELD_NUMBER: _ClassVar[int]
    BREADCRUMBS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_METADATA_FIELD_NUMBER: _ClassVar[int]
    occurred_at: _timestamp_pb2.Timestamp
    component: str
    panic_value: str
    recovered: bool
    goroutine_stack: str
    breadcrumbs: _containers.RepeatedCompositeFieldContainer[CrashBreadcrumb]
    process_metadata: _containers.ScalarMap[str, str]
    def __init__(self, occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., component: _Optional[str] = ..., panic_value: _Optional[str] = ..., recovered: _Optional[bool] = ..., goroutine_stack: _Optional[str] = ..., breadcrumbs: _Optional[_Iterable[_Union[CrashBreadcrumb, _Mapping]]] = ..., process_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StreamCrashDiagnosticsRequest(_message.Message):
    __slots__ = ("fetched_at", "source_endpoint", "artifact_dir", "panic_record", "files")
    FETCHED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_DIR_FIELD_NUMBER: _ClassVar[int]
    PANIC_RECORD_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    fetched_at: _timestamp_pb2.Timestamp
    source_endpoint: str
    artifact_dir: str
    panic_record: CrashPanicRecord
    files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fetched_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_endpoint: _Optional[str] = ..., artifact_dir: _Optional[str] = ..., panic_record: _Optional[_Union[CrashPanicRecord, _Mapping]] = ..., files: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamCrashDiagnosticsResponse(_message.Message):
    __slots__ = ("request_diagnostics",)
    REQUEST_DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    request_diagnostics: bool
    def __init__(self, request_diagnostics: _Optional[bool] = ...) -> None: ...

class PressureProfileInfo(_message.Message):
    __slots__ = ("type", "filename", "filepath", "format", "size_bytes")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FILEPATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    type: str
    filename: str
    filepath: str
    format: str
    size_bytes: int
    def __init__(self, type: _Optional[str] = ..., filename: _Optional[str] = ..., filepath: _Optional[str] = ..., format: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class PressureProfileRecord(_message.Message):
    __slots__ = ("profile_id", "captured_at", "source_endpoint", "rss_bytes", "cgroup_limit_bytes", "trigger_percent", "threshold_bytes", "profiles")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CGROUP_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PERCENT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    captured_at: _timestamp_pb2.Timestamp
    source_endpoint: str
    rss_bytes: int
    cgroup_limit_bytes: int
    trigger_percent: int
    threshold_bytes: int
    profiles: _containers.RepeatedCompositeFieldContainer[PressureProfileInfo]
    def __init__(self, profile_id: _Optional[str] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_endpoint: _Optional[str] = ..., rss_bytes: _Optional[int] = ..., cgroup_limit_bytes: _Optional[int] = ..., trigger_percent: _Optional[int] = ..., threshold_bytes: _Optional[int] = ..., profiles: _Optional[_Iterable[_Union[PressureProfileInfo, _Mapping]]] = ...) -> None: ...

class PressureProfileChunk(_message.Message):
    __slots__ = ("request_id", "profile_id", "type", "data", "last", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    profile_id: str
    type: str
    data: bytes
    last: bool
    error: str
    def __init__(self, request_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., type: _Optional[str] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class StreamPressureProfilesRequest(_message.Message):
    __slots__ = ("record", "list_complete", "chunk")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    LIST_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    record: PressureProfileRecord
    list_complete: ListComplete
    chunk: PressureProfileChunk
    def __init__(self, record: _Optional[_Union[PressureProfileRecord, _Mapping]] = ..., list_complete: _Optional[_Union[ListComplete, _Mapping]] = ..., chunk: _Optional[_Union[PressureProfileChunk, _Mapping]] = ...) -> None: ...

class ListComplete(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class FetchPressureProfile(_message.Message):
    __slots__ = ("request_id", "profile_id", "type", "filepath")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FILEPATH_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    profile_id: str
    type: str
    filepath: str
    def __init__(self, request_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., type: _Optional[str] = ..., filepath: _Optional[str] = ...) -> None: ...

class StreamPressureProfilesResponse(_message.Message):
    __slots__ = ("list_profiles", "fetch_profile")
    LIST_PROFILES_FIELD_NUMBER: _ClassVar[int]
    FETCH_PROFILE_FIELD_NUMBER: _ClassVar[int]
    list_profiles: ListProfiles
    fetch_profile: FetchPressureProfile
    def __init__(self, list_profiles: _Optional[_Union[ListProfiles, _Mapping]] = ..., fetch_profile: _Optional[_Union[FetchPressureProfile, _Mapping]] = ...) -> None: ...

class ListProfiles(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class InspectAllRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InspectAllResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[GroupLifecycleInfo]
    def __init__(self, groups: _Optional[_Iterable[_Union[GroupLifecycleInfo, _Mapping]]] = ...) -> None: ...
