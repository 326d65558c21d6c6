"""What the test modules share: the repository's fixtures (schemas/) and codecs on the demo
policy. (A module of its own, not conftest.py: tests_servers/ imports it too.)"""

import json
from pathlib import Path

import fieldcrypt

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "schemas"
PAYMENT = SCHEMAS / "payment"
POLICY = SCHEMAS / "policies" / "demo.json"
KEYS = SCHEMAS / "keys" / "local-dev.json"

# The payment record's PII (tagged in its schemas; the demo policy's rule `payment-pii`).
PII = ("jane.doe@example.com", "123-45-6789", "1600 Amphitheatre Parkway", "+1-650-555-0100")

CUSTOMER = {"name": "Ada", "password": "hunter2", "visa": "4111-1111-1111-1111", "city": "London"}


def customer_bytes(**changes):
    # Compact: fieldcrypt drops insignificant whitespace inside the objects it rewrites.
    return json.dumps({**CUSTOMER, **changes}, separators=(",", ":")).encode()


def make_codec(**kw):
    kw.setdefault("kms", {"local": {"key_file": KEYS}})
    return fieldcrypt.Codec(kw.pop("policy", POLICY), **kw)


def header_names(headers):
    return [name for name, _ in headers]


# ---- the governance scenario (schemas/governance/README.md) ----------------------------------------

GOVERNANCE = SCHEMAS / "governance"
GOVERNANCE_KMS = {"local": {"secrets": {"governance": "governance-test-secret"}}}


def trusted_keys():
    return json.loads((GOVERNANCE / "trusted-keys.json").read_text())


def customer(cid):
    return json.dumps({"customer_id": cid, "email": f"{cid}@example.com", "card": f"4111-{cid}"}).encode()


def in_clear(record, cid):
    """Which of the customer's PII values the encrypted record still shows."""
    value = record.value or b""
    return [name for name, secret in (("email", f"{cid}@example.com"), ("card", f"4111-{cid}"))
            if secret.encode() in value]
