# The two commands of the README's Quick start, and the steps they are made of.
.PHONY: run test deps build stop images

deps:
	@bash scripts/install-deps.sh

build: deps
	cargo build --release --workspace --bins

run: build
	@bash scripts/stack.sh start

# Every image of docker-compose-multi.yml; local stand-ins from Debian's packages where no registry answers.
images: deps
	@bash deploy/docker/build-images.sh

stop:
	@bash scripts/stack.sh stop

test: deps
	@bash scripts/test.sh
