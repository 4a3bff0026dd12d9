# A stand-in for nginx:alpine made from Debian's packages, for machines that cannot pull it (no registry):
# the dashboard image's runtime stage needs the same things from either base, namely nginx on the PATH,
# /etc/nginx/mime.types, an unprivileged `nginx` user, and `wget` for its HEALTHCHECK.
# Debian 12's nginx is 1.22 (nginx:1.28-alpine is 1.28); locations.conf uses nothing newer.
#   DOCKER_BUILDKIT=1 docker build -f deploy/docker/nginx-debian.Dockerfile \
#       --build-arg BASE_IMAGE=codegraph/debian:bookworm-slim -t codegraph/nginx:bookworm deploy/docker
# Two stages, so the image is one trimmed layer: a static web server needs no package manager, Perl, iconv modules,
# time zones or shell completion at run time (about 35 MB of Debian's minbase), and files deleted in a later layer
# would still be shipped in the base layer below it.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light wget \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
    && useradd --system --uid 101 --user-group --no-create-home --shell /usr/sbin/nologin nginx
RUN set -eu; \
    lib=/usr/lib/x86_64-linux-gnu; \
    rm -rf /var/lib/apt /var/cache/apt /var/cache/debconf /var/log/*.log /var/log/apt /etc/apt \
        /usr/bin/apt* /usr/lib/apt $lib/libapt-* /usr/share/bash-completion \
        /usr/bin/perl* /usr/lib/x86_64-linux-gnu/perl* /usr/share/perl* /etc/perl \
        $lib/gconv /usr/share/zoneinfo /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale \
        /usr/share/common-licenses /usr/share/lintian /usr/share/debconf /usr/share/pam-configs \
        /var/lib/dpkg/info /usr/bin/dpkg* /usr/share/dpkg /etc/dpkg; \
    # What stays must still run: nginx (and its config), wget, and the POSIX tools render.sh uses.
    for bin in nginx wget sh sed; do \
        if ldd "$(command -v $bin)" | grep -q 'not found'; then echo "$bin lost a library" >&2; exit 1; fi; \
    done; \
    nginx -t -e /dev/stderr 2>&1 | grep -q successful; \
    wget --version >/dev/null
FROM scratch
COPY --from=build / /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["nginx", "-g", "daemon off;"]
