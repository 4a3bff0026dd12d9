# Helpers for scripts/deps/*.sh (sourced, not run).
APT_UPDATED=${APT_UPDATED:-}
# apt_need PKG [CMD]: installs Debian package PKG unless CMD (default PKG) is already on the PATH.
apt_need() {
  local pkg=$1 cmd=${2:-$1}
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing '$cmd': install the Debian package '$pkg' (needs root)" >&2
    return 1
  fi
  if [ -z "$APT_UPDATED" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  echo "installing $pkg"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
}
# pip_need PKG MODULE: pip-installs PKG unless python3 can import MODULE.
pip_need() {
  local pkg=$1 module=$2
  python3 -c "import $module" >/dev/null 2>&1 && return 0
  echo "installing $pkg (pip)"
  # Debian's own python3 refuses installs outside a virtualenv (PEP 668); a pyenv python does not.
  python3 -m pip install -q "$pkg" 2>/dev/null || python3 -m pip install -q --break-system-packages "$pkg"
}
