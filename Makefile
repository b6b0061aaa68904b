# Horcrux: the two commands of the README, and the pieces they are made of.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build demo check-examples test lint lint-shell fmt-check unit fuzz docs bench image e2e

all: build

build:
	$(CARGO) build --release --workspace

## The README's first command: boot an appliance node from the image under
## QEMU with examples/single-node pushed in; prints the status URL and how
## to push with git and rsync (`scripts/demo.sh --local`: hostd on this machine).
demo:
	scripts/demo.sh

## The production-format appliance: disk image (ESP, A/B dm-verity root
## slots, data partition), signed update bundle and PXE artifacts, under
## build/image/ (links into the cache, keyed by input hash:
## HORCRUX_IMAGE_CACHE, default target/image-cache).
image:
	scripts/image.sh

## The appliance end to end: build (or reuse) the image, boot a node under
## QEMU TCG, push with git and rsync, kill -9 hostd, reboot.
e2e:
	scripts/e2e.sh

## Build and validate the example trees, showing what `horcrux check` reports.
check-examples: build
	@for tree in examples/*/; do \
	  echo "== horcrux check $$tree"; \
	  ./target/release/horcrux check "$$tree" || exit 1; \
	done
	@echo "== a broken tree, to show what errors look like:"
	@./target/release/horcrux check tests/fixtures/broken-tree; test $$? -eq 1

## The README's second command: everything CI runs.
test: fmt-check lint lint-shell unit fuzz e2e

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Shell: shellcheck over every script that ships or builds the image, and
## the Gentoo recipe's static checks (it cannot be built here).
SHELL_SCRIPTS := image/build.sh scripts/*.sh units/libexec/* units/generators/* \
	units/git-hooks/* recipes/debian/*.sh recipes/debian/initramfs/* .ci/run
lint-shell:
	scripts/host-deps.sh
	shellcheck $(SHELL_SCRIPTS)
	bash recipes/gentoo/check.sh

unit:
	$(CARGO) test --workspace

## Property-based fuzzing of the loader and of the storage parsers (zfs list,
## qemu-img); raise PROPTEST_CASES for longer runs.
fuzz:
	PROPTEST_CASES=$${PROPTEST_CASES:-512} $(CARGO) test -p horcrux-config --test fuzz --release
	PROPTEST_CASES=$${PROPTEST_CASES:-2048} $(CARGO) test -p horcrux-hostd --test fuzz_storage

## Regenerates docs/config-reference.md from the config types (a unit test
## fails while the committed file is stale).
docs:
	$(CARGO) run -q -p horcrux-hostd --bin horcrux -- reference > docs/config-reference.md

bench:
	scripts/bench.sh
