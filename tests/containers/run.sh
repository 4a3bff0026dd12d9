#!/usr/bin/env bash
# The containers step of `make test`: `make images` (deploy/docker/build-images.sh: local stand-ins from Debian's
# packages when no registry answers), then tests/containers/compose_test.py against the whole compose stack.
# The stack is taken down with its volumes on every exit, a failed or interrupted run included, and also before
# the run (what a killed earlier run left). Needs a running Docker engine (make deps: scripts/deps/70-docker.sh).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export CONTAINERS_TEST_PROJECT=${CONTAINERS_TEST_PROJECT:-codegraph-test}
# The debug build that make test has just made (stripped): a cold release build would not fit the step's budget.
export CODEGRAPH_IMAGES_PROFILE=${CODEGRAPH_IMAGES_PROFILE:-debug}

if ! docker info >/dev/null 2>&1; then
  echo "no Docker engine answers: run make deps (it starts dockerd)" >&2
  exit 1
fi

start=$SECONDS
bash deploy/docker/build-images.sh || exit 1
echo "make images: $((SECONDS - start)) s"

# The local stand-ins are used when the official images are not there (build-images.sh made them instead).
files=(-f docker-compose-multi.yml)
offline=()
if ! docker image inspect redis:7.4-alpine >/dev/null 2>&1 && docker image inspect codegraph/redis:bookworm >/dev/null 2>&1; then
  files+=(-f deploy/docker/compose.offline.yml)
  offline=(--offline)
fi
files+=(-f tests/containers/compose.test.yml)
down() {
  COMPOSE_PROJECT_NAME=$CONTAINERS_TEST_PROJECT docker-compose "${files[@]}" down -v --remove-orphans >/dev/null 2>&1
}
down
trap down EXIT
python3 tests/containers/compose_test.py "${offline[@]}"
