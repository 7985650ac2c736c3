"""How an operator's command signs in to the bus."""

from typing import Any

from deploy.kafka.launcher import LocalKafka
from ragbus.settings import KafkaSettings


def operator_kafka(bootstrap: str | None = None) -> dict[str, Any]:
    """An aiokafka client's options: RAGBUS_KAFKA_* when a username is set; else, on the
    machine `make up` runs on, `ragbus-admin` of its broker (from the broker's access file);
    else no sign-in."""
    settings = KafkaSettings()
    where = bootstrap or settings.kafka_bootstrap
    if not settings.kafka_username:
        local = LocalKafka(stop_on_exit=False)
        if local.access_file.is_file():
            return local.client_options() | {"bootstrap_servers": where}
    return settings.model_copy(update={"kafka_bootstrap": where}).kafka_options()
