# DepCon deploy: the project's task runner. `make help` lists the targets.
#
# Every target runs scripts/setup first (idempotent, seconds when nothing is
# to do), so each is a complete command on a fresh Debian 12 machine.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
# .venv/bin first: its python, ansible, pulumi helpers and the pinned Go.
export PATH := $(VENV)/bin:$(PATH)
export GOTOOLCHAIN := local

# Go modules of the project (the kubelet patch package, benchmarks).
GO_MODULES := $(patsubst %/go.mod,%,$(shell find . -name go.mod -not -path './.venv/*' 2>/dev/null))
SHELL_SCRIPTS := scripts/setup .ci/run
YAML_DIRS := roles playbooks inventory molecule versions.yml Pulumi.yaml Pulumi.lab.yaml Pulumi.controller.yaml .yamllint .ansible-lint
# A benchmark is a module of harness/bench/ that runs as a program; the rest
# (stats, host, cli, ...) are its helpers.
BENCHES := $(patsubst harness/bench/%.py,bench-%,$(shell grep -l '^if __name__ == "__main__":' harness/bench/*.py))

.PHONY: help setup lab lab-smoke lab-proof lab-down lab-destroy test lint test-unit test-go test-kernel test-integration test-molecule bench engine lock

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

setup: ## install everything the project needs (Debian packages, .venv, Go)
	@bash scripts/setup

lab: setup ## the main job: bring up the local lab and verify it; prints a stage table
	@$(PY) -m harness.lab

# The lab VMs (inventory/lab) keep running after make lab, as a lab does.
LAB_VMS = lab-cp1 lab-w1

lab-smoke: setup ## the cluster smoke: make lab, then the way back in two steps with the rollback checked between; reports/lab-smoke.json
	@$(PY) -m harness.lab smoke

lab-proof: setup ## verify.yml with the SLO proof on (inventory/lab turns it off), on the running lab (make lab first); reports/verify-lab.json, verify-lab-proof.{json,png}
	@$(PY) -m harness.lab proof

lab-down: setup ## stop the lab VMs, keeping their disks (make lab boots them again)
	@$(PY) -m harness.vm.image down --keep-disk $(LAB_VMS)

lab-destroy: setup ## pulumi destroy of the lab (DepCon rolled back, cluster reset), then the VMs and disks go
	@$(PY) -m harness.lab destroy

test: setup ## the full suite: lint, unit, Go, kernel VM and integration tests
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-go
	@$(MAKE) --no-print-directory test-kernel
	@$(MAKE) --no-print-directory test-integration
	@echo "make test: all stages passed"

lint: ## ruff, mypy --strict, yamllint, ansible-lint, shellcheck, gofmt/go vet, kernel style
	@echo "== lint: ruff"; ruff check . && ruff format --check .
	@echo "== lint: mypy --strict"; mypy
	@echo "== lint: yamllint"; yamllint --strict $(YAML_DIRS)
	@echo "== lint: ansible-lint (production)"; ansible-lint --profile production playbooks roles molecule
	@echo "== lint: shellcheck"; shellcheck $(SHELL_SCRIPTS)
	@echo "== lint: go"; \
	if [ -z "$(GO_MODULES)" ]; then echo "no Go modules in the tree"; fi; \
	for m in $(GO_MODULES); do \
		out=$$(gofmt -l $$m); [ -z "$$out" ] || { echo "gofmt: $$out"; exit 1; }; \
		(cd $$m && go vet ./...); done
	@echo "== lint: kernel style"; \
	if [ -f kernel_module/Makefile ]; then $(MAKE) --no-print-directory -C kernel_module check; \
	else echo "no kernel module in the tree"; fi

test-unit: ## unit tests (no external programs)
	@echo "== test: unit"; $(PY) -m pytest -m unit tests

test-go: ## go test -race of every Go module
	@echo "== test: go"; \
	if [ -z "$(GO_MODULES)" ]; then echo "no Go modules in the tree"; fi; \
	for m in $(GO_MODULES); do (cd $$m && go test -race -count=1 ./...); done

test-kernel: ## kernel module tests in a real kernel under qemu
	@echo "== test: kernel"; \
	if [ -d tests/kernel ]; then $(PY) -m pytest -m kernel tests; \
	else echo "no kernel tests in the tree"; fi

test-integration: ## integration tests (real Pulumi engine, Ansible)
	@echo "== test: integration"; $(PY) -m pytest -m integration tests

# Scenarios run by test-molecule: node (one VM), cluster (two VMs, site.yml).
MOLECULE_SCENARIOS ?= node cluster

test-molecule: setup ## molecule scenarios on Debian 12 VMs (qemu TCG; VM image cached)
	@echo "== test: molecule ($(MOLECULE_SCENARIOS))"; \
	$(PY) -m buildtools.artifacts build; \
	export DEPCON_BUNDLE_DIR=$$($(PY) -m buildtools.artifacts path); \
	for s in $(MOLECULE_SCENARIOS); do molecule test -s $$s; done

bench: setup ## every benchmark (make bench-<name>); reports under reports/bench/
	@if [ -z "$(BENCHES)" ]; then echo "no benchmarks in the tree yet"; fi
	@for b in $(BENCHES); do $(MAKE) --no-print-directory $$b; done

bench-%: setup
	@case " $(BENCHES) " in *" bench-$* "*) ;; \
	*) echo "make: no benchmark '$*'; the benchmarks are: $(BENCHES)" >&2; exit 2;; esac
	@$(PY) -m harness.bench.$*

engine: setup ## build (or reuse) the Pulumi CLI, language host and Kubernetes plugin
	@$(PY) -m buildtools.pulumi_engine build

artifacts: setup ## build (or reuse) the offline Kubernetes bundle: binaries, patched kubelet, images
	@$(PY) -m buildtools.artifacts build

lock: ## re-resolve requirements.lock from pyproject.toml (keeps existing pins)
	@$(PY) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --generate-hashes --no-header \
		-o requirements.lock
