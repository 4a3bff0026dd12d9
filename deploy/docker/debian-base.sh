#!/usr/bin/env bash
# Makes a local Debian 12 base image from Debian's packages, for machines that cannot pull debian:bookworm-slim
# (no registry). debootstrap's minbase, trimmed the way the official slim image is (no docs, man pages or
# locales, now or in later apt installs; no apt cache or lists), imported with `docker import`.
# Needs root and debootstrap. Usage: deploy/docker/debian-base.sh IMAGE   (e.g. codegraph/debian:bookworm-slim)
set -euo pipefail
image=${1:?usage: debian-base.sh IMAGE}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/codegraph-debian-base.XXXXXX)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# What debian:bookworm-slim sets up: later `apt-get install`s in the Dockerfiles stay slim and leave no cache.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
APT::Install-Recommends "false";
CFG
cat >"$root/etc/apt/sources.list" <<CFG
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
CFG
find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old "$root"/tmp/*
tar -C "$root" -c . | docker import --change 'CMD ["bash"]' --message "debootstrap minbase bookworm" - "$image" >/dev/null
echo "$image"
