# shellcheck shell=bash
# Containers: the Docker engine that tests/containers/run.sh builds and runs the images with (sourced by
# scripts/install-deps.sh). Debian's docker.io (the 20.10 daemon) and docker-compose v1; debootstrap makes the
# local base image where no registry can be reached (deploy/docker/build-images.sh). dockerd is started as root
# when nothing answers on its socket, with its log in /var/log/codegraph-dockerd.log, and waited for.
apt_need docker.io dockerd
apt_need debootstrap
apt_need binutils objcopy
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "the Docker engine is not running: start dockerd (needs root)" >&2
    return 1
  fi
  # A dockerd killed uncleanly leaves its pid file and containerd's socket behind, and refuses to start.
  if ! pgrep -x dockerd >/dev/null; then rm -f /var/run/docker.pid; fi
  echo "starting dockerd (log: /var/log/codegraph-dockerd.log)"
  nohup dockerd --storage-driver=overlay2 >>/var/log/codegraph-dockerd.log 2>&1 </dev/null &
  deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "dockerd did not answer within 60 s; its log:" >&2
      tail -n 20 /var/log/codegraph-dockerd.log >&2
      return 1
    fi
    sleep 0.5
  done
fi
