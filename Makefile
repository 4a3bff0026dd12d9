# The two commands of the README's Quick start, and the steps they are made of.
.PHONY: run run-cluster test deps build stop images fuzz

deps:
	@bash scripts/install-deps.sh

build: deps
	cargo build --release --workspace --bins

# `make run REPO=<dir>` analyses and watches that folder as a project named after it (PROJECT=<name> names it);
# without REPO, this repository as the project `default`.
REPO ?=
PROJECT ?=
STACK_FOLDER = $(if $(REPO),STACK_ANALYZE_PATH="$(REPO)") $(if $(PROJECT),STACK_PROJECT="$(PROJECT)")

run: build
	@$(STACK_FOLDER) bash scripts/stack.sh start

# The same stack on a local Redis Cluster (3 primaries + 3 replicas on 127.0.0.1:7000-7005) instead of one Redis.
run-cluster: build
	@$(STACK_FOLDER) bash scripts/stack.sh start-cluster

# Every image of docker-compose-multi.yml; local stand-ins from Debian's packages where no registry answers.
images: deps
	@bash deploy/docker/build-images.sh

stop:
	@bash scripts/stack.sh stop

test: deps
	@bash scripts/test.sh

# The fuzz targets of fuzz/ (see fuzz/README.md), one after the other, FUZZ_SECONDS each; FUZZ_TARGETS picks some
# (e.g. `make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=bolt_packstream`). `make test` runs each for 20 s.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?=
fuzz: deps
	@bash fuzz/run.sh build
	@bash fuzz/run.sh run $(FUZZ_SECONDS) $(FUZZ_TARGETS)
