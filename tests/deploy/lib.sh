# shellcheck shell=bash
# Shared by the stack tests of tests/deploy (sourced): their check lines and free ports. A script sets failed=0
# before its first check and exits non-zero when `failed` is 1.
ok() { echo "  ok   $*"; }
# shellcheck disable=SC2034 # failed is the sourcing script's
bad() { echo "  FAIL $*"; failed=1; }
expect() { # expect DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

free_ports() { # free_ports N: N distinct free loopback ports
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' "$1"
}
