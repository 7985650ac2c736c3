"""How the tests sign in to their brokers: as `ragbus-admin`, whose password the session sets
(`tests/conftest.py`) and every broker the tests start is given (RAGBUS_KAFKA_ADMIN_PASSWORD)."""

from typing import Any

from ragbus.settings import KafkaSettings


def kafka_options(bootstrap: str) -> dict[str, Any]:
    """An aiokafka client's options for the broker at `bootstrap`, signed in as the admin."""
    return KafkaSettings(kafka_bootstrap=bootstrap).kafka_options()
