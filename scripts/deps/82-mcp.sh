# shellcheck shell=bash
# The MCP clients of tests/mcp/mcp_test.py (a step of `make test`): the official Python MCP SDK from PyPI, and the
# MCP Inspector's command line from npm (tests/mcp/package-lock.json), both pinned so a new release cannot change
# what the run checks. Sourced by scripts/install-deps.sh, after 40-frontend.sh (Node 20, npm_ci_when_stale).
if ! python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("mcp") != "2.3.0")' 2>/dev/null; then
  echo "installing the MCP Python SDK 2.3.0 (pip)"
  python3 -m pip install -q "mcp==2.3.0" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "mcp==2.3.0"
fi
npm_ci_when_stale tests/mcp
