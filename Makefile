# The two commands of the README's Quick start, and the steps they are made of.
.PHONY: run test deps build stop

deps:
	@bash scripts/install-deps.sh

build: deps
	cargo build --release --workspace --bins

run: build
	@bash scripts/stack.sh start

stop:
	@bash scripts/stack.sh stop

test: deps
	@bash scripts/test.sh
