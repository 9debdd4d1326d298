"""Checks the objects `helm template` rendered (a multi-document YAML file, argv[1]) against what the
values (JSON, argv[2]) ask for: every object carries commonLabels, every pod template commonLabels and
podLabels, and every pod meets the Pod Security Standard "restricted" profile (plus a read-only root
filesystem). Prints one JSON summary on success ({"kinds": [...], "castellan_toml": "..."}); exits 1
naming every problem otherwise."""
import json
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
want = json.loads(sys.argv[2])
common = want.get("commonLabels", {})
pod_labels = dict(common, **want.get("podLabels", {}))
common_ann = want.get("commonAnnotations", {})
problems = []

# Volume types the restricted profile allows.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}


def name(o):
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def has_all(have, need):
    return all(have.get(k) == v for k, v in need.items())


def pod_templates(o):
    spec = o.get("spec", {})
    kind = o.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [spec.get("template", {})]
    if kind == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {})]
    if kind == "Pod":
        return [o]
    return []


def check_restricted(where, pod):
    spec = pod.get("spec", {})
    psc = spec.get("securityContext", {}) or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{where}: {flag}")
    for v in spec.get("volumes", []) or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"{where}: volume {v.get('name')} of type {kinds - ALLOWED_VOLUMES}")
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    if not containers:
        problems.append(f"{where}: no containers")
    for c in containers:
        csc = c.get("securityContext", {}) or {}
        cw = f"{where} container {c.get('name')}"
        if csc.get("privileged"):
            problems.append(f"{cw}: privileged")
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation is not false")
        caps = csc.get("capabilities", {}) or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{cw}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{cw}: adds capabilities {caps.get('add')}")
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{cw}: runAsNonRoot is not true")
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        if uid == 0:
            problems.append(f"{cw}: runAsUser 0")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{cw}: seccompProfile is {seccomp}")
        if csc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: readOnlyRootFilesystem is not true")
        for p in c.get("ports", []) or []:
            if p.get("hostPort"):
                problems.append(f"{cw}: hostPort")
        if not (c.get("resources", {}) or {}).get("limits", {}).get("memory"):
            problems.append(f"{cw}: no memory limit")


for o in docs:
    meta = o.get("metadata", {})
    if not has_all(meta.get("labels", {}) or {}, common):
        problems.append(f"{name(o)}: labels {meta.get('labels')} lack {common}")
    if not has_all(meta.get("annotations", {}) or {}, common_ann):
        problems.append(f"{name(o)}: annotations {meta.get('annotations')} lack {common_ann}")
    for t in pod_templates(o):
        tl = t.get("metadata", {}).get("labels", {}) or {}
        if not has_all(tl, pod_labels):
            problems.append(f"{name(o)}: pod template labels {tl} lack {pod_labels}")
        check_restricted(f"{name(o)} pod", t)
    if o.get("kind") == "CronJob":
        jl = o["spec"]["jobTemplate"].get("metadata", {}).get("labels", {}) or {}
        if not has_all(jl, common):
            problems.append(f"{name(o)}: job template labels {jl} lack {common}")

# Custom resources kubernetes-validate has no schema for: the fields their controllers need.
for o in docs:
    kind, spec = o.get("kind"), o.get("spec", {})
    if kind == "ServiceMonitor" and not (spec.get("selector", {}).get("matchLabels")
                                         and all(e.get("port") for e in spec.get("endpoints", []))):
        problems.append(f"{name(o)}: needs selector.matchLabels and endpoints[].port")
    if kind == "RequestAuthentication" and not all(
            r.get("issuer") and r.get("jwksUri", "").startswith("https://")
            for r in spec.get("jwtRules") or [{}]):
        problems.append(f"{name(o)}: jwtRules need an issuer and an https:// jwksUri")
    if kind == "AuthorizationPolicy" and (spec.get("action") not in ("ALLOW", "DENY", "AUDIT", "CUSTOM")
                                          or not spec.get("rules")):
        problems.append(f"{name(o)}: needs an action and rules")
    if o.get("apiVersion", "").startswith(("security.istio.io/", "monitoring.coreos.com/")) and \
            not spec.get("selector"):
        problems.append(f"{name(o)}: no selector")

if problems:
    print("\n".join(problems))
    sys.exit(1)
toml = [o["data"]["castellan.toml"] for o in docs
        if o.get("kind") == "ConfigMap" and "castellan.toml" in o.get("data", {})]
print(json.dumps({"objects": [name(o) for o in docs], "docs": docs,
                  "castellan_toml": toml[0] if toml else None}))
