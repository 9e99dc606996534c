"""What a process may do on the cluster, asked of the broker before it starts (docs/security.md).

Kafka tells a client which operations its principal holds on a topic (Metadata v8 with
``include_topic_authorized_operations``) and on a consumer group (DescribeGroups v3 with
``include_authorized_operations``), without trying them. aiokafka 0.14 builds Metadata only up
to v5 and parses DescribeGroups v3 with the v2 schema, so the two requests are declared here with
the schemas of Kafka's protocol (clients/src/main/resources/common/message/).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Bytes, Int16, Int32, Schema, String

__all__ = ["ALL", "Operation", "group_operations", "missing", "topic_operations"]


class Operation(IntEnum):
    """Kafka's AclOperation codes; an authorized-operations field is a bit set of them."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8

    def label(self) -> str:
        return self.name.capitalize()


ALL = frozenset(Operation)
"""What a broker without an authorizer allows (it reports no operations: -2147483648)."""


def _granted(bits: int) -> frozenset[Operation]:
    if bits < 0:  # the broker has no authorizer, or did not say: nothing to check
        return ALL
    granted = {op for op in Operation if bits & (1 << op)}
    if Operation.READ in granted or Operation.WRITE in granted:
        granted.add(Operation.DESCRIBE)  # implied, as the broker's authorizer implies it
    return frozenset(granted)


_STR = String("utf-8")


class _MetadataResponseV8(Response):  # type: ignore[misc]  # aiokafka's protocol classes are untyped
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", Array(("node_id", Int32), ("host", _STR), ("port", Int32), ("rack", _STR))),
        ("cluster_id", _STR),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("name", _STR),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", Array(Int32)),
                        ("isr_nodes", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("topic_authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class _MetadataRequestV8(RequestStruct):  # type: ignore[misc]  # aiokafka's protocol classes are untyped
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = _MetadataResponseV8
    SCHEMA = Schema(
        ("topics", Array(_STR)),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class _Metadata(Request[_MetadataRequestV8]):  # type: ignore[misc]  # aiokafka's protocol classes are untyped
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequestV8]) -> _MetadataRequestV8:
        return request_struct_class(self._topics, False, False, True)


class _DescribeGroupsResponseV3(Response):  # type: ignore[misc]  # aiokafka's protocol classes are untyped
    API_KEY = 15
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "groups",
            Array(
                ("error_code", Int16),
                ("group", _STR),
                ("state", _STR),
                ("protocol_type", _STR),
                ("protocol", _STR),
                (
                    "members",
                    Array(
                        ("member_id", _STR),
                        ("client_id", _STR),
                        ("client_host", _STR),
                        ("member_metadata", Bytes),
                        ("member_assignment", Bytes),
                    ),
                ),
                ("authorized_operations", Int32),
            ),
        ),
    )


class _DescribeGroupsRequestV3(RequestStruct):  # type: ignore[misc]  # aiokafka's protocol classes are untyped
    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = _DescribeGroupsResponseV3
    SCHEMA = Schema(("groups", Array(_STR)), ("include_authorized_operations", Boolean))


class _DescribeGroups(Request[_DescribeGroupsRequestV3]):  # type: ignore[misc]  # aiokafka's protocol classes are untyped
    API_KEY = 15

    def __init__(self, group: str) -> None:
        self._group = group

    def build(self, request_struct_class: type[_DescribeGroupsRequestV3]) -> _DescribeGroupsRequestV3:
        return request_struct_class([self._group], True)


RETRIABLE = frozenset({14, 15, 16})  # coordinator loading, not available, moved
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
UNKNOWN_TOPIC = 3


async def topic_operations(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> dict[str, frozenset[Operation] | None]:
    """Per topic: the operations this principal holds, or None if the topic does not exist. A
    topic the principal may not even describe looks the same to it as a missing one would to
    others; it comes back as an empty set (Kafka answers TOPIC_AUTHORIZATION_FAILED)."""
    response: Any = await admin._send_request(_Metadata(topics))
    out: dict[str, frozenset[Operation] | None] = {}
    for error, name, _internal, _partitions, bits in response.topics:
        if error == UNKNOWN_TOPIC:
            out[name] = None
        elif error == TOPIC_AUTHORIZATION_FAILED:
            out[name] = frozenset()
        elif error:
            raise for_code(error)(f"metadata of {name}")
        else:
            out[name] = _granted(bits)
    return out


async def group_operations(admin: AIOKafkaAdminClient, group: str) -> frozenset[Operation]:
    """The operations this principal holds on a consumer group (empty: not even Describe)."""
    for attempt in range(40):  # a new cluster creates __consumer_offsets at the first ask
        try:
            return await _group_operations(admin, group)
        except Exception as exc:
            if getattr(exc, "errno", None) not in RETRIABLE or attempt == 39:
                raise
            await asyncio.sleep(0.25)
    raise AssertionError  # unreachable


async def _group_operations(admin: AIOKafkaAdminClient, group: str) -> frozenset[Operation]:
    try:
        coordinator = await admin.find_coordinator(group)
    except Exception as exc:
        if getattr(exc, "errno", None) == GROUP_AUTHORIZATION_FAILED:
            return frozenset()
        raise
    response: Any = await admin._send_request_to_node(coordinator, _DescribeGroups(group))
    error, _group, _state, _ptype, _protocol, _members, bits = response.groups[0]
    if error == GROUP_AUTHORIZATION_FAILED:
        return frozenset()
    if error:
        raise for_code(error)(f"describe group {group}")
    return _granted(bits)


def missing(
    needs: Mapping[str, frozenset[Operation]], has: Mapping[str, frozenset[Operation] | None]
) -> list[tuple[str, Operation]]:
    """(resource, operation) pairs in ``needs`` that ``has`` lacks (missing resources excluded)."""
    out = []
    for name, ops in needs.items():
        held = has.get(name)
        if held is None:
            continue
        out += [(name, op) for op in sorted(ops) if op not in held]
    return out
