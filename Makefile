# fieldcrypt — the two commands that set up everything on a fresh machine:
#   make demo    run the demo (in-process Kafka mock cluster, no server to install)
#   make test    install what is needed and run every test suite, lints included
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
FUZZ_SECONDS ?= 15

.PHONY: demo test setup lint unit it fuzz bench

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

# Integration tests against real servers (Kafka 4.x KRaft, Apicurio Registry 3.3.x) that
# scripts/servers.sh installs from Maven Central, starts on 127.0.0.1 and stops by pid.
it: setup
	export FIELDCRYPT_RUN=$(CURDIR)/target/servers; \
	scripts/servers.sh start all && eval "$$(scripts/servers.sh env)" && \
	$(CARGO) test -p fieldcrypt-it && tests/python/run.sh; rc=$$?; scripts/servers.sh stop; exit $$rc

fuzz: setup
	scripts/fuzz.sh $(FUZZ_SECONDS)

test: lint unit it fuzz
	@echo "make test: all suites passed"

bench: setup
	$(CARGO) bench -p fieldcrypt --bench codec --bench formats
