#!/usr/bin/env bash
# Checks the chart's monitoring: renders the PrometheusRule (helm template),
# takes its rule groups out, runs `promtool check rules` and `promtool test
# rules` (scripts/monitoring/rules.test.yaml: every alert, firing and not),
# checks that every alert has both kinds of test and a runbook section
# (docs/runbook.md) its runbook_url points at, and that the dashboard is
# valid JSON. With --live also the tests against a live chat-node, operator
# and Prometheus (system-tests/tests/monitoring.rs).
# Installs promtool (Debian package prometheus) when missing; the package's
# service is not left running.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/tools.sh):$PATH"
chart=charts/parley-operator
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "monitoring: installing promtool and prometheus (Debian package prometheus)"
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  # policy-rc.d 101: the package must not start its service.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends prometheus >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
fi

python_bin=.tools/venv/bin/python
# rules.yaml: the PrometheusRule's groups as Prometheus reads them. `set`:
# values for the rendering (the live test uses short durations).
render_rules() {
  helm template parley "$chart" --namespace parley-system \
    -s templates/prometheusrule.yaml --set prometheusRule.enabled=true "$@" \
    | "$python_bin" -c 'import sys, yaml; d = yaml.safe_load(sys.stdin); yaml.safe_dump({"groups": d["spec"]["groups"]}, sys.stdout, sort_keys=False)'
}
render_rules > "$out/rules.yaml"
cp scripts/monitoring/rules.test.yaml "$out/"
promtool check rules "$out/rules.yaml"
promtool test rules "$out/rules.test.yaml"

"$python_bin" - "$out/rules.yaml" scripts/monitoring/rules.test.yaml docs/runbook.md "$chart/dashboards/parley.json" <<'PY'
import json, re, sys, yaml
rules, tests, runbook, dashboard = sys.argv[1:]
alerts = [r for g in yaml.safe_load(open(rules))["groups"] for r in g["rules"] if "alert" in r]
cases = [c for t in yaml.safe_load(open(tests))["tests"] for c in t.get("alert_rule_test", [])]
anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
           for h in re.findall(r"^#+ (.*)$", open(runbook).read(), re.M)}
bad = []
for a in alerts:
    name = a["alert"]
    mine = [c for c in cases if c["alertname"] == name]
    if not any(c.get("exp_alerts") for c in mine):
        bad.append(f"{name}: no test where it fires")
    if not any(not c.get("exp_alerts") for c in mine):
        bad.append(f"{name}: no test where it does not fire")
    url = a.get("annotations", {}).get("runbook_url", "")
    if url.split("#")[-1] not in anchors or "#" not in url:
        bad.append(f"{name}: runbook_url {url!r} has no section in docs/runbook.md")
json.load(open(dashboard))
if bad:
    sys.exit("monitoring:\n  " + "\n  ".join(bad))
print(f"monitoring: {len(alerts)} alerts, each tested firing and not, each with a runbook section")
PY

if [ "${1:-}" = "--live" ]; then
  # Short durations, so an alert fires within seconds of its cause.
  render_rules --set prometheusRule.for=2s,prometheusRule.archiveLagSeconds=3 > "$out/live-rules.yaml"
  PARLEY_LIVE_RULES="$out/live-rules.yaml" \
    cargo test -q --locked --workspace --test monitoring -- --include-ignored
fi
echo "monitoring checks passed"
