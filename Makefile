# fieldcrypt — the two commands that set up everything on a fresh machine:
#   make demo    run the demo (in-process Kafka mock cluster, no server to install)
#   make test    install what is needed and run every test suite, lints included
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
FUZZ_SECONDS ?= 15

.PHONY: demo test setup lint unit it bindings-over-ffi xtest fuzz bench wheel

setup:
	@scripts/setup.sh

demo: setup
	$(CARGO) run --release -p fieldcrypt --features kafka --example demo

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	cd core/fuzz && $(CARGO) fmt -- --check && $(CARGO) clippy --all-targets -- -D warnings

unit: setup
	$(CARGO) test --workspace --all-features --exclude fieldcrypt-it
	cd core/fuzz && $(CARGO) test

# Integration tests against real servers, all installed from their registries, started on
# 127.0.0.1 and stopped by pid: Kafka 4.x KRaft and Apicurio Registry 3.3.x (scripts/servers.sh,
# Maven Central), and the KMS servers of scripts/kms/ (OpenBao, moto, local-kms). Azure's Lowkey Vault and
# a GCP KMS emulator are not served by the registries here (docs/kms/azure.md, docs/kms/gcp.md).
# The KMS servers start while Kafka and Apicurio boot. Then the Rust integration tests, the
# confluent-kafka interop tests, and the Python binding's tests (pip install ./bindings/python,
# pytest incl. a real SerializingProducer/DeserializingConsumer, stubtest), then the C ABI and
# the Go, C# and Java bindings (bindings-over-ffi).
KMS_SERVERS ?= openbao moto local-kms
it: setup
	export FIELDCRYPT_RUN=$(CURDIR)/target/servers; \
	stop_all() { scripts/servers.sh stop; for s in $(KMS_SERVERS); do scripts/kms/$$s.sh stop; done; }; \
	trap stop_all EXIT; \
	scripts/servers.sh start all & servers=$$!; \
	for s in $(KMS_SERVERS); do scripts/kms/$$s.sh start || exit 1; done; \
	wait $$servers || exit 1; \
	eval "$$(scripts/servers.sh env)" && for s in $(KMS_SERVERS); do eval "$$(scripts/kms/$$s.sh env)"; done && \
	$(CARGO) test -p fieldcrypt-it && tests/python/run.sh && bindings/python/run-tests.sh && \
	$(MAKE) --no-print-directory bindings-over-ffi

# The C ABI (ffi/) and the bindings over it, each with its real-broker test: the C test under
# valgrind memcheck, Go (go test -race), C# (Mono) and Java (JUnit on Java 17 and 25). Run by
# `make it` with the servers up; alone it needs FIELDCRYPT_KAFKA (scripts/servers.sh env).
bindings-over-ffi:
	export FIELDCRYPT_SERVER_TESTS=1; \
	ffi/tests/run-c-tests.sh && bindings/go/run-tests.sh && bindings/csharp/run-tests.sh && bindings/java/run-tests.sh

# The Python wheel (abi3, CPython >= 3.9) lands in target/wheels/.
PY_VENV := $(HOME)/.cache/fieldcrypt/venv-python-binding
wheel: setup
	test -x $(PY_VENV)/bin/maturin || { python3 -m venv $(PY_VENV) && $(PY_VENV)/bin/pip install -q maturin==1.16.0; }
	$(PY_VENV)/bin/maturin build --release -m bindings/python/Cargo.toml -o target/wheels

fuzz: setup
	scripts/fuzz.sh $(FUZZ_SECONDS)

# The cross-language harness (xtests/README.md): test vectors in Rust, Python, Go, C# and Java,
# and the 5 x 5 produce/consume matrix through Kafka with Apicurio and OpenBao; writes
# xtests/out/matrix.md. Starts and stops its servers itself.
xtest: setup
	xtests/run.sh

test: lint unit it xtest fuzz
	@echo "make test: all suites passed"

# Benchmarks: the codec per format (criterion, core/benches), the per-record cost with a real
# KMS (OpenBao) behind the DEK cache against the local KMS (tests/benches/kms.rs), and the
# Python serializers side by side with confluent-kafka's (bindings/python/bench), and the C ABI
# and its bindings: Rust and C over the ABI, Go against confluent-kafka-go's ENCRYPT rule, C#, Java.
bench: setup
	$(CARGO) bench -p fieldcrypt --bench codec --bench formats
	export FIELDCRYPT_RUN=$(CURDIR)/target/servers; trap 'scripts/kms/openbao.sh stop' EXIT; \
	scripts/kms/openbao.sh start && eval "$$(scripts/kms/openbao.sh env)" && \
	$(CARGO) bench -p fieldcrypt-it --bench kms
	bindings/python/run-tests.sh -q
	$(PY_VENV)/bin/pip install -q "confluent-kafka[schemaregistry,rules,avro]==2.16.1"
	$(PY_VENV)/bin/python bindings/python/bench/bench_serializers.py
	$(CARGO) bench -p fieldcrypt-ffi --bench abi
	ffi/tests/run-c-tests.sh bench
	bindings/go/run-tests.sh bench -count=3
	bindings/csharp/run-tests.sh bench
	bindings/java/run-tests.sh bench 17 && bindings/java/run-tests.sh bench 25
