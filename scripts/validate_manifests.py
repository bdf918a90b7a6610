#!/usr/bin/env python3
"""Validates Kubernetes manifests offline.

Every built-in object is checked with kubernetes-validate in strict mode
(unknown fields are errors) against the Kubernetes version given; every
ChatCluster is checked against the openAPIV3Schema of the generated CRD.
Other custom kinds (ServiceMonitor, PrometheusRule: promtool checks its
rules, see check-monitoring.sh) are listed as not checked.

usage: validate_manifests.py K8S_VERSION CRD.yaml FILE...   ("-" reads stdin)
Exits 1 when anything is invalid.
"""
import sys

import jsonschema
import kubernetes_validate
import yaml

CUSTOM_UNCHECKED = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def docs(path):
    text = sys.stdin.read() if path == "-" else open(path).read()
    return [d for d in yaml.safe_load_all(text) if d]


def main():
    version, crd_path, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    crd = docs(crd_path)[0]
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    schemas = {f"{group}/{v['name']}": v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
    failed = 0
    for path in files:
        for d in docs(path):
            api, k = d.get("apiVersion"), d.get("kind")
            name = f"{path}: {k} {d.get('metadata', {}).get('name')}"
            try:
                if k == kind and api in schemas:
                    jsonschema.validate(d, schemas[api])
                    print(f"ok   {name} (against the CRD schema)")
                elif (api, k) in CUSTOM_UNCHECKED:
                    print(f"skip {name} (custom resource, schema not shipped)")
                else:
                    kubernetes_validate.validate(d, version, strict=True)
                    print(f"ok   {name}")
            except Exception as e:  # noqa: BLE001 - report every kind of failure
                failed += 1
                msg = getattr(e, "message", str(e)).splitlines()[0]
                print(f"FAIL {name}: {msg}")
    if failed:
        print(f"{failed} invalid object(s)")
        sys.exit(1)


main()
