#!/usr/bin/env bash
# Checks the Helm chart without a cluster: the CRD copy matches the
# generated one, helm lint --strict, helm template with default and with CI
# values, every rendered built-in object validated against the Kubernetes
# schemas in strict mode, ChatClusters (chart and examples/) against the CRD,
# and values.schema.json rejecting bad values. Installs its tools if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/tools.sh):$PATH"
K8S=1.34.0
chart=charts/parley-operator
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

diff -u crds/chatcluster.yaml "$chart/crds/chatcluster.yaml" \
  || { echo "$chart/crds/chatcluster.yaml differs from crds/chatcluster.yaml: cp crds/chatcluster.yaml $chart/crds/"; exit 1; }

helm lint --strict "$chart"
for values in "$chart"/ci/*.yaml; do
  helm lint --strict "$chart" -f "$values"
done

helm template parley "$chart" --namespace parley-system --include-crds > "$out/default.yaml"
for values in "$chart"/ci/*.yaml; do
  helm template parley "$chart" --namespace parley-system -f "$values" > "$out/$(basename "$values")"
done
python_bin=.tools/venv/bin/python
"$python_bin" scripts/validate_manifests.py "$K8S" crds/chatcluster.yaml "$out"/*.yaml examples/*.yaml

# The values schema must refuse what it should.
for bad in "replicas=many" "unknownKey=1" "image.pullPolicy=Sometimes" "watchNamespace=Not_A_Namespace" "scope=everything"; do
  if helm template parley "$chart" --set "$bad" >/dev/null 2>&1; then
    echo "values.schema.json accepted --set $bad"; exit 1
  fi
done
if helm template parley "$chart" --set chatCluster.enabled=true >/dev/null 2>&1; then
  echo "values.schema.json accepted a ChatCluster without backends"; exit 1
fi
# The default is one namespace (the release's), with a Role, no ClusterRole
# that can read Secrets.
helm template parley "$chart" --namespace chat > "$out/scope.yaml"
grep -q -- '--namespace=chat' "$out/scope.yaml" || { echo "default scope does not watch the release namespace"; exit 1; }
if python3 - "$out/scope.yaml" <<'PY'
import sys, re
docs = open(sys.argv[1]).read().split("\n---")
bad = [d for d in docs if re.search(r"^kind: ClusterRole$", d, re.M) and "secrets" in d]
sys.exit(0 if bad else 1)
PY
then echo "the default scope grants cluster-wide access to Secrets"; exit 1; fi
echo "chart checks passed"
