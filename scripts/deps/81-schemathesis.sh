# shellcheck shell=bash
# The schema-driven attack run (tests/security/api-attack.sh, a step of `make test`): schemathesis from PyPI, pinned
# so a new release cannot change what the run checks. Sourced by scripts/install-deps.sh, which defines pip_need.
if ! python3 -c 'import schemathesis, sys; sys.exit(schemathesis.__version__ != "4.32.5")' 2>/dev/null; then
  echo "installing schemathesis 4.32.5 (pip)"
  python3 -m pip install -q "schemathesis==4.32.5" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "schemathesis==4.32.5"
fi
