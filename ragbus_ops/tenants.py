"""`ragbus tenants add`: let an outside producer publish a tenant's documents onto the bus.

It creates the tenant's upload topic, its principal (SASL SCRAM-SHA-512) and the one ACL it
gets: WRITE on that topic. The password is read from `--password-file`, or made and written
there (owner-only) when the file does not exist; it is never printed. With `--cert-dir`, it
also issues a client certificate for the local broker's TLS listener (`CN=tenant-<tenant>`,
signed by the CA `make up`'s broker made), for clients whose SCRAM Kafka 4 refuses (kcat).
"""

import argparse
import asyncio
import os
import secrets
import shutil
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from contracts.topics import DEFAULT_PARTITIONS, tenant_topic
from deploy.kafka.access import add_tenant, admin_client, librdkafka_config
from deploy.kafka.launcher import LocalKafka, bootstrap_topics, wait_signed_in
from ragbus.settings import KafkaSettings
from ragbus_ops.bus import operator_kafka


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = commands.add_parser("tenants", help="let a tenant's producers publish onto the bus")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="the tenant's upload topic, principal and ACL")
    add.add_argument("tenant", help="the tenant id (lowercase letters, digits, '-', '_')")
    add.add_argument(
        "--password-file",
        type=Path,
        required=True,
        help="the principal's password; made and written here when the file does not exist",
    )
    add.add_argument(
        "--cert-dir",
        type=Path,
        default=None,
        help="also write a client certificate of the local broker's CA here (ca.pem, "
        "tenant-<tenant>.pem, tenant-<tenant>.key)",
    )
    add.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the local broker's data dir, for --cert-dir (default: RAGBUS_KAFKA_DATA_DIR "
        "or var/kafka)",
    )
    add.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    add.add_argument("--bootstrap", default=None, help="default: RAGBUS_KAFKA_BOOTSTRAP")


def _password(path: Path) -> str:
    if path.exists():
        password = path.read_text().strip()
        if not password:
            raise ValueError(f"{path} is empty")
        return password
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def run(args: argparse.Namespace, console: Console) -> int:
    """`ragbus tenants add`: 0 when the tenant may publish, 1 with the reason when not."""
    try:
        spec = tenant_topic(args.tenant, args.partitions)
        kafka = operator_kafka(args.bootstrap)
        password = _password(args.password_file)
        created = asyncio.run(bootstrap_topics(kafka, [spec]))
        admin = admin_client(librdkafka_config(kafka, _ca_file()))
        principal = add_tenant(admin, args.tenant, password)
        signed_in = kafka | {"sasl_plain_username": principal, "sasl_plain_password": password}
        asyncio.run(wait_signed_in(signed_in))
        if args.cert_dir is not None:
            _issue(args.data_dir, principal, args.cert_dir)
    except Exception as exc:  # a refused name, an unreachable broker, a refused request
        console.print(f"[red]tenants add failed:[/] {escape(str(exc))}")
        return 1
    console.print(
        f"tenant {escape(args.tenant)}: principal [bold]{principal}[/] (SCRAM-SHA-512, password "
        f"in {escape(str(args.password_file))}) may write topic [bold]{spec.name}[/]"
        + (" (created)" if created else "")
    )
    if args.cert_dir is not None:
        console.print(f"client certificate for the TLS listener in {escape(str(args.cert_dir))}")
    return 0


def _issue(data_dir: Path | None, principal: str, cert_dir: Path) -> None:
    """A client certificate of the local broker's CA for `principal`, and the CA, in
    `cert_dir`."""
    broker = LocalKafka(data_dir, stop_on_exit=False)
    ca = broker.data_dir / "tls" / "ca.key"
    if not ca.is_file():
        raise ValueError(
            f"no local broker CA at {ca}: --cert-dir issues certificates for the broker "
            "`make up` starts; issue them from your own PKI for another cluster"
        )
    authority = broker.authority()
    cert_dir.mkdir(parents=True, exist_ok=True)
    authority.issue(principal, cert_dir / f"{principal}.pem", cert_dir / f"{principal}.key")
    shutil.copyfile(authority.cert_file, cert_dir / "ca.pem")


def _ca_file() -> str | None:
    ca_file = KafkaSettings().kafka_ca_file
    return str(ca_file) if ca_file else None
