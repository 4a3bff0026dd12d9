# A stand-in for redis:7.4-alpine made from Debian's packages, for machines that cannot pull it (no registry).
# Debian 12's redis-server is 7.0 (the official image is 7.4): Redis Functions, which the Function library
# needs, exist since 7.0. Like the official image it serves /data as the unprivileged `redis` user and
# `redis-cli` is there for the health check; unlike it, its default command gives no config file, so
# docker-compose-multi.yml passes --protected-mode no (the official image already defaults to it).
#   DOCKER_BUILDKIT=1 docker build -f deploy/docker/redis-debian.Dockerfile \
#       --build-arg BASE_IMAGE=codegraph/debian:bookworm-slim -t codegraph/redis:bookworm deploy/docker
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
