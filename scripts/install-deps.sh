#!/usr/bin/env bash
# Installs what the project needs and this machine lacks. Idempotent: every step checks before it installs.
# Each area of the project keeps its own needs in scripts/deps/<area>.sh; this runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps/lib.sh
for f in scripts/deps/[0-9]*.sh; do
  # shellcheck source=/dev/null
  . "$f"
done
