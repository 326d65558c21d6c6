"""Records encrypted by the Rust CLI (`fieldcrypt encrypt`) decrypt in Python, and the reverse."""

import base64
import json
import subprocess

from support import KEYS, POLICY, customer_bytes, make_codec


def b64(b):
    return None if b is None else base64.b64encode(b).decode("ascii")


def unb64(s):
    return None if s is None else base64.b64decode(s, validate=True)


def cli(binary, command, topic, records, *extra):
    """Pipes (value, headers, key) records through the CLI as JSON lines."""
    lines = "".join(
        json.dumps({"key": b64(key), "value": b64(value), "headers": [[n, b64(v)] for n, v in headers]}) + "\n"
        for value, headers, key in records
    )
    proc = subprocess.run(
        [binary, command, "--policy", str(POLICY), "--local-keys", str(KEYS), "--topic", topic, *extra],
        input=lines, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"fieldcrypt {command} exited {proc.returncode}: {proc.stderr}"
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(out) == len(records)
    return [(unb64(o["value"]), [(n, unb64(v)) for n, v in o["headers"]], unb64(o["key"])) for o in out]


RECORDS = [
    (customer_bytes(name=f"c{i}", password=f"pw-{i}"), [("trace", f"t{i}".encode())], f"k{i}".encode())
    for i in range(5)
]


def test_rust_encrypts_python_decrypts(fieldcrypt_bin):
    sealed = cli(fieldcrypt_bin, "encrypt", "customers", RECORDS)
    for (plain, headers, key), (value, sealed_headers, sealed_key) in zip(RECORDS, sealed):
        assert b"pw-" not in value and "fieldcrypt" in dict(sealed_headers)
        opened = make_codec().decrypt("customers", value, sealed_headers, key=sealed_key)
        assert (opened.value, opened.headers, opened.key) == (plain, headers, key)


def test_python_encrypts_rust_decrypts(fieldcrypt_bin):
    codec = make_codec()
    sealed = [codec.encrypt("customers", v, h, key=k) for v, h, k in RECORDS]
    opened = cli(fieldcrypt_bin, "decrypt", "customers", [(r.value, r.headers, r.key) for r in sealed])
    assert opened == RECORDS
    # ...and as a profile: visa-only leaves the password encrypted.
    partial = cli(fieldcrypt_bin, "decrypt", "customers", [(r.value, r.headers, r.key) for r in sealed],
                  "--profile", "visa-only")
    for (value, headers, _), (plain, _, _) in zip(partial, RECORDS):
        doc = json.loads(value)
        assert doc["visa"] == json.loads(plain)["visa"] and doc["password"] != json.loads(plain)["password"]
        assert "fieldcrypt" in dict(headers)
