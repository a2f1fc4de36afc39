#!/usr/bin/env python3
"""Offline validation of the mqpaxos deployment (run by scripts/validate-deploy).

Every object is checked against a schema, and an object without one is an error:
  * built-in kinds against the Kubernetes OpenAPI schemas that the PyPI package
    kubernetes-validate ships (strict: unknown fields are errors), for each --kube-version;
  * custom resources (EMQX, NetworkChaos, Workflow) against the openAPIV3Schema of the CRDs
    in deploy/schemas/crds, turned into JSON Schema (Draft 4) and equally strict.
Then the rules a schema cannot state: names and labels, selectors that match their pod
templates, what the Chaos Mesh and EMQX webhooks refuse, and the rules of this deployment
(cluster size agreeing everywhere, every referenced ConfigMap and Secret existing, the chaos
experiments selecting pods that the 7-server overlay really has) and its security rules: a
server pod references its own password Secret only, servers and clients connect with mqtts://
and a mounted CA, EMQX serves TLS only, every namespace has a default-deny NetworkPolicy and
only the monitoring namespace may reach the server pods.

Input: files of YAML documents, each in a named set (an overlay, the chaos experiments, ...).
Output: one line per problem, then a summary line; exit status 1 if anything is invalid.
"""

import argparse
import copy
import glob
import json
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource



class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader (libyaml's when there is one), refusing duplicate keys: PyYAML
    would keep the last one silently, where the API server refuses the object."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "duplicate key %r" % (key,), key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, Loader.construct_mapping)

DEFS_URI = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = DEFS_URI + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# Kinds whose names must be DNS-1123 labels (they become host or DNS names).
LABEL_NAMED_KINDS = {"Namespace", "Service", "StatefulSet"}
WORKLOADS = {"Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job"}
# The mqpaxos pods' labels, as the chaos experiments select them.
SERVER_LABELS = {"app.kubernetes.io/name": "mqpaxos", "app.kubernetes.io/component": "server"}
CLIENT_LABELS = {"app.kubernetes.io/name": "mqpaxos", "app.kubernetes.io/component": "client"}


def group_of(api_version):
    return api_version.split("/")[0] if "/" in api_version else ""


def version_of(api_version):
    return api_version.split("/")[-1]


def ident(obj):
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return "%s/%s%s" % (obj.get("kind"), (ns + "/") if ns else "", md.get("name"))


# --------------------------------------------------------------------------------------
# CRD schemas -> JSON Schema


class CrdSchemas:
    """The served versions of the CRDs in a directory, as strict Draft 4 JSON Schemas."""

    def __init__(self, directory):
        self.raw = {}  # (group, version, kind) -> openAPIV3Schema
        self.unchecked_cel = set()
        self.validators = {}
        for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
            with open(path) as f:
                for doc in yaml.load_all(f, Loader=Loader):
                    if not doc or doc.get("kind") != "CustomResourceDefinition":
                        continue
                    spec = doc["spec"]
                    for v in spec["versions"]:
                        if v.get("served", True):
                            key = (spec["group"], v["name"], spec["names"]["kind"])
                            self.raw[key] = v["schema"]["openAPIV3Schema"]

    def knows(self, obj):
        api = obj.get("apiVersion", "")
        return (group_of(api), version_of(api), obj.get("kind")) in self.raw

    def convert(self, s, where):
        if not isinstance(s, dict):
            return s
        out = {}
        for k, v in s.items():
            if k == "properties":
                out[k] = {name: self.convert(sub, where + "." + name) for name, sub in v.items()}
            elif k in ("items", "not"):
                out[k] = self.convert(v, where + "[]")
            elif k == "additionalProperties":
                out[k] = self.convert(v, where + ".*") if isinstance(v, dict) else v
            elif k in ("anyOf", "oneOf", "allOf"):
                out[k] = [self.convert(x, where) for x in v]
            elif k in ("description", "default", "example", "externalDocs", "nullable") or k.startswith("x-kubernetes-"):
                continue
            elif k == "pattern":
                # Go's RE2 reads [\d-_] as \d, "-" and "_"; Python's re calls it a bad range.
                out[k] = re.sub(r"(\\[dDwWsS])-", r"\1\\-", v)
            else:
                out[k] = v
        if s.get("nullable") and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if s.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not s.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
            if s.get("x-kubernetes-embedded-resource"):
                for f in ("apiVersion", "kind"):
                    out["properties"].setdefault(f, {"type": "string"})
                out["properties"].setdefault("metadata", {"type": "object"})
        if s.get("x-kubernetes-list-type") == "set":
            out["uniqueItems"] = True
        for rule in s.get("x-kubernetes-validations", []):
            # The one CEL form these CRDs use: two fields that exclude each other.
            m = re.fullmatch(r"has\(self\.(\w+)\)\s*&&\s*has\(self\.(\w+)\)\s*\?\s*false\s*:\s*true", rule["rule"].strip())
            if m:
                out.setdefault("allOf", []).append({"not": {"required": [m.group(1), m.group(2)]}})
            else:
                self.unchecked_cel.add("%s: %s" % (where, rule["rule"]))
        return out

    def validator(self, obj, kube_version):
        api = obj["apiVersion"]
        key = (group_of(api), version_of(api), obj["kind"], kube_version)
        if key not in self.validators:
            schema = self.convert(self.raw[key[:3]], obj["kind"])
            schema.setdefault("properties", {})["metadata"] = {"$ref": OBJECT_META}
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            schema["additionalProperties"] = False
            defs = kv.schema_contents(
                "kubernetes-json-schema/v%s-local-strict/_definitions.json" % kube_version_dir(kube_version), kube_version
            )
            registry = Registry().with_resource(DEFS_URI, Resource.from_contents(defs))
            jsonschema.Draft4Validator.check_schema(schema)
            self.validators[key] = jsonschema.Draft4Validator(schema, registry=registry)
        return self.validators[key]


def kube_version_dir(v):
    """kubernetes-validate's schema directory for a version: the newest not newer than it."""
    want = tuple(int(x) for x in v.split(".")[:2])
    have = [tuple(int(x) for x in a.split(".")[:2]) for a in kv.all_versions()]
    best = max((h for h in have if h <= want), default=None)
    if best is None:
        raise SystemExit("kubernetes-validate %s has no schemas for Kubernetes %s" % (kubernetes_validate.__version__, v))
    return "%d.%d.0" % best


# --------------------------------------------------------------------------------------
# Checks


class Checker:
    def __init__(self, crds, kube_versions):
        self.crds = crds
        self.kube_versions = kube_versions
        self.builtins = {}
        self.problems = []  # (set, object id, message)

    def bad(self, where, obj, msg):
        self.problems.append((where, ident(obj) if isinstance(obj, dict) else str(obj), msg))

    # -- schemas
    def schema(self, where, obj):
        if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
            self.bad(where, {"kind": "?", "metadata": {"name": "?"}}, "not a Kubernetes object (no apiVersion/kind)")
            return
        for v in self.kube_versions:
            if self.crds.knows(obj):
                errors = sorted(self.crds.validator(obj, v).iter_errors(obj), key=lambda e: list(e.absolute_path))
                for e in errors[:5]:
                    self.bad(where, obj, "%s: %s (CRD schema)" % (".".join(str(p) for p in e.absolute_path) or "(root)", e.message))
                if errors:
                    return
                continue
            validator = self.builtin(obj, v)
            if validator is None:
                self.bad(where, obj, "no schema for %s %s: neither a Kubernetes %s kind nor a CRD in deploy/schemas/crds" % (obj["apiVersion"], obj["kind"], v))
                return
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
            for e in errors[:5]:
                self.bad(where, obj, "%s: %s (Kubernetes %s schema)" % (".".join(str(p) for p in e.absolute_path) or "(root)", e.message, v))
            if errors:
                return

    def builtin(self, obj, kube_version):
        """kubernetes-validate's strict schema for a built-in kind (its validate() reports only
        the first error and reads the files anew for every object, hence this)."""
        key = (obj["apiVersion"], obj["kind"], kube_version)
        if key not in self.builtins:
            # As kubernetes-validate names its files: apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1.
            api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
            base = "kubernetes-json-schema/v%s-local-strict/" % kube_version_dir(kube_version)
            try:
                schema = kv.schema_contents(base + "%s-%s.json" % (obj["kind"].lower(), api), kube_version)
            except FileNotFoundError:
                self.builtins[key] = None
                return None
            defs = kv.schema_contents(base + "_definitions.json", kube_version)
            registry = Resource.from_contents(schema) @ (Resource.from_contents(defs) @ Registry())
            self.builtins[key] = jsonschema.Draft202012Validator(schema, registry=registry)
        return self.builtins[key]

    # -- names, labels, selectors
    def metadata(self, where, obj):
        md = obj.get("metadata") or {}
        name = md.get("name")
        if not isinstance(name, str) or not name:
            self.bad(where, obj, "metadata.name is missing")
            return
        rx, what, limit = (DNS_LABEL, "DNS-1123 label", 63) if obj.get("kind") in LABEL_NAMED_KINDS else (DNS_SUBDOMAIN, "DNS-1123 subdomain", 253)
        if not rx.match(name) or len(name) > limit:
            self.bad(where, obj, "metadata.name %r is not a %s" % (name, what))
        for path, labels in label_maps(obj):
            for k, val in (labels or {}).items():
                prefix, _, lname = k.rpartition("/")
                if (prefix and (not DNS_SUBDOMAIN.match(prefix) or len(prefix) > 253)) or not LABEL_NAME.match(lname) or len(lname) > 63:
                    self.bad(where, obj, "%s: label key %r is invalid" % (path, k))
                if not isinstance(val, str) or (val and (not LABEL_NAME.match(val) or len(val) > 63)):
                    self.bad(where, obj, "%s: label value %r for %s is invalid" % (path, val, k))
        if obj.get("kind") in WORKLOADS:
            sel = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            tpl = ((((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")) or {}
            if not sel:
                self.bad(where, obj, "spec.selector.matchLabels is empty")
            for k, val in sel.items():
                if tpl.get(k) != val:
                    self.bad(where, obj, "spec.selector %s=%s does not match the pod template's labels" % (k, val))

    # -- what the operators' webhooks refuse
    def webhooks(self, where, obj):
        kind, spec = obj.get("kind"), obj.get("spec") or {}
        if kind == "NetworkChaos":
            self.chaos_selector(where, obj, spec, "spec")
        elif kind == "Workflow":
            templates = spec.get("templates") or []
            names = [t.get("name") for t in templates]
            for n in sorted({n for n in names if names.count(n) > 1}):
                self.bad(where, obj, "Workflow template name %r is not unique" % n)
            if spec.get("entry") not in names:
                self.bad(where, obj, "Workflow entry %r is not a template" % spec.get("entry"))
            for t in templates:
                n, ttype = t.get("name", ""), t.get("templateType")
                if not DNS_SUBDOMAIN.match(n or "") or len(n) > 253:
                    self.bad(where, obj, "Workflow template name %r is not a DNS-1123 subdomain" % n)
                for c in t.get("children") or []:
                    if c not in names:
                        self.bad(where, obj, "Workflow template %r: child %r is not a template" % (n, c))
                if ttype == "Suspend" and not t.get("deadline"):
                    self.bad(where, obj, "Workflow template %r: a Suspend needs a deadline" % n)
                if ttype in ("Serial", "Parallel") and not t.get("children"):
                    self.bad(where, obj, "Workflow template %r: %s without children" % (n, ttype))
                if ttype and ttype.endswith("Chaos"):
                    body = t.get(ttype[0].lower() + ttype[1:])
                    if not isinstance(body, dict):
                        self.bad(where, obj, "Workflow template %r: %s without its %s spec" % (n, ttype, ttype[0].lower() + ttype[1:]))
                        continue
                    if "duration" in body:
                        self.bad(where, obj, "Workflow template %r: a chaos template takes deadline, not duration" % n)
                    if not t.get("deadline"):
                        self.bad(where, obj, "Workflow template %r: no deadline, the chaos would never end" % n)
                    if ttype == "NetworkChaos":
                        self.chaos_selector(where, obj, body, "template " + n)

    def chaos_selector(self, where, obj, spec, at):
        for label, part in (("", spec), ("target.", spec.get("target") or {})):
            mode = part.get("mode")
            if mode in ("fixed", "fixed-percent", "random-max-percent") and not part.get("value"):
                self.bad(where, obj, "%s: %smode %s needs a value" % (at, label, mode))
            if mode == "fixed" and part.get("value") and not str(part["value"]).isdigit():
                self.bad(where, obj, "%s: %svalue %r is not a number of pods" % (at, label, part["value"]))

    def objects(self, where, objs):
        seen = {}
        for obj in objs:
            self.schema(where, obj)
            if not isinstance(obj, dict):
                continue
            self.metadata(where, obj)
            self.webhooks(where, obj)
            md = obj.get("metadata") or {}
            key = (group_of(obj.get("apiVersion", "")), obj.get("kind"), md.get("namespace"), md.get("name"))
            if key in seen:
                self.bad(where, obj, "defined twice")
            seen[key] = obj


def label_maps(obj):
    out = [("metadata.labels", (obj.get("metadata") or {}).get("labels"))]
    spec = obj.get("spec") or {}
    tpl = spec.get("template") if isinstance(spec.get("template"), dict) else None
    if tpl:
        out.append(("spec.template.metadata.labels", (tpl.get("metadata") or {}).get("labels")))
    sel = spec.get("selector")
    if isinstance(sel, dict) and isinstance(sel.get("matchLabels"), dict):
        out.append(("spec.selector.matchLabels", sel["matchLabels"]))
    return out


def pod_specs(obj):
    spec = obj.get("spec") or {}
    if obj.get("kind") in WORKLOADS:
        yield ((spec.get("template") or {}).get("spec") or {})


def env_value(container, name):
    for e in container.get("env") or []:
        if e.get("name") == name:
            return e
    return None


# --------------------------------------------------------------------------------------
# Rules of this deployment


def server_statefulsets(objs):
    """The StatefulSets whose pods are mqpaxos servers, by name."""
    out = []
    for o in objs:
        if o.get("kind") != "StatefulSet":
            continue
        tl = ((o.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        if all(tl.get(k) == v for k, v in SERVER_LABELS.items()):
            out.append(o)
    return sorted(out, key=lambda o: o["metadata"]["name"])


def effective_env(container, cm_data):
    """A container's environment as its ConfigMaps (envFrom) and literal env values make it,
    with $(VAR) references expanded as the kubelet does."""
    env = {}
    for e in container.get("envFrom") or []:
        if "configMapRef" in e:
            env.update(cm_data.get(e["configMapRef"]["name"], {}))
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
        else:
            env.pop(e["name"], None)
    return env


def secret_refs(pod):
    """Every Secret a pod spec names: volumes (also projected), env and envFrom."""
    names = set()
    for v in pod.get("volumes") or []:
        for src in [v] + ((v.get("projected") or {}).get("sources") or []):
            if "secret" in src:
                names.add(src["secret"].get("secretName") or src["secret"].get("name"))
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for e in c.get("envFrom") or []:
            if "secretRef" in e:
                names.add(e["secretRef"]["name"])
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
    return names


def selects(selector, labels):
    """Whether a LabelSelector (matchLabels and matchExpressions) selects these labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if (op == "In" and labels.get(k) not in vals) or (op == "NotIn" and labels.get(k) in vals) or \
           (op == "Exists" and k not in labels) or (op == "DoesNotExist" and k in labels):
            return False
    return True


MONITORING_NAMESPACE = {"kubernetes.io/metadata.name": "monitoring"}


def check_network_policies(ck, where, objs):
    """Every namespace of the overlay has a default-deny NetworkPolicy (all pods, Ingress and
    Egress, no rule), and the servers' pods admit ingress from the monitoring namespace only."""
    namespaces = {o["metadata"]["name"] for o in objs if o.get("kind") == "Namespace"}
    namespaces |= {(o.get("metadata") or {}).get("namespace") for o in objs if o.get("kind") not in ("Namespace",)} - {None}
    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    for ns in sorted(namespaces):
        deny = [p for p in policies if p["metadata"].get("namespace") == ns and not (p["spec"].get("podSelector") or {})
                and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes") or [])
                and not p["spec"].get("ingress") and not p["spec"].get("egress")]
        if not deny:
            ck.bad(where, {"kind": "Namespace", "metadata": {"name": ns}}, "no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, no rules) in the namespace")
    server_pods = [((o["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {} for o in server_statefulsets(objs)]
    for p in policies:
        sel = p["spec"].get("podSelector") or {}
        if not any(selects(sel, labels) for labels in server_pods):
            continue
        for rule in p["spec"].get("ingress") or []:
            peers = rule.get("from")
            if not peers:
                ck.bad(where, p, "lets anyone into the server pods: only the monitoring namespace may reach them")
                continue
            for peer in peers:
                if "ipBlock" in peer or (peer.get("namespaceSelector") or {}).get("matchLabels") != MONITORING_NAMESPACE or \
                   (peer["namespaceSelector"].get("matchExpressions")):
                    ck.bad(where, p, "lets %s into the server pods: only the monitoring namespace (%s) may reach them" % (json.dumps(peer, sort_keys=True), MONITORING_NAMESPACE))


def check_overlay(ck, where, objs, servers, secrets):
    secret_names = None if secrets is None else set(secrets)
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)
    names = {(o.get("kind"), (o.get("metadata") or {}).get("name")) for o in objs}
    majority = servers // 2 + 1

    def one(kind, name):
        for o in by_kind.get(kind, []):
            if o["metadata"]["name"] == name:
                return o
        ck.bad(where, {"kind": kind, "metadata": {"name": name}}, "missing")
        return None

    pdb = one("PodDisruptionBudget", "mqpaxos")
    emqx = one("EMQX", "emqx")
    cm_data = {o["metadata"]["name"]: (o.get("data") or {}) for o in by_kind.get("ConfigMap", [])}
    # The servers: one StatefulSet per server, mqpaxos-server1..N, one pod each.
    servers_sts = server_statefulsets(objs)
    got = [o["metadata"]["name"] for o in servers_sts]
    want = ["mqpaxos-server%d" % i for i in range(1, servers + 1)]
    if sorted(got) != sorted(want):
        ck.bad(where, {"kind": "StatefulSet", "metadata": {"name": "mqpaxos-server*"}}, "the server StatefulSets are %s, the overlay is for %d servers (%s)" % (sorted(got), servers, want))
    for sts in servers_sts:
        spec = sts["spec"]
        name = sts["metadata"]["name"]
        m = re.fullmatch(r"mqpaxos-server(\d+)", name)
        own = int(m.group(1)) if m else None
        if spec.get("replicas", 1) != 1:
            ck.bad(where, sts, "replicas is %s: a server's StatefulSet runs exactly one pod" % spec.get("replicas"))
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        if own is not None and sel.get("app.kubernetes.io/instance") != "server%d" % own:
            ck.bad(where, sts, "spec.selector must include app.kubernetes.io/instance=server%d, or the servers' StatefulSets select each other's pods" % own)
        svc = one("Service", spec.get("serviceName"))
        if svc and svc["spec"].get("clusterIP") != "None":
            ck.bad(where, svc, "the StatefulSet's governing Service must be headless")
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        env = effective_env(c, cm_data)
        if own is not None and env.get("MQPAXOS_ID") != str(own):
            ck.bad(where, sts, "MQPAXOS_ID is %r, the StatefulSet is server %d's" % (env.get("MQPAXOS_ID"), own))
        cms = [e["configMapRef"]["name"] for e in c.get("envFrom") or [] if "configMapRef" in e]
        cfg = [n for n in cms if "MQPAXOS_SERVERS" in cm_data.get(n, {})]
        if len(cfg) != 1:
            ck.bad(where, sts, "exactly one ConfigMap in envFrom must set MQPAXOS_SERVERS (found %d)" % len(cfg))
        elif cm_data[cfg[0]]["MQPAXOS_SERVERS"] != str(servers):
            ck.bad(where, {"kind": "ConfigMap", "metadata": {"name": cfg[0]}}, "MQPAXOS_SERVERS is %s, the overlay is for %d servers" % (cm_data[cfg[0]]["MQPAXOS_SERVERS"], servers))
        if env.get("MQPAXOS_METRICS", "").startswith(("0.0.0.0:", "[::]:")):
            ck.bad(where, sts, "MQPAXOS_METRICS %s binds every address: bind the pod's own (POD_IP)" % env["MQPAXOS_METRICS"])
        for probe, path in (("readinessProbe", "/health"), ("livenessProbe", "/live"), ("startupProbe", "/live")):
            got_path = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
            if got_path != path:
                ck.bad(where, sts, "%s must GET %s (got %r): a probe carries no metrics token" % (probe, path, got_path))
        # /metrics needs a bearer token: a file of a mounted Secret made by make-secrets.
        token = env.get("MQPAXOS_METRICS_TOKEN_FILE")
        vols = {v["name"]: v for v in pod.get("volumes") or []}
        mounted = {m["mountPath"].rstrip("/"): vols.get(m["name"]) for m in c.get("volumeMounts") or []}
        tv = mounted.get((token or "").rpartition("/")[0])
        if not token:
            ck.bad(where, sts, "no MQPAXOS_METRICS_TOKEN_FILE: the metrics would need no credentials")
        elif tv is None or "secret" not in tv:
            ck.bad(where, sts, "MQPAXOS_METRICS_TOKEN_FILE %s is not a file of a mounted Secret" % token)
        elif secrets is not None and tv["secret"].get("secretName") not in secrets:
            ck.bad(where, sts, "MQPAXOS_METRICS_TOKEN_FILE: Secret %s is not made by make-secrets" % tv["secret"].get("secretName"))
        ann = spec["template"]["metadata"].get("annotations") or {}
        if ann.get("prometheus.io/scrape") == "true":
            ck.bad(where, sts, "prometheus.io/scrape: the annotation-driven job sends no token and would get 401 (Prometheus has its own job, deploy/grafana/prometheus-values.yaml)")
        # A server pod may reference its own server Secret only (and no client's).
        refs = secret_refs(pod)
        for n in sorted(refs):
            if re.fullmatch(r"mqpaxos-(server|client)\d+", n) and n != "mqpaxos-server%s" % own:
                ck.bad(where, sts, "the pod references Secret %s, another user's password: a server pod may mount its own (mqpaxos-server%s) only" % (n, own))
        if "mqpaxos-server%s" % own not in refs:
            ck.bad(where, sts, "the pod does not mount its own Secret mqpaxos-server%s" % own)
        if pdb:
            tl = spec["template"]["metadata"]["labels"]
            for k, v in (pdb["spec"].get("selector") or {}).get("matchLabels", {}).items():
                if tl.get(k) != v:
                    ck.bad(where, pdb, "selector %s=%s does not select server pod %s-0" % (k, v, name))
    if pdb and pdb["spec"].get("minAvailable") != majority:
        ck.bad(where, pdb, "minAvailable is %s, a majority of %d is %d" % (pdb["spec"].get("minAvailable"), servers, majority))
    # Servers and clients reach the broker over TLS only, trusting a CA file they mount.
    for o in objs:
        for pod in pod_specs(o):
            tl = ((o["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
            if tl.get("app.kubernetes.io/name") != "mqpaxos":
                continue
            mounts = {}
            vols = {v["name"]: v for v in pod.get("volumes") or []}
            for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                env = effective_env(c, cm_data)
                broker = env.get("MQPAXOS_BROKER")
                if broker is None:
                    ck.bad(where, o, "container %s: no MQPAXOS_BROKER" % c["name"])
                    continue
                if not broker.startswith("mqtts://"):
                    ck.bad(where, o, "container %s: MQPAXOS_BROKER %r is not TLS: servers and clients must use mqtts://" % (c["name"], broker))
                if emqx and not re.match(r"^mqtts?://%s-listeners(\.[a-z0-9.-]+)?:\d+$" % re.escape(emqx["metadata"]["name"]), broker):
                    ck.bad(where, o, "container %s: MQPAXOS_BROKER %r does not name the EMQX listeners Service" % (c["name"], broker))
                ca = env.get("MQPAXOS_CA_FILE")
                mounted = {m["mountPath"].rstrip("/"): vols.get(m["name"]) for m in c.get("volumeMounts") or []}
                d, _, key = (ca or "").rpartition("/")
                v = mounted.get(d)
                paths = [i.get("path") for i in ((v or {}).get("secret") or {}).get("items") or []]
                if not ca:
                    ck.bad(where, o, "container %s: no MQPAXOS_CA_FILE: trust the CA of make-secrets (Secret mqpaxos-ca)" % c["name"])
                elif v is None or "secret" not in v or (v["secret"].get("items") and key not in paths):
                    ck.bad(where, o, "container %s: MQPAXOS_CA_FILE %s is not a file of a mounted Secret" % (c["name"], ca))
    check_network_policies(ck, where, objs)
    if emqx:
        check_emqx(ck, where, emqx, by_kind, names, secrets)
    # Every ConfigMap and Secret a pod or EMQX names must exist (Secrets: made by make-secrets).
    for o in objs:
        for pod in pod_specs(o):
            for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                for e in c.get("envFrom") or []:
                    if "configMapRef" in e and ("ConfigMap", e["configMapRef"]["name"]) not in names:
                        ck.bad(where, o, "envFrom ConfigMap %s is not in the overlay" % e["configMapRef"]["name"])
                    if "secretRef" in e and secret_names is not None and e["secretRef"]["name"] not in secret_names:
                        ck.bad(where, o, "envFrom Secret %s is not made by make-secrets" % e["secretRef"]["name"])
                for e in c.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref and secret_names is not None and ref["name"] not in secret_names:
                        ck.bad(where, o, "env %s: Secret %s is not made by make-secrets" % (e["name"], ref["name"]))
            for v in pod.get("volumes") or []:
                for s in [v] + ((v.get("projected") or {}).get("sources") or []):
                    if "secret" in s and secret_names is not None:
                        n = s["secret"].get("secretName") or s["secret"].get("name")
                        if n not in secret_names:
                            ck.bad(where, o, "volume %s: Secret %s is not made by make-secrets" % (v["name"], n))
    # The clients: one Deployment per MQTT user client<j>, each with its own Secret.
    users = []
    for d in by_kind.get("Deployment", []):
        tl = d["spec"]["template"]["metadata"].get("labels") or {}
        if any(tl.get(k) != v for k, v in CLIENT_LABELS.items()):
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        user = (env_value(c, "MQPAXOS_USER") or {}).get("value")
        pw = ((env_value(c, "MQPAXOS_PASSWORD") or {}).get("valueFrom") or {}).get("secretKeyRef", {}).get("name")
        if not user or not re.match(r"^client\d+$", user):
            ck.bad(where, d, "MQPAXOS_USER %r is not a client user (client<j>)" % user)
        if pw != "mqpaxos-%s" % user:
            ck.bad(where, d, "client %s takes its password from %r, not mqpaxos-%s" % (user, pw, user))
        if d["spec"].get("replicas", 1) != 1:
            ck.bad(where, d, "one pod per client user: replicas must be 1")
        users.append(user)
    if len(users) != 5 or len(set(users)) != len(users):
        ck.bad(where, {"kind": "Deployment", "metadata": {"name": "mqpaxos-client*"}}, "want 5 clients with distinct users, got %s" % users)


def check_scripts(ck, where, objs, servers):
    """The shell scripts in the pod specs: all must parse (sh -n), and each server's entry point
    must run `mqpaxos server` as its own server id with its own password file and metrics on the
    pod's IP (v4 and v6), and refuse to start as a server beyond MQPAXOS_SERVERS. It runs here
    with a stand-in for the mqpaxos binary and the environment the pod spec gives."""
    import shutil
    import subprocess
    import tempfile

    sh = shutil.which("sh")
    if sh is None:
        ck.bad(where, {"kind": "?", "metadata": {"name": "?"}}, "no sh to check the pod scripts with")
        return
    cm_data = {o["metadata"]["name"]: (o.get("data") or {}) for o in objs if o.get("kind") == "ConfigMap"}
    servers_sts = server_statefulsets(objs)
    for o in objs:
        for pod in pod_specs(o):
            for c in pod.get("containers") or []:
                cmd = (c.get("command") or []) + (c.get("args") or [])
                if len(cmd) < 3 or cmd[0] not in ("/bin/sh", "sh") or cmd[1] != "-c":
                    continue
                r = subprocess.run([sh, "-n", "-c", cmd[2]], capture_output=True, text=True)
                if r.returncode != 0:
                    ck.bad(where, o, "container %s: the shell script does not parse: %s" % (c["name"], r.stderr.strip()))
                    continue
                if o not in servers_sts:
                    continue
                own = (effective_env(c, cm_data)).get("MQPAXOS_ID")
                with tempfile.TemporaryDirectory() as tmp:
                    fake = os.path.join(tmp, "mqpaxos")
                    with open(fake, "w") as f:
                        f.write('#!/bin/sh\necho "$* id=$MQPAXOS_ID password=$MQPAXOS_PASSWORD_FILE metrics=$MQPAXOS_METRICS"\n')
                    os.chmod(fake, 0o755)
                    cases = [("10.1.2.3", servers, "10.1.2.3"), ("fd00::7", servers, "[fd00::7]"), ("10.1.2.3", int(own or 1) - 1, None)]
                    for ip, size, host in cases:
                        env = effective_env(c, cm_data)
                        env.update({"PATH": tmp + ":/usr/bin:/bin", "POD_IP": ip, "MQPAXOS_SERVERS": str(size),
                                    "MQPAXOS_DATA_DIR": os.path.join(tmp, "data")})
                        env = {k: v for k, v in env.items() if "$(" not in v}
                        r = subprocess.run([sh, "-c", cmd[2]], env=env, capture_output=True, text=True, timeout=10)
                        if host is None:
                            if r.returncode == 0:
                                ck.bad(where, o, "the entry point of server %s did not refuse to start with MQPAXOS_SERVERS=%d" % (own, size))
                            continue
                        want = "server id=%s password=/etc/mqpaxos/password/password metrics=%s:9101" % (own, host)
                        if r.returncode != 0 or r.stdout.strip() != want:
                            ck.bad(where, o, "pod %s-0 (POD_IP %s): the entry point ran %r (status %d), not %r" % (o["metadata"]["name"], ip, r.stdout.strip() or r.stderr.strip(), r.returncode, want))


def secret_file_ok(ck, where, emqx, f, what, secrets):
    """f, a (kind, name, key) of mounted_file, is a key of a Secret of make-secrets."""
    if not f:
        return
    if f[0] != "Secret":
        ck.bad(where, emqx, "%s must come from a Secret, not a %s" % (what, f[0]))
    elif secrets is not None:
        sec = secrets.get(f[1])
        if sec is None:
            ck.bad(where, emqx, "%s: Secret %s is not made by make-secrets" % (what, f[1]))
        elif f[2] not in (sec.get("stringData") or {}) and f[2] not in (sec.get("data") or {}):
            ck.bad(where, emqx, "%s: Secret %s has no key %s" % (what, f[1], f[2]))


def check_emqx_cluster_tls(ck, where, emqx, core, conf, mounted_file, by_kind, secrets):
    """The EMQX nodes' own traffic is TLS with mutual verification: the Erlang distribution
    (cluster.proto_dist = inet_tls, set where bin/emqx reads it at boot: the environment;
    its options file from a mounted ConfigMap naming a certificate, key and CA of a Secret,
    verify_peer on both sides, a client certificate required) and the cluster RPC (gen_rpc:
    rpc.driver = ssl with certificate, key and CA from a Secret; its ssl driver verifies the
    peer and requires a client certificate by itself)."""
    env = {e["name"]: e.get("value") for e in core.get("env") or []}
    proto = env.get("EMQX_CLUSTER__PROTO_DIST") or str(conf.get("cluster.proto_dist", "inet_tcp"))
    if proto not in ("inet_tls", "inet6_tls"):
        ck.bad(where, emqx, "cluster.proto_dist is %s: the Erlang distribution between EMQX nodes is not TLS (set EMQX_CLUSTER__PROTO_DIST=inet_tls)" % proto)
    optfile = env.get("EMQX_SSL_DIST_OPTFILE")
    if not optfile:
        ck.bad(where, emqx, "no EMQX_SSL_DIST_OPTFILE: the distribution would use EMQX's own etc/ssl_dist.conf (its test certificates)")
    else:
        f = mounted_file(optfile, "EMQX_SSL_DIST_OPTFILE")
        if f and f[0] != "ConfigMap":
            ck.bad(where, emqx, "EMQX_SSL_DIST_OPTFILE should come from the generated ConfigMap, not a %s" % f[0])
        elif f:
            cm = next((o for o in by_kind.get("ConfigMap", []) if o["metadata"]["name"] == f[1]), None)
            text = ((cm or {}).get("data") or {}).get(f[2])
            if text is None:
                ck.bad(where, emqx, "EMQX_SSL_DIST_OPTFILE: ConfigMap %s with key %s is not in the overlay" % (f[1], f[2]))
            else:
                body = re.sub(r"%[^\n]*", "", text)
                sides = {m.group(1): m.start() for m in re.finditer(r"\{\s*(server|client)\s*,", body)}
                if set(sides) != {"server", "client"}:
                    ck.bad(where, emqx, "ssl_dist.conf needs a server and a client entry")
                else:
                    first, second = sorted(sides, key=sides.get)
                    part = {first: body[sides[first]:sides[second]], second: body[sides[second]:]}
                    for side, opts in part.items():
                        if not re.search(r"\{\s*verify\s*,\s*verify_peer\s*\}", opts):
                            ck.bad(where, emqx, "ssl_dist.conf: the %s entry does not verify_peer: any node could join" % side)
                        for field in ("certfile", "keyfile", "cacertfile"):
                            m = re.search(r"\{\s*%s\s*,\s*\"([^\"]+)\"\s*\}" % field, opts)
                            if not m:
                                ck.bad(where, emqx, "ssl_dist.conf: the %s entry has no %s" % (side, field))
                            else:
                                secret_file_ok(ck, where, emqx, mounted_file(m.group(1), "ssl_dist.conf %s %s" % (side, field)), "ssl_dist.conf %s %s" % (side, field), secrets)
                    if not re.search(r"\{\s*fail_if_no_peer_cert\s*,\s*true\s*\}", part["server"]):
                        ck.bad(where, emqx, "ssl_dist.conf: the server entry does not set fail_if_no_peer_cert: a node without a certificate could connect")
    rpc = conf.get("rpc", {}) or {}
    if str(rpc.get("driver", "tcp")) != "ssl":
        ck.bad(where, emqx, "rpc.driver is %s: the cluster RPC between EMQX nodes (message forwarding) is not TLS" % rpc.get("driver", "tcp"))
    else:
        for field in ("certfile", "keyfile", "cacertfile"):
            path = rpc.get(field, None)
            if not path:
                ck.bad(where, emqx, "rpc.%s is not set" % field)
            else:
                secret_file_ok(ck, where, emqx, mounted_file(path, "rpc." + field), "rpc." + field, secrets)


def check_acl_users(ck, where, emqx, by_kind, secrets):
    """The users the EMQX ACL gives rights to are the users make-secrets gives passwords to,
    and a server user names the cluster (`<MQPAXOS_CLUSTER>-server<i>`, as `mqpaxos acl`
    writes it): a bare `server<i>` would be shared by every cluster on the broker."""
    cluster = None
    for o in by_kind.get("ConfigMap", []):
        cluster = cluster or (o.get("data") or {}).get("MQPAXOS_CLUSTER")
    acl = next((d.get("acl.conf") for o in by_kind.get("ConfigMap", []) for d in [o.get("data") or {}] if "acl.conf" in d), None)
    if acl is None or cluster is None:
        return
    acl_users = set(re.findall(r"\{username,\s*\"([^\"]+)\"\}", acl))
    for u in sorted(acl_users):
        m = re.fullmatch(r"(.*?)-?(server\d+)", u)
        if m and m.group(1) != cluster:
            ck.bad(where, emqx, "the ACL gives server rights to user %s: server users must be %s-%s (the cluster's name in it)" % (u, cluster, m.group(2)))
    sec = (secrets or {}).get("emqx-users")
    if sec is None:
        return
    csv = (sec.get("stringData") or {}).get("users.csv", "")
    csv_users = {line.split(",")[0] for line in csv.strip().splitlines()[1:] if line.strip()}
    for u in sorted(acl_users - csv_users - {"operator"}):
        ck.bad(where, emqx, "the ACL names user %s, which make-secrets gives no password (emqx-users)" % u)
    for u in sorted(csv_users):
        if re.fullmatch(r".*server\d+", u) and u not in acl_users:
            ck.bad(where, emqx, "make-secrets makes server user %s, which the ACL gives no server rights" % u)


def check_emqx(ck, where, emqx, by_kind, names, secrets):
    """EMQX: at least 2 cores; its configuration parses as HOCON and names the mounted files:
    the built-in database's bootstrap file (a key of the emqx-users Secret) and the file
    authorization rules (a key of the emqx-acl ConfigMap), with anything unmatched denied."""
    from pyhocon import ConfigFactory

    core = (emqx["spec"].get("coreTemplate") or {}).get("spec") or {}
    if core.get("replicas", 2) < 2:
        ck.bad(where, emqx, "EMQX needs at least 2 core nodes")
    if emqx["spec"].get("replicantTemplate"):
        ck.bad(where, emqx, "replicants would need the same extra volumes as the cores: not set up here")
    try:
        conf = ConfigFactory.parse_string((emqx["spec"].get("config") or {}).get("data", ""))
    except Exception as e:  # pyparsing's errors have no common base worth naming
        ck.bad(where, emqx, "spec.config.data is not valid HOCON: %s" % e)
        return
    volumes = {v["name"]: v for v in core.get("extraVolumes") or []}
    mounts = {m["mountPath"].rstrip("/"): volumes.get(m["name"]) for m in core.get("extraVolumeMounts") or []}

    def mounted_file(path, what):
        """The (kind, name, key) of the ConfigMap or Secret file at path, if it is one."""
        d, _, key = path.rpartition("/")
        v = mounts.get(d)
        if v is None:
            ck.bad(where, emqx, "%s %s is not in a mounted volume (mounts: %s)" % (what, path, sorted(mounts)))
            return None
        if "configMap" in v:
            return ("ConfigMap", v["configMap"]["name"], key)
        if "secret" in v:
            return ("Secret", v["secret"]["secretName"], key)
        ck.bad(where, emqx, "%s %s is on volume %s, neither a ConfigMap nor a Secret" % (what, path, v["name"]))
        return None

    authn = conf.get("authentication", [])
    if len(authn) != 1 or authn[0].get("backend", None) != "built_in_database" or authn[0].get("user_id_type", None) != "username":
        ck.bad(where, emqx, "authentication must be one built_in_database authenticator keyed by username")
    else:
        f = mounted_file(authn[0].get("bootstrap_file", ""), "bootstrap_file")
        if f and f[0] != "Secret":
            ck.bad(where, emqx, "bootstrap_file holds passwords: it must come from a Secret, not a %s" % f[0])
        elif f and secrets is not None:
            sec = secrets.get(f[1])
            if sec is None:
                ck.bad(where, emqx, "bootstrap_file: Secret %s is not made by make-secrets" % f[1])
            elif f[2] not in (sec.get("stringData") or {}) and f[2] not in (sec.get("data") or {}):
                ck.bad(where, emqx, "bootstrap_file: Secret %s has no key %s" % (f[1], f[2]))
            elif authn[0].get("bootstrap_type", "plain") != "plain" or not f[2].endswith(".csv"):
                ck.bad(where, emqx, "bootstrap_file must be a .csv file of plain passwords (what make-secrets writes)")
    authz = conf.get("authorization", {})
    sources = authz.get("sources", []) if authz else []
    if not authz or authz.get("no_match", None) != "deny" or [x.get("type", None) for x in sources] != ["file"]:
        ck.bad(where, emqx, "authorization must be one file source with no_match = deny")
    else:
        f = mounted_file(sources[0].get("path", ""), "authorization file")
        if f and f[0] != "ConfigMap":
            ck.bad(where, emqx, "the authorization file should come from the generated ConfigMap, not a %s" % f[0])
        elif f:
            cm = next((o for o in by_kind.get("ConfigMap", []) if o["metadata"]["name"] == f[1]), None)
            rules = ((cm or {}).get("data") or {}).get(f[2])
            if rules is None:
                ck.bad(where, emqx, "authorization file: ConfigMap %s with key %s is not in the overlay" % (f[1], f[2]))
            elif not rules.rstrip().endswith("{deny, all}."):
                ck.bad(where, emqx, "the authorization rules must end with {deny, all}.")
    max_packet = str(conf.get("mqtt.max_packet_size", "1MB"))
    m = re.fullmatch(r"(\d+)(KB|MB|GB)", max_packet)
    if not m or int(m.group(1)) * {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m.group(2)] < 16 << 20:
        ck.bad(where, emqx, "mqtt.max_packet_size %s is below mqpaxos' 16 MiB payload limit" % max_packet)
    # MQTT over TLS only: the ssl listener on 8883 with a certificate and key from a mounted
    # Secret of make-secrets; every plain listener (tcp, ws) off.
    listeners = conf.get("listeners", {}) or {}
    for kind in ("tcp", "ws"):
        for lname, l in (listeners.get(kind, {}) or {}).items():
            if l.get("enable", True):
                ck.bad(where, emqx, "listeners.%s.%s is enabled: plain MQTT would carry passwords in the clear (set enable = false)" % (kind, lname))
    ssl = (listeners.get("ssl", {}) or {}).get("default", None)
    if not ssl or not ssl.get("enable", True):
        ck.bad(where, emqx, "listeners.ssl.default must be enabled: servers and clients connect with mqtts://")
    else:
        if not str(ssl.get("bind", "0.0.0.0:8883")).endswith(":8883"):
            ck.bad(where, emqx, "listeners.ssl.default.bind %s is not port 8883 (the port MQPAXOS_BROKER and the NetworkPolicy name)" % ssl.get("bind"))
        opts = ssl.get("ssl_options", {}) or {}
        for field in ("certfile", "keyfile"):
            path = opts.get(field, None)
            if not path:
                ck.bad(where, emqx, "listeners.ssl.default.ssl_options.%s is not set: EMQX would serve its built-in test certificate" % field)
                continue
            f = mounted_file(path, "ssl_options." + field)
            if f and f[0] != "Secret":
                ck.bad(where, emqx, "ssl_options.%s must come from a Secret, not a %s" % (field, f[0]))
            elif f and secrets is not None:
                sec = secrets.get(f[1])
                if sec is None:
                    ck.bad(where, emqx, "ssl_options.%s: Secret %s is not made by make-secrets" % (field, f[1]))
                elif f[2] not in (sec.get("stringData") or {}) and f[2] not in (sec.get("data") or {}):
                    ck.bad(where, emqx, "ssl_options.%s: Secret %s has no key %s" % (field, f[1], f[2]))
    for e in core.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref and secrets is not None and ref["name"] not in secrets:
            ck.bad(where, emqx, "env %s: Secret %s is not made by make-secrets" % (e["name"], ref["name"]))
    check_emqx_cluster_tls(ck, where, emqx, core, conf, mounted_file, by_kind, secrets)
    check_acl_users(ck, where, emqx, by_kind, secrets)
    for v in core.get("extraVolumes") or []:
        if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
            ck.bad(where, emqx, "extraVolumes %s: ConfigMap %s is not in the overlay" % (v["name"], v["configMap"]["name"]))
        if "secret" in v and secrets is not None and v["secret"]["secretName"] not in secrets:
            ck.bad(where, emqx, "extraVolumes %s: Secret %s is not made by make-secrets" % (v["name"], v["secret"]["secretName"]))


def check_chaos(ck, where, objs, overlay_objs):
    """The experiments must select pods that the overlay (7 servers) really creates."""
    servers_sts = server_statefulsets(overlay_objs)
    emqx = next((o for o in overlay_objs if o.get("kind") == "EMQX"), None)
    if not servers_sts or not emqx:
        ck.bad(where, {"kind": "?", "metadata": {"name": "?"}}, "the overlay to check the experiments against has no server StatefulSets or no EMQX")
        return
    ns = servers_sts[0]["metadata"].get("namespace")
    pods = {"%s-%d" % (o["metadata"]["name"], k) for o in servers_sts for k in range(o["spec"].get("replicas", 1))}
    server_labels = dict(SERVER_LABELS)
    n_servers = len(pods)
    emqx_labels = {"apps.emqx.io/instance": emqx["metadata"]["name"]}
    emqx_labels.update(((emqx["spec"].get("coreTemplate") or {}).get("metadata") or {}).get("labels") or {})

    def selects(sel, labels, obj, at):
        for n in sel.get("namespaces") or []:
            if n != ns:
                ck.bad(where, obj, "%s: namespace %s is not the deployment's (%s)" % (at, n, ns))
        for k, v in (sel.get("labelSelectors") or {}).items():
            if labels.get(k) != v:
                ck.bad(where, obj, "%s: label %s=%s selects none of the pods meant" % (at, k, v))
        for n, names in (sel.get("pods") or {}).items():
            if n != ns:
                ck.bad(where, obj, "%s: pods in namespace %s, the deployment's is %s" % (at, n, ns))
            for p in names:
                if p not in pods:
                    ck.bad(where, obj, "%s: pod %s is not one of the 7-server overlay's %s" % (at, p, sorted(pods)))

    def net(spec, obj, at):
        selects(spec.get("selector") or {}, server_labels, obj, at + " selector")
        if spec.get("target"):
            selects(spec["target"].get("selector") or {}, emqx_labels, obj, at + " target")
        if spec.get("action") == "partition" and spec.get("mode") == "fixed":
            n = int(spec.get("value", "0"))
            if not (0 < n < n_servers / 2):
                ck.bad(where, obj, "%s: cutting %d of %d servers off the broker leaves the rest without a majority (or cuts nobody off)" % (at, n, n_servers))
        if spec.get("action") == "partition" and (spec.get("selector") or {}).get("pods"):
            cut = sum(len(v) for v in spec["selector"]["pods"].values())
            if not (0 < cut < n_servers / 2):
                ck.bad(where, obj, "%s: cutting %d of %d servers off is not a minority" % (at, cut, n_servers))

    for o in objs:
        if o.get("kind") == "NetworkChaos":
            net(o["spec"], o, "spec")
        elif o.get("kind") == "Workflow":
            for t in o["spec"].get("templates") or []:
                if t.get("templateType") == "NetworkChaos":
                    net(t.get("networkChaos") or {}, o, "template " + t["name"])


def check_dockerfile(ck, path):
    try:
        import dockerfile  # the buildkit parser, from the PyPI package "dockerfile"
    except ImportError:
        ck.bad("dockerfile", path, "the Python package dockerfile is not installed")
        return
    obj = {"kind": "Dockerfile", "metadata": {"name": os.path.relpath(path)}}
    try:
        cmds = dockerfile.parse_file(path)
    except dockerfile.GoParseError as e:
        ck.bad("dockerfile", obj, "does not parse: %s" % e)
        return
    stages = [i for i, c in enumerate(cmds) if c.cmd.upper() == "FROM"]
    if len(stages) < 2:
        ck.bad("dockerfile", obj, "must be multi-stage (a builder and a runtime stage)")
        return
    last = cmds[stages[-1]:]
    if not any(c.cmd.upper() == "RUN" and "cargo build --release" in " ".join(c.value) and "-p mqpaxos" in " ".join(c.value) for c in cmds[: stages[-1]]):
        ck.bad("dockerfile", obj, "the builder stage must run `cargo build --release ... -p mqpaxos`")
    users = [c.value[0] for c in last if c.cmd.upper() == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        ck.bad("dockerfile", obj, "the runtime stage must switch to a non-root USER")
    if not any(c.cmd.upper() == "HEALTHCHECK" and c.value and c.value[0].upper() == "CMD" for c in last):
        ck.bad("dockerfile", obj, "the runtime stage needs a HEALTHCHECK CMD")
    if not any(c.cmd.upper() == "COPY" and any(f.startswith("--from=") for f in c.flags) for c in last):
        ck.bad("dockerfile", obj, "the runtime stage must COPY the binary --from the builder")


def check_dashboard(ck, path, metrics_doc):
    obj = {"kind": "GrafanaDashboard", "metadata": {"name": os.path.relpath(path)}}
    try:
        with open(path) as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        ck.bad("dashboard", obj, "is not JSON: %s" % e)
        return
    documented = None
    if metrics_doc and os.path.exists(metrics_doc):
        with open(metrics_doc) as f:
            documented = set(re.findall(r"\bmqpaxos_[a-z_]+", f.read()))
    exprs = []
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            ck.bad("dashboard", obj, "panel %r has no query" % p.get("title"))
        exprs += [(p.get("title"), t.get("expr", "")) for t in p.get("targets", [])]
    for title, e in exprs:
        for m in re.findall(r"\bmqpaxos_[a-z_]+", e):
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            if documented is not None and base not in documented and m not in documented:
                ck.bad("dashboard", obj, "panel %r uses %s, which %s does not list" % (title, m, os.path.relpath(metrics_doc)))
    wanted = {
        "incoming messages per node": r'mqpaxos_messages_total\{[^}]*direction="in"',
        "outgoing messages per node": r'mqpaxos_messages_total\{[^}]*direction="out"',
        "client latency": r"histogram_quantile\(.*mqpaxos_command_latency_seconds_bucket",
    }
    for what, rx in wanted.items():
        if not any(re.search(rx, e) for _, e in exprs):
            ck.bad("dashboard", obj, "no panel shows %s" % what)


# --------------------------------------------------------------------------------------
# Self-test: the validator must reject these.

BROKEN = [  # (what, YAML, a regular expression the complaint must match)
    ("a StatefulSet with a misspelt field and a string for replicas", """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: broken}
spec:
  replicas: "three"
  serviceName: broken
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: x, imagePullPolicy: IfNotPresent}]
      restartPolicyy: Always
""", r"restartPolicyy.*unexpected"),
    ("an EMQX with a string for the core replicas", """
apiVersion: apps.emqx.io/v2beta1
kind: EMQX
metadata: {name: broken}
spec:
  image: emqx/emqx:5.8.6
  coreTemplate: {spec: {replicas: two}}
""", r"'two' is not of type 'integer'"),
    ("an EMQX with an unknown field", """
apiVersion: apps.emqx.io/v2beta1
kind: EMQX
metadata: {name: broken}
spec:
  image: emqx/emqx:5.8.6
  coreTemplat: {spec: {replicas: 2}}
""", r"coreTemplat' was unexpected"),
    ("an EMQX with minAvailable and maxUnavailable (the CRD's CEL rule)", """
apiVersion: apps.emqx.io/v2beta1
kind: EMQX
metadata: {name: broken}
spec:
  image: emqx/emqx:5.8.6
  coreTemplate: {spec: {replicas: 2, minAvailable: 1, maxUnavailable: 1}}
""", r"minAvailable.*maxUnavailable"),
    ("a NetworkChaos with an unknown action", """
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {name: broken, namespace: x}
spec:
  action: parition
  mode: all
  selector: {namespaces: [x]}
""", r"'parition' is not one of"),
    ("a Workflow whose entry names a missing template", """
apiVersion: chaos-mesh.org/v1alpha1
kind: Workflow
metadata: {name: broken, namespace: x}
spec:
  entry: missing
  templates:
    - {name: pause, templateType: Suspend, deadline: 10s}
""", r"entry 'missing' is not a template"),
    ("a kind with no schema", """
apiVersion: example.com/v1
kind: Gadget
metadata: {name: broken}
spec: {}
""", r"no schema for example.com/v1 Gadget"),
    ("a Service named with capitals", """
apiVersion: v1
kind: Service
metadata: {name: Broken}
spec: {ports: [{port: 80}]}
""", r"'Broken' is not a DNS-1123 label"),
]
GOOD = [
    ("a ConfigMap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {a: b}\n"),
    ("an EMQX with two cores", "apiVersion: apps.emqx.io/v2beta1\nkind: EMQX\nmetadata: {name: good}\nspec: {image: emqx/emqx:5.8.6, coreTemplate: {spec: {replicas: 2, minAvailable: 1}}}\n"),
    ("a NetworkChaos", "apiVersion: chaos-mesh.org/v1alpha1\nkind: NetworkChaos\nmetadata: {name: good, namespace: x}\nspec: {action: loss, mode: all, selector: {namespaces: [x]}, loss: {loss: '20'}, duration: 1m}\n"),
]


# --------------------------------------------------------------------------------------
# Self-test of the deployment's rules: broken variants of a rendered overlay (the largest),
# each with the complaints (regular expressions) it must draw.


def _kind(objs, kind, name=None):
    return [o for o in objs if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]


def _one_server_too_few(objs):
    last = server_statefulsets(objs)[-1]
    for o in _kind(objs, "PodDisruptionBudget"):
        o["spec"]["minAvailable"] = 1
    return [o for o in objs if o is not last]


def _server_mounts_another(objs):
    sts = server_statefulsets(objs)[1]
    sts["spec"]["template"]["spec"]["volumes"].append(
        {"name": "other", "projected": {"sources": [{"secret": {"name": "mqpaxos-server1", "items": [{"key": "password", "path": "server1"}]}}]}})


def _broker_plaintext(objs):
    for o in _kind(objs, "ConfigMap"):
        if "MQPAXOS_BROKER" in (o.get("data") or {}):
            o["data"]["MQPAXOS_BROKER"] = "mqtt://emqx-listeners:1883"


def _client_plaintext(objs):
    d = _kind(objs, "Deployment", "mqpaxos-client1")[0]
    d["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MQPAXOS_BROKER", "value": "mqtt://emqx-listeners:1883"})


def _no_default_deny(objs):
    return [o for o in objs if not (o.get("kind") == "NetworkPolicy" and o["metadata"]["name"] == "default-deny")]


def _metrics_open(objs):
    for p in _kind(objs, "NetworkPolicy", "mqpaxos-metrics"):
        p["spec"]["ingress"][0]["from"].append({"podSelector": {}})
        p["spec"]["ingress"].append({"ports": [{"port": 9101}]})


def _server_wrong_id(objs):
    sts = server_statefulsets(objs)[1]
    for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]:
        if e["name"] == "MQPAXOS_ID":
            e["value"] = "1"


def _emqx_plain_listener(objs):
    e = _kind(objs, "EMQX")[0]
    e["spec"]["config"]["data"] = e["spec"]["config"]["data"].replace("listeners.tcp.default.enable = false", "listeners.tcp.default.enable = true")


def _emqx_dist_plain(objs):
    e = _kind(objs, "EMQX")[0]
    env = e["spec"]["coreTemplate"]["spec"]["env"]
    e["spec"]["coreTemplate"]["spec"]["env"] = [x for x in env if x["name"] != "EMQX_CLUSTER__PROTO_DIST"]


def _emqx_dist_unverified(objs):
    for o in _kind(objs, "ConfigMap"):
        if "ssl_dist.conf" in (o.get("data") or {}):
            o["data"]["ssl_dist.conf"] = o["data"]["ssl_dist.conf"].replace("verify_peer", "verify_none")


def _emqx_rpc_plain(objs):
    e = _kind(objs, "EMQX")[0]
    e["spec"]["config"]["data"] = e["spec"]["config"]["data"].replace("driver = ssl", "driver = tcp")


def _metrics_no_token(objs):
    for sts in server_statefulsets(objs):
        c = sts["spec"]["template"]["spec"]["containers"][0]
        c["env"] = [e for e in c["env"] if e["name"] != "MQPAXOS_METRICS_TOKEN_FILE"]


def _acl_shared_server_users(objs):
    for o in _kind(objs, "ConfigMap"):
        if "acl.conf" in (o.get("data") or {}):
            o["data"]["acl.conf"] = re.sub(r'\{username, "[^"]*-(server\d+)"\}', r'{username, "\1"}', o["data"]["acl.conf"])


OVERLAY_MUTANTS = [
    ("one server StatefulSet too few and a minority PDB", _one_server_too_few, [r"the server StatefulSets are", r"minAvailable is 1"]),
    ("a server pod that also mounts server1's Secret", _server_mounts_another, [r"references Secret mqpaxos-server1, another user's password"]),
    ("an mqtt:// broker URL in the ConfigMap", _broker_plaintext, [r"MQPAXOS_BROKER 'mqtt://emqx-listeners:1883' is not TLS"]),
    ("an mqtt:// broker URL in a client's env", _client_plaintext, [r"container bench: MQPAXOS_BROKER 'mqtt://[^']*' is not TLS"]),
    ("the namespace without its default-deny NetworkPolicy", _no_default_deny, [r"no default-deny NetworkPolicy"]),
    ("the metrics open to the namespace and to anyone", _metrics_open, [r"lets \{\"podSelector\": \{\}\} into the server pods", r"lets anyone into the server pods"]),
    ("server2's StatefulSet starting server 1", _server_wrong_id, [r"MQPAXOS_ID is '1', the StatefulSet is server 2's"]),
    ("EMQX's plain TCP listener on", _emqx_plain_listener, [r"listeners\.tcp\.default is enabled"]),
    ("the Erlang distribution between EMQX nodes over plain TCP", _emqx_dist_plain, [r"cluster\.proto_dist is inet_tcp"]),
    ("the distribution's TLS without peer verification", _emqx_dist_unverified, [r"the server entry does not verify_peer", r"the client entry does not verify_peer"]),
    ("the cluster RPC over plain TCP", _emqx_rpc_plain, [r"rpc\.driver is tcp"]),
    ("the servers' metrics without a token", _metrics_no_token, [r"no MQPAXOS_METRICS_TOKEN_FILE"]),
    ("server users shared by every cluster (server<i>)", _acl_shared_server_users, [r"server users must be mqpaxos-server1", r"make-secrets makes server user mqpaxos-server1, which the ACL gives no server rights"]),
]


def self_test(crds, kube_versions):
    failures = []
    for what, text, reason in BROKEN:
        ck = Checker(crds, kube_versions)
        ck.objects("self-test", list(yaml.load_all(text, Loader=Loader)))
        if not any(re.search(reason, msg) for _, _, msg in ck.problems):
            failures.append("%s was not rejected for /%s/ (problems: %s)" % (what, reason, [m for _, _, m in ck.problems]))
    for what, text in GOOD:
        ck = Checker(crds, kube_versions)
        ck.objects("self-test", list(yaml.load_all(text, Loader=Loader)))
        if ck.problems:
            failures.append("%s was rejected: %s" % (what, [m for _, _, m in ck.problems]))
    if failures:
        for f in failures:
            print("SELF-TEST FAILED (the validator does not catch what it must): " + f)
        return False
    print("self-test: %d broken objects rejected for the right reason, %d good ones accepted" % (len(BROKEN), len(GOOD)))
    return True

# --------------------------------------------------------------------------------------


class Unreadable(Exception):
    pass


def load(path):
    try:
        with open(path) as f:
            return [d for d in yaml.load_all(f, Loader=Loader) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        raise Unreadable("%s: %s" % (path, e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crds", required=True, help="directory of CRD YAML files")
    ap.add_argument("--kube-version", action="append", required=True, help="Kubernetes version to validate against (repeat)")
    ap.add_argument("--overlay", action="append", default=[], metavar="NAME=FILE=SERVERS", help="a rendered overlay and its cluster size")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=FILE", help="other objects (chaos experiments, dashboard, secrets)")
    ap.add_argument("--secrets", metavar="FILE", help="the Secrets make-secrets prints: every Secret the overlays use must be among them")
    ap.add_argument("--chaos", metavar="FILE=OVERLAY", help="check the chaos experiments in FILE against the overlay named OVERLAY")
    ap.add_argument("--dockerfile")
    ap.add_argument("--dashboard")
    ap.add_argument("--metrics-doc", help="the document listing the metrics (docs/operations.md)")
    ap.add_argument("--self-test", action="store_true", help="first make sure that broken objects are rejected")
    ap.add_argument("--overlays-expected", type=int, help="how many overlays there should have been (some may not have rendered)")
    ap.add_argument("--earlier-problems", type=int, default=0, help="problems the caller found already, for the summary")
    a = ap.parse_args()

    crds = CrdSchemas(a.crds)
    if a.self_test and not self_test(crds, a.kube_version):
        return 1
    ck = Checker(crds, a.kube_version)
    count, rendered = 0, {}
    secret_names = None
    if a.secrets:
        secrets = load(a.secrets)
        ck.objects("secrets", secrets)
        count += len(secrets)
        secret_names = {s["metadata"]["name"]: s for s in secrets if s.get("kind") == "Secret"}
    for spec in a.overlay:
        name, path, servers = spec.split("=")
        objs = load(path)
        rendered[name] = objs
        ck.objects(name, objs)
        check_overlay(ck, name, objs, int(servers), secret_names)
        check_scripts(ck, name, objs, int(servers))
        count += len(objs)
    for spec in a.set:
        name, path = spec.split("=", 1)
        objs = load(path)
        ck.objects(name, objs)
        count += len(objs)
    if a.self_test and a.overlay:
        # The deployment's own rules must bite too: each mutant of the largest overlay must be
        # refused for the reason given.
        name, _, servers = a.overlay[-1].split("=")
        failures = []
        for what, mutate, reason in OVERLAY_MUTANTS:
            mutant = copy.deepcopy(rendered[name])
            mutant = mutate(mutant) or mutant
            probe = Checker(crds, a.kube_version)
            check_overlay(probe, "self-test", mutant, int(servers), secret_names)
            found = [m for _, _, m in probe.problems]
            if not all(any(re.search(r, m) for m in found) for r in reason):
                failures.append("%s was not refused for %s (problems: %s)" % (what, reason, found))
        if failures:
            for f in failures:
                print("SELF-TEST FAILED (the deployment rules do not catch what they must): " + f)
            return 1
        print("self-test: %d broken variants of the %s overlay refused for the right reason" % (len(OVERLAY_MUTANTS), name))
    if a.chaos:
        path, overlay = a.chaos.split("=")
        check_chaos(ck, "chaos-mesh", load(path), rendered.get(overlay, []))
    if a.dockerfile:
        check_dockerfile(ck, a.dockerfile)
    if a.dashboard:
        check_dashboard(ck, a.dashboard, a.metrics_doc)

    for where, what, msg in ck.problems:
        print("INVALID %s: %s: %s" % (where, what, msg))
    if crds.unchecked_cel:
        print("note: %d CEL rule(s) in the CRDs are not evaluated offline" % len(crds.unchecked_cel))
    bad = len({(w, o) for w, o, _ in ck.problems}) + a.earlier_problems
    overlays = "%d overlays" % len(a.overlay)
    if a.overlays_expected is not None and a.overlays_expected != len(a.overlay):
        overlays = "%d of %d overlays" % (len(a.overlay), a.overlays_expected)
    others = [s.split("=")[0] for s in a.set] + (["secrets"] if a.secrets else [])
    print(
        "validated %d objects in %s (+ %s) against Kubernetes %s: %d invalid"
        % (count, overlays, ", ".join(others) or "nothing else", " and ".join(a.kube_version), bad)
    )
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Unreadable as e:
        print("INVALID %s" % e)
        print("validation stopped: a file is not readable YAML")
        sys.exit(1)
