"""Who may do what on the bus: the access control lists the launcher sets up and
`deploy/k8s` declares for Strimzi.

Every service signs in as a principal of its own (`ragbus-<service>`, SASL SCRAM-SHA-512) that
may read and write only the topics and consumer groups the service uses. An outside producer
signs in as its tenant (`tenant-<tenant>`) and may only write that tenant's upload topic, so the
tenant of what it publishes is the topic it could write, never a field it wrote. `ragbus-admin`
(the operators' tools and the tests) and the broker's own principal are super users; no other
principal may do anything (`allow.everyone.if.no.acl.found=false`).

The ACLs are written with confluent-kafka's admin client: aiokafka has no ACL or SCRAM API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from contracts.topics import (
    CHUNKS_READY,
    CONSUMER_GROUPS,
    DOCUMENT_STATUS,
    DOCUMENT_UPLOADED,
    GATEWAY_GROUP,
    INDEX_GENERATIONS,
    INDEX_PROMOTED,
    QUERY_CONVERSATIONS,
    TENANT_TOPIC_PREFIX,
    TENANT_UPLOADS_DLQ,
    VECTORS_READY,
    dlq,
    tenant_uploads,
)

ADMIN = "ragbus-admin"
# The broker's own principal (PLAIN, declared in its config): it talks to its controller, and
# the launcher signs in as it to create the SCRAM principals.
BROKER = "broker"
SCRAM_ITERATIONS = 4096
TIMEOUT_S = 30.0

Operation = Literal["READ", "WRITE", "DESCRIBE"]


@dataclass(frozen=True)
class Rule:
    """Operations a principal may do on a topic or a consumer group (all names starting with
    `name` when `prefixed`). READ and WRITE imply DESCRIBE."""

    resource: Literal["topic", "group"]
    name: str
    operations: tuple[Operation, ...]
    prefixed: bool = False


def _topic(name: str, *operations: Operation, prefixed: bool = False) -> Rule:
    return Rule("topic", name, operations, prefixed)


def _group(name: str, *operations: Operation, prefixed: bool = False) -> Rule:
    return Rule("group", name, operations, prefixed)


def service_principal(*services: str) -> str:
    """The principal of a process serving `services` (most serve one)."""
    return "ragbus-" + "-".join(services)


def tenant_principal(tenant_id: str) -> str:
    tenant_uploads(tenant_id)  # refuses a tenant id no topic can carry
    return f"tenant-{tenant_id}"


# What each service does on the bus: the topics its subscribers read and its publishers write
# (tests/deploy/kafka/test_access.py compares this with the services' brokers), the consumer
# groups it joins, and what the lag it reads needs.
SERVICE_RULES: dict[str, tuple[Rule, ...]] = {
    "ingest": (
        _topic(DOCUMENT_UPLOADED, "READ", "WRITE"),
        _topic(DOCUMENT_STATUS, "READ", "WRITE"),
        _topic(INDEX_GENERATIONS, "READ"),
        _topic(TENANT_TOPIC_PREFIX, "READ", prefixed=True),
        _topic(TENANT_UPLOADS_DLQ, "WRITE"),
        _group(GATEWAY_GROUP, "READ"),
    ),
    "chunker": (
        _topic(DOCUMENT_UPLOADED, "READ"),
        _topic(INDEX_GENERATIONS, "READ"),
        _topic(CHUNKS_READY, "WRITE"),
        _topic(DOCUMENT_STATUS, "WRITE"),
        _topic(dlq(DOCUMENT_UPLOADED), "WRITE"),
        # Generation 1's group and every rebuild's (`GenerationPlan.consumer_group`).
        _group(CONSUMER_GROUPS["chunker"], "READ", prefixed=True),
    ),
    "embedder": (
        _topic(CHUNKS_READY, "READ"),
        _topic(VECTORS_READY, "WRITE"),
        _topic(DOCUMENT_STATUS, "WRITE"),
        _topic(dlq(CHUNKS_READY), "WRITE"),
        _group(CONSUMER_GROUPS["embedder"], "READ"),
    ),
    "indexer": (
        _topic(VECTORS_READY, "READ"),
        _topic(INDEX_PROMOTED, "WRITE"),
        _topic(INDEX_GENERATIONS, "WRITE"),
        _topic(DOCUMENT_STATUS, "WRITE"),
        _topic(dlq(VECTORS_READY), "WRITE"),
        _group(CONSUMER_GROUPS["indexer"], "READ"),
        # A rebuild's gate reads the lag of the stages before the indexer.
        _topic(DOCUMENT_UPLOADED, "DESCRIBE"),
        _topic(CHUNKS_READY, "DESCRIBE"),
        _group(CONSUMER_GROUPS["chunker"], "DESCRIBE", prefixed=True),
        _group(CONSUMER_GROUPS["embedder"], "DESCRIBE"),
    ),
    "query": (
        _topic(INDEX_PROMOTED, "READ"),
        _topic(QUERY_CONVERSATIONS, "READ", "WRITE"),
    ),
    "status": (
        _topic(DOCUMENT_STATUS, "READ", "WRITE"),
        _topic(dlq(DOCUMENT_STATUS), "WRITE"),
    ),
}


# Served in one process by default (embedded storage admits one opener): one principal for both.
SERVED_TOGETHER = (("indexer", "query"),)


def service_principals() -> dict[str, tuple[Rule, ...]]:
    """Every service's principal and rules, and those of the services served together."""
    singles = {service_principal(name): rules for name, rules in SERVICE_RULES.items()}
    together = {
        service_principal(*names): tuple(rule for name in names for rule in SERVICE_RULES[name])
        for names in SERVED_TOGETHER
    }
    return singles | together


def tenant_rules(tenant_id: str) -> tuple[Rule, ...]:
    """An outside producer of `tenant_id` may write its upload topic and nothing else."""
    return (_topic(tenant_uploads(tenant_id), "WRITE"),)


def bindings(principal: str, rules: Iterable[Rule]) -> list[AclBinding]:
    """The ACL bindings that allow `principal` the operations of `rules`, from any host."""
    return [
        AclBinding(
            ResourceType.TOPIC if rule.resource == "topic" else ResourceType.GROUP,
            rule.name,
            ResourcePatternType.PREFIXED if rule.prefixed else ResourcePatternType.LITERAL,
            f"User:{principal}",
            "*",
            AclOperation[operation],
            AclPermissionType.ALLOW,
        )
        for rule in rules
        for operation in rule.operations
    ]


def admin_client(config: Mapping[str, Any]) -> AdminClient:
    """A confluent-kafka admin client from librdkafka settings (`librdkafka_config`)."""
    return AdminClient(dict(config))


def librdkafka_config(options: Mapping[str, Any], ca_file: str | None = None) -> dict[str, Any]:
    """librdkafka's settings for the sign-in of aiokafka client `options`
    (`KafkaSettings.kafka_options`)."""
    config: dict[str, Any] = {
        "bootstrap.servers": options["bootstrap_servers"],
        "security.protocol": options.get("security_protocol", "PLAINTEXT"),
    }
    if "sasl_mechanism" in options:
        config |= {
            "sasl.mechanism": options["sasl_mechanism"],
            "sasl.username": options["sasl_plain_username"],
            "sasl.password": options["sasl_plain_password"],
        }
    if ca_file:
        config["ssl.ca.location"] = ca_file
    return config


def set_passwords(admin: AdminClient, passwords: Mapping[str, str]) -> None:
    """Create each principal's SCRAM-SHA-512 credential, or replace it."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    futures = admin.alter_user_scram_credentials(
        [
            UserScramCredentialUpsertion(user, info, password.encode())
            for user, password in passwords.items()
        ],
        request_timeout=TIMEOUT_S,
    )
    for future in futures.values():
        future.result(timeout=TIMEOUT_S)


def allow(admin: AdminClient, granted: Mapping[str, Iterable[Rule]]) -> None:
    """Add the ACLs of each principal's rules (adding one that exists changes nothing)."""
    acls = [
        binding for principal, rules in granted.items() for binding in bindings(principal, rules)
    ]
    if not acls:
        return
    for future in admin.create_acls(acls, request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)


def add_tenant(admin: AdminClient, tenant_id: str, password: str) -> str:
    """Give `tenant_id` its principal (or a new password) and the right to write its upload
    topic; return the principal."""
    principal = tenant_principal(tenant_id)
    set_passwords(admin, {principal: password})
    allow(admin, {principal: tenant_rules(tenant_id)})
    return principal
