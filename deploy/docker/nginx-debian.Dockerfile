# A stand-in for nginx:alpine made from Debian's packages, for machines that cannot pull it (no registry):
# the dashboard image's runtime stage needs the same things from either base, namely nginx on the PATH,
# /etc/nginx/mime.types, an unprivileged `nginx` user, and `wget` for its HEALTHCHECK.
# Debian 12's nginx is 1.22 (nginx:1.28-alpine is 1.28); locations.conf uses nothing newer.
#   DOCKER_BUILDKIT=1 docker build -f deploy/docker/nginx-debian.Dockerfile \
#       --build-arg BASE_IMAGE=codegraph/debian:bookworm-slim -t codegraph/nginx:bookworm deploy/docker
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light wget \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
    && useradd --system --uid 101 --user-group --no-create-home --shell /usr/sbin/nologin nginx
CMD ["nginx", "-g", "daemon off;"]
