"""Fixtures: a codec on the demo policy, the Rust CLI."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from support import ROOT, make_codec


@pytest.fixture
def codec():
    return make_codec()


@pytest.fixture(scope="session")
def fieldcrypt_bin():
    """The Rust CLI: FIELDCRYPT_BIN (run-tests.sh builds it), else built here. Never skipped."""
    path = os.environ.get("FIELDCRYPT_BIN")
    if not path:
        subprocess.run(["cargo", "build", "--quiet", "-p", "fieldcrypt-cli"], cwd=ROOT, check=True)
        meta = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        path = str(Path(json.loads(meta.stdout)["target_directory"]) / "debug" / "fieldcrypt")
    if not os.access(path, os.X_OK):
        pytest.fail(f"fieldcrypt CLI not found at {path}: cargo build -p fieldcrypt-cli, or set FIELDCRYPT_BIN",
                    pytrace=False)
    return path
