# fieldcrypt — the two commands that set up everything on a fresh machine:
#   make demo    run the demo (in-process Kafka mock cluster, no server to install)
#   make test    install what is needed and run every test suite, lints included
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
FUZZ_SECONDS ?= 15

.PHONY: demo test setup lint unit fuzz bench

setup:
	@scripts/setup.sh

demo: setup
	$(CARGO) run --release -p fieldcrypt --features kafka --example demo

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	cd core/fuzz && $(CARGO) fmt -- --check && $(CARGO) clippy --all-targets -- -D warnings

unit: setup
	$(CARGO) test --workspace --all-features
	cd core/fuzz && $(CARGO) test

fuzz: setup
	scripts/fuzz.sh $(FUZZ_SECONDS)

test: lint unit fuzz
	@echo "make test: all suites passed"

bench: setup
	$(CARGO) bench -p fieldcrypt --bench codec
