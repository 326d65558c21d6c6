"""Errors: one class per core error kind, with `kind`, `retryable`, `index`; every kind that a
Python caller can run into, triggered for real (a stub Vault on 127.0.0.1 for the KMS answers)."""

import base64
import json
import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import fieldcrypt
from support import POLICY, customer_bytes, make_codec

KINDS = {
    fieldcrypt.PolicyError: "policy",
    fieldcrypt.ConfigError: "config",
    fieldcrypt.RecordError: "record",
    fieldcrypt.FormatError: "format",
    fieldcrypt.UnsupportedVersionError: "unsupported_version",
    fieldcrypt.CryptoError: "crypto",
    fieldcrypt.KeyNotFoundError: "key_not_found",
    fieldcrypt.AccessDeniedError: "access_denied",
    fieldcrypt.KmsError: "kms",
    fieldcrypt.RegistryError: "registry",
    fieldcrypt.LimitExceededError: "limit_exceeded",
    fieldcrypt.ShreddedError: "shredded",
}


def test_the_classes():
    assert issubclass(fieldcrypt.Error, Exception)
    for cls, kind in KINDS.items():
        assert issubclass(cls, fieldcrypt.Error)
        assert cls.kind == kind
        assert cls.__module__ == "fieldcrypt" and cls.__name__ in fieldcrypt.__all__
    assert fieldcrypt.Error.retryable is False and fieldcrypt.Error.index is None


def raises(cls, fn, *args, **kw):
    with pytest.raises(cls) as info:
        fn(*args, **kw)
    e = info.value
    assert type(e) is cls, f"{type(e).__name__}: {e}"
    assert e.kind == KINDS[cls] and isinstance(e.retryable, bool) and e.index is None
    assert str(e), "a message"
    return e


# ---- policy and configuration -------------------------------------------------------------------


def test_policy_errors(tmp_path):
    doc = json.loads(POLICY.read_text())
    raises(fieldcrypt.PolicyError, fieldcrypt.Codec, {**doc, "bogus": 1}, kms={})
    raises(fieldcrypt.PolicyError, fieldcrypt.Codec, "{not json", kms={})
    doc["encrypt"][0]["key"] = "ftp://nope"
    e = raises(fieldcrypt.PolicyError, fieldcrypt.Codec, doc, kms={})
    assert "customer-secrets" in str(e), "the message names the rule"
    with pytest.raises(fieldcrypt.Error):
        fieldcrypt.Codec(tmp_path / "missing.json", kms={})
    with pytest.raises(TypeError):
        fieldcrypt.Codec(42, kms={})  # type: ignore[arg-type]


def test_config_errors(tmp_path):
    raises(fieldcrypt.ConfigError, make_codec, profile="nobody")
    raises(fieldcrypt.ConfigError, make_codec, limits={"dek_max_uses": 0})
    raises(fieldcrypt.ConfigError, make_codec, limits={"dek_max_age": -1})
    raises(fieldcrypt.ConfigError, make_codec, limits={"dek_max_uzes": 1})
    raises(fieldcrypt.ConfigError, make_codec, kms={"hsm": {}})
    raises(fieldcrypt.ConfigError, make_codec, kms=["local"])
    raises(fieldcrypt.ConfigError, make_codec, kms={"local": {"key_file": tmp_path / "none.json"}})
    raises(fieldcrypt.ConfigError, make_codec, kms={"vault": {}})
    raises(fieldcrypt.ConfigError, make_codec, kms={"vault": "from_somewhere"})
    raises(fieldcrypt.ConfigError, make_codec, kms={"vault": {"token": "t", "plain_http": "yes"}})
    raises(fieldcrypt.ConfigError, make_codec, kms={"aws": {"access_key_id": "AKIAEXAMPLE"}})
    raises(fieldcrypt.ConfigError, make_codec, kms={"azure": {"tenant_id": "t"}})
    raises(fieldcrypt.ConfigError, make_codec, kms={"gcp": {}})
    raises(fieldcrypt.ConfigError, make_codec, schemas={1: {"type": "XML", "schema": "<x/>"}})
    raises(fieldcrypt.ConfigError, make_codec, schemas={1: {"type": "AVRO"}})
    raises(fieldcrypt.ConfigError, make_codec, registry={"url": "http://127.0.0.1:1"}, schemas={})
    raises(fieldcrypt.ConfigError, make_codec, registry={})
    # A KEK scheme with no client configured fails when a record needs it.
    raises(fieldcrypt.ConfigError, make_codec(kms={}).encrypt, "customers", customer_bytes())


def test_config_errors_name_the_option_never_its_value():
    e = raises(fieldcrypt.ConfigError, make_codec, kms={"vault": {"token": "s.SECRET-1", "tokn": "s.SECRET-2"}})
    assert "tokn" in str(e) and "SECRET" not in str(e)
    e = raises(fieldcrypt.ConfigError, make_codec, kms={"aws": {"secret_access_key": "wJalrXUtnFEMI-SECRET"}})
    assert "SECRET" not in str(e)


def test_from_env(monkeypatch, tmp_path):
    for var in ("VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_ID",
                "AZURE_CLIENT_SECRET", "AZURE_KEYVAULT_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    for client in ("vault", "azure", "gcp"):
        raises(fieldcrypt.ConfigError, make_codec, kms={client: "from_env"})
    monkeypatch.setenv("VAULT_TOKEN", "s.from-env")
    monkeypatch.setenv("AZURE_KEYVAULT_TOKEN", "eyJ.from-env")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    make_codec(kms={"vault": "from_env", "azure": "from_env", "aws": "from_env"})


def test_every_kms_client_builds_from_options():
    make_codec(kms={
        "local": {"secrets": {"a": "x"}},
        "vault": {"role_id": "r", "secret_id": "s", "approle_mount": "ci", "namespace": "team-a",
                  "timeout": 2.5, "max_retries": 1, "backoff": 0.05},
        "aws": {"endpoint": "http://127.0.0.1:4566", "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "session_token": "tok"},
        "azure": {"tenant_id": "t", "client_id": "c", "client_secret": "s",
                  "authority_host": "https://login.microsoftonline.com"},
        "gcp": {"endpoint": "http://127.0.0.1:9999", "no_auth": True},
    })
    make_codec(kms={"azure": {"bearer_token": "eyJ.x"}, "gcp": {"access_token": "ya29.x"}})


# ---- records ------------------------------------------------------------------------------------


def test_record_errors(codec):
    e = raises(fieldcrypt.RecordError, codec.encrypt, "customers", b'{"password":"hunter2",')
    assert "hunter2" not in str(e), "never plaintext in a message"
    sealed = codec.encrypt("customers", customer_bytes())
    raises(fieldcrypt.RecordError, codec.encrypt, "customers", sealed.value, sealed.headers)
    policy = {"fieldcrypt_policy": 1, "id": "k",
              "encrypt": [{"name": "k", "topics": ["t"], "part": "key", "fields": ["id"], "key": "local://k"}]}
    keyed = fieldcrypt.Codec(policy, kms={"local": {"secrets": {"k": "x"}}})
    raises(fieldcrypt.RecordError, keyed.encrypt, "t", b"{}")  # the policy encrypts the key: none given


def test_format_and_version_errors(codec):
    sealed = codec.encrypt("customers", customer_bytes())
    header = dict(sealed.headers)["fieldcrypt"]
    raises(fieldcrypt.FormatError, codec.decrypt, "customers", sealed.value, [("fieldcrypt", header[:20])])
    raises(fieldcrypt.FormatError, codec.decrypt, "customers", sealed.value, [("fieldcrypt", None)])
    raises(fieldcrypt.FormatError, codec.decrypt, "customers", sealed.value, sealed.headers + sealed.headers)
    raises(fieldcrypt.UnsupportedVersionError, codec.decrypt, "customers", sealed.value,
           [("fieldcrypt", b"\x09" + header[1:])])


def test_crypto_errors(codec):
    sealed = codec.encrypt("customers", customer_bytes())
    doc = json.loads(sealed.value)
    ct = bytearray(base64.b64decode(doc["password"]))
    ct[-1] ^= 1
    tampered = json.dumps({**doc, "password": base64.b64encode(bytes(ct)).decode()}).encode()
    raises(fieldcrypt.CryptoError, codec.decrypt, "customers", tampered, sealed.headers)
    # A ciphertext moved from another record does not open here (bound to its record).
    other = json.loads(codec.encrypt("customers", customer_bytes()).value)
    moved = json.dumps({**doc, "password": other["password"]}).encode()
    raises(fieldcrypt.CryptoError, codec.decrypt, "customers", moved, sealed.headers)
    header = bytearray(dict(sealed.headers)["fieldcrypt"])
    header[-1] ^= 1
    raises(fieldcrypt.CryptoError, codec.decrypt, "customers", sealed.value, [("fieldcrypt", bytes(header))])
    del doc["visa"]
    raises(fieldcrypt.CryptoError, codec.decrypt, "customers", json.dumps(doc).encode(), sealed.headers)


def test_key_not_found_on_encrypt_and_fallback_on_decrypt():
    producer_without_kek = make_codec(kms={"local": {"secrets": {"another-kek": "x"}}})
    e = raises(fieldcrypt.KeyNotFoundError, producer_without_kek.encrypt, "customers", customer_bytes())
    assert "local://demo-kek" in str(e)
    sealed = make_codec().encrypt("customers", customer_bytes())
    # A consumer that cannot unwrap the DEK gets its profile's fallback, not an error.
    consumer = make_codec(kms={"local": {"secrets": {"another-kek": "x"}}})
    out = consumer.decrypt("customers", sealed.value, sealed.headers)
    assert out.value == sealed.value and out.headers == sealed.headers
    masked = make_codec(kms={"local": {}}, profile="support").decrypt("customers", sealed.value, sealed.headers)
    assert json.loads(masked.value)["password"] == "****"
    stats = consumer.stats()
    assert stats["fields_withheld"] == 2 and stats["kms_errors"] == 1


def test_errors_pickle():
    with pytest.raises(fieldcrypt.ConfigError) as info:
        make_codec(profile="nobody")
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is fieldcrypt.ConfigError and str(copy) == str(info.value)
    assert (copy.kind, copy.retryable, copy.index) == ("config", False, None)


# ---- a stub Vault Transit on 127.0.0.1 ----------------------------------------------------------


class StubVault:
    """Answers Transit encrypt/decrypt like Vault (ciphertext `vault:v1:<base64>`), or with the
    status and error set in `fail`."""

    def __init__(self):
        self.fail = None
        self.seen = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.seen.append((self.path, self.headers.get("X-Vault-Token"), self.headers.get("X-Vault-Namespace")))
                if stub.fail:
                    status, data = stub.fail[0], {"errors": [stub.fail[1]]}
                elif "/encrypt/" in self.path:
                    status, data = 200, {"data": {"ciphertext": "vault:v1:" + body["plaintext"], "key_version": 1}}
                else:
                    status, data = 200, {"data": {"plaintext": body["ciphertext"].split(":", 2)[2]}}
                out = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.kek = f"vault://127.0.0.1:{self.server.server_address[1]}/transit/keys/pii"

    def policy(self):
        doc = json.loads(POLICY.read_text())
        doc["encrypt"][0]["key"] = self.kek
        return doc

    def codec(self, **vault):
        return fieldcrypt.Codec(self.policy(), kms={"vault": {"token": "s.stub-token", "plain_http": True,
                                                              "max_retries": 0, "timeout": 5, **vault}})


@pytest.fixture
def vault():
    stub = StubVault()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


def test_vault_round_trip_through_the_stub(vault):
    sealed = vault.codec(namespace="team-a").encrypt("customers", customer_bytes())
    assert vault.seen == [("/v1/transit/encrypt/pii", "s.stub-token", "team-a")]
    opened = vault.codec().decrypt("customers", sealed.value, sealed.headers)
    assert opened.value == customer_bytes()
    assert vault.seen[1][0] == "/v1/transit/decrypt/pii"


def test_kms_answers_as_errors(vault):
    vault.fail = (403, "1 error occurred:\n\t* permission denied\n\n")
    e = raises(fieldcrypt.AccessDeniedError, vault.codec().encrypt, "customers", customer_bytes())
    assert "s.stub-token" not in str(e) and not e.retryable
    vault.fail = (404, "no handler for route")
    raises(fieldcrypt.KeyNotFoundError, vault.codec().encrypt, "customers", customer_bytes())
    vault.fail = (503, "Vault is sealed")
    e = raises(fieldcrypt.KmsError, vault.codec().encrypt, "customers", customer_bytes())
    assert e.retryable is True
    vault.fail = (400, "message authentication failed")
    raises(fieldcrypt.CryptoError, vault.codec().encrypt, "customers", customer_bytes())


def test_plain_http_only_to_loopback():
    doc = json.loads(POLICY.read_text())
    doc["encrypt"][0]["key"] = "vault://vault.example.com:8200/transit/keys/pii"
    codec = fieldcrypt.Codec(doc, kms={"vault": {"token": "t", "plain_http": True}})
    raises(fieldcrypt.ConfigError, codec.encrypt, "customers", customer_bytes())


def test_unreachable_aws_kms_is_retryable():
    doc = json.loads(POLICY.read_text())
    doc["encrypt"][0]["key"] = "aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    codec = fieldcrypt.Codec(doc, kms={"aws": {
        "endpoint": "http://127.0.0.1:1", "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "max_retries": 0, "timeout": 2}})
    e = raises(fieldcrypt.KmsError, codec.encrypt, "customers", customer_bytes())
    assert e.retryable is True and "wJalrXUtnFEMI" not in str(e)
