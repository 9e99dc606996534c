"""``tradepulse acls`` and ``tradepulse topics``: what an administrator grants and creates for each
TradePulse process on a secured cluster (docs/security.md), printed as the commands of Kafka's own
tools. The same definitions drive the start-up permission checks and the security tests."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import yaml

from services.contract.topics import case_topic, indicator_topic
from services.registry import DOMAINS, SOURCES
from services.runtime.kafka_admin import READ, WRITE, Access, TopicSpec
from services.runtime.permissions import Operation
from services.runtime.settings import Settings
from services.runtime.worker import worker_access, worker_topics

__all__ = ["access_of", "acl_arguments", "print_acls", "print_topics", "processes", "strimzi_acls"]


def processes() -> tuple[str, ...]:
    """Who gets a principal: each service's workers, ``release``, ``history``, the HTTP gateway, and
    producers of input events (``publish``, ``simulate``, the source systems). Read from the
    registry when asked, never frozen at import."""
    return (*DOMAINS, "release", "history", "gateway", "producer")


def access_of(process: str, settings: Settings) -> Access:
    """What ``process`` does on the cluster."""
    if process in DOMAINS:
        return worker_access(settings, DOMAINS[process])
    if process == "release":
        from services.release.service import ReleaseSettings, load, release_access

        release = ReleaseSettings.model_validate(settings.model_dump())
        return release_access(settings, [p.destination for p in load(release)])
    if process == "history":
        topics = [settings.topic(f(name)) for f in (indicator_topic, case_topic) for name in DOMAINS]
        return Access(dict.fromkeys(topics, READ), group=settings.topic("tradepulse-history"))
    if process in ("producer", "gateway"):
        return Access(
            {settings.topic(d.topic): WRITE for d in SOURCES.values()}, principal=settings.kafka.principal()
        )
    msg = f"unknown process {process!r}; choose from {', '.join(processes())}"
    raise ValueError(msg)


def acl_arguments(access: Access, principal: str) -> list[list[str]]:
    """``kafka-acls`` arguments granting exactly ``access`` to ``principal`` (one call per
    operation, every topic of it at once). Create only when the process creates its topics
    (TRADEPULSE_CREATE_TOPICS, on by default)."""
    by_op: dict[Operation, list[str]] = defaultdict(list)
    for topic, ops in sorted(access.topics.items()):
        for op in sorted(ops):
            by_op[op].append(topic)
    if access.create:
        # CreateTopics is authorised by Create on the cluster or on the topic: grant the topics only
        by_op[Operation.CREATE] = sorted(access.topics)
    calls = []
    for op, topics in sorted(by_op.items()):
        resources = [arg for t in topics for arg in ("--topic", t)]
        calls.append(["--add", "--allow-principal", principal, "--operation", op.label(), *resources])
    if access.group is not None:
        group = ["--group", access.group]
        calls.append(["--add", "--allow-principal", principal, "--operation", "Read", *group])
    return calls


def strimzi_acls(process: str, settings: Settings) -> list[dict[str, Any]]:
    """Strimzi ``KafkaUser`` ACL rules: one per topic and operation, and the group's Read."""
    access = access_of(process, settings)
    rules = [
        {"resource": {"type": "topic", "name": topic, "patternType": "literal"}, "operations": [op.label()]}
        for topic, ops in sorted(access.topics.items())
        for op in sorted(ops)
    ]
    if access.group is not None:
        rules.append(
            {
                "resource": {"type": "group", "name": access.group, "patternType": "literal"},
                "operations": [Operation.READ.label()],
            }
        )
    return rules


def print_acls(process: str, principal: str, settings: Settings, fmt: str = "kafka-acls") -> int:
    """The grants of ``process``: ``kafka-acls.sh`` commands, or (``strimzi``) a Strimzi
    ``KafkaUser`` for the principal's name with exactly the same ACLs (what the Helm chart renders)."""
    if fmt == "strimzi":
        user = {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "KafkaUser",
            "metadata": {
                "name": principal.removeprefix("User:"),
                "labels": {"strimzi.io/cluster": "<cluster>"},
            },
            "spec": {
                "authentication": {"type": "scram-sha-512"},
                "authorization": {"type": "simple", "acls": strimzi_acls(process, settings)},
            },
        }
        print(yaml.safe_dump(user, sort_keys=False), end="")
        return 0
    for args in acl_arguments(access_of(process, settings), principal):
        print(f"kafka-acls.sh --bootstrap-server {settings.kafka_bootstrap_servers} {' '.join(args)}")
    return 0


def create_arguments(spec: TopicSpec, replication: int) -> list[str]:
    """``kafka-topics`` arguments creating ``spec`` as the worker would."""
    args = ["--create", "--topic", spec.name, "--partitions", str(spec.partitions)]
    args += ["--replication-factor", str(replication)]
    if spec.compacted:
        args += ["--config", "cleanup.policy=compact"]
    if spec.retention_ms is not None:
        args += ["--config", f"retention.ms={spec.retention_ms}"]
    return args


def print_topics(service: str, settings: Settings) -> int:
    for spec in worker_topics(settings, DOMAINS[service]):
        args = create_arguments(spec, settings.topic_replication)
        print(f"kafka-topics.sh --bootstrap-server {settings.kafka_bootstrap_servers} {' '.join(args)}")
    return 0


def acl_table(settings: Settings) -> str:
    """The ACL table of docs/security.md and docs/configuration.md, derived from :func:`access_of`
    (a unit test keeps the documents equal to it). Services share one row, with ``<service>`` for the name."""
    rows = ["| process | Read on topics | Write on topics | Read on group |", "|---|---|---|---|"]
    rows.append(_row("`tradepulse worker <service>`", _service_template(settings)))
    for name, domain in DOMAINS.items():
        if domain.derived:
            rows.append(_row(f"`tradepulse worker {name}`", access_of(name, settings)))
    rows.append(_row("`tradepulse worker release`", access_of("release", settings)))
    readers = "`tradepulse history` (every `<service>`)"
    rows.append(_row(readers, access_of("history", settings), group_services=True))
    rows.append(
        _row("`tradepulse gateway` (every `<service>`)", access_of("gateway", settings), group_services=True)
    )
    producers = "producers of `<service>` (`publish`, `simulate`, source systems)"
    rows.append(_row(producers, access_of("producer", settings), group_services=True))
    return "\n".join(rows)


def release_topic_specs(settings: Settings) -> list[TopicSpec]:
    from services.release.service import ReleaseSettings, load, release_topics

    release = ReleaseSettings.model_validate(settings.model_dump())
    return release_topics(settings, [p.destination for p in load(release)])


def _service_template(settings: Settings) -> Access:
    """The access of the services fed by producers, each one's name replaced by ``<service>``; all
    must agree."""
    templates = set()
    for name in SOURCES:
        access = access_of(name, settings)
        topics = tuple(sorted((t.replace(name, "<service>"), ops) for t, ops in access.topics.items()))
        group = None if access.group is None else access.group.replace(name, "<service>")
        templates.add((topics, group))
    if len(templates) != 1:
        msg = f"the services' ACLs differ in shape: {templates}"
        raise AssertionError(msg)
    ((topics, group),) = templates
    return Access(dict(topics), group=group)


def _row(process: str, access: Access, *, group_services: bool = False) -> str:
    def names(op: Operation) -> str:
        chosen = sorted(t for t, ops in access.topics.items() if op in ops)
        if group_services:  # one entry per topic family instead of four per family
            chosen = sorted({_family(t) for t in chosen})
        return ", ".join(f"`{t}`" for t in chosen) or "none"

    group = f"`{access.group}`" if access.group else "none"
    return f"| {process} | {names(Operation.READ)} | {names(Operation.WRITE)} | {group} |"


def _family(topic: str) -> str:
    for name in DOMAINS:
        topic = re.sub(rf"(^|[.-]){name}([.-]|$)", r"\1<service>\2", topic)
    return topic


SETUP_HEADER = """#!/bin/sh
# Generated by `tradepulse generate` from the code's ACLs and topics (docs/security.md); do not
# edit: `scripts/test` fails when it differs. Runs once in docker-compose.secure.yml, inside
# the broker's network namespace, through its loopback PLAINTEXT listener (a super user reachable
# from no other container): SCRAM users from the secrets files, topics, then ACLs.
set -eu
BOOTSTRAP=127.0.0.1:9092
cd /opt/kafka/bin

# user NAME: its SCRAM credential from /run/secrets/kafka_NAME_password. kafka-configs takes SCRAM
# credentials only as --add-config (not from a file): the password is on this one-shot container's
# command line, in its own PID namespace.
user() {
  ./kafka-configs.sh --bootstrap-server $BOOTSTRAP --alter --entity-type users --entity-name "$1" \\
    --add-config "SCRAM-SHA-512=[password=$(cat "/run/secrets/kafka_$1_password")]"
}
topic() { ./kafka-topics.sh --bootstrap-server $BOOTSTRAP --if-not-exists "$@"; }
allow() { ./kafka-acls.sh --bootstrap-server $BOOTSTRAP "$@"; }
"""


def setup_script(settings: Settings) -> str:
    """The compose set-up script: one SCRAM user per process, every topic once (a derived
    service's inputs are other services' case topics), every process's ACLs."""
    lines = [SETUP_HEADER]
    lines += [f"user {process}" for process in processes()]
    specs: dict[str, TopicSpec] = {}
    for domain in DOMAINS.values():
        for spec in worker_topics(settings, domain):
            specs.setdefault(spec.name, spec)  # as the service that writes it creates it
    for spec in release_topic_specs(settings):
        specs.setdefault(spec.name, spec)
    lines += [
        f"topic {' '.join(create_arguments(spec, settings.topic_replication))}" for spec in specs.values()
    ]
    for process in processes():
        lines += [
            f"allow {' '.join(args)}"
            for args in acl_arguments(access_of(process, settings), f"User:{process}")
        ]
    return "\n".join(lines) + "\n"
