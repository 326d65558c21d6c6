"""The broker tests need real servers: FIELDCRYPT_KAFKA (bootstrap servers) and
FIELDCRYPT_REGISTRY (a Confluent-compatible registry API). Missing ones FAIL the tests, never skip
them: run-tests.sh includes this directory only when the servers are meant to be up."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _server(var, how):
    value = os.environ.get(var, "").strip()
    if not value:
        pytest.fail(f"{var} is not set: {how}", pytrace=False)
    return value


START = 'FIELDCRYPT_RUN=/tmp/fc-py scripts/servers.sh start all && eval "$(FIELDCRYPT_RUN=/tmp/fc-py scripts/servers.sh env)"'


@pytest.fixture(scope="session")
def kafka():
    return _server("FIELDCRYPT_KAFKA", START)


@pytest.fixture(scope="session")
def registry_url():
    return _server("FIELDCRYPT_REGISTRY", START)
