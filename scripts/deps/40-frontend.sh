# Frontend and browser tests: Node.js >= 20.19 with npm (vite 8), Debian's chromium for the Playwright e2e tests
# (never a downloaded browser), and the npm packages of frontend/ and tests/e2e/ from their package-lock.json.
# Sourced by scripts/install-deps.sh (cwd: the repository), which defines apt_need.

frontend_node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || return 1
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'
}

if ! frontend_node_ok; then
  # Debian 12 ships Node 18, too old for vite 8: the machine image brings Node 20.
  echo "Node.js >= 20.19 with npm is needed for frontend/ and tests/e2e/ (found: $(node --version 2>/dev/null || echo none))" >&2
  return 1
fi

apt_need chromium chromium

# npm_ci_when_stale DIR: `npm ci` when DIR/node_modules is missing or older than DIR/package-lock.json.
npm_ci_when_stale() {
  local dir=$1
  if [ -d "$dir/node_modules" ] && [ ! "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    return 0
  fi
  echo "installing the npm packages of $dir (npm ci)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$dir/node_modules"
}

npm_ci_when_stale frontend
npm_ci_when_stale tests/e2e
