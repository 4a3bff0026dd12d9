#!/usr/bin/env python3
"""Checks the security of the rendered Kubernetes overlays (what `kubectl kustomize deploy/k8s/overlays/<env>`
prints), beyond what the API schema says:

  - every pod runs locked down: each container (init containers too), with what its pod sets, has runAsNonRoot,
    a non-zero user, readOnlyRootFilesystem, allowPrivilegeEscalation false, capabilities drop ALL, seccomp
    RuntimeDefault, no privileged mode; the pod uses no host namespace and mounts no service-account token;
  - NetworkPolicies deny by default in both directions (a policy selecting every pod, Ingress and Egress, no
    rule) and let through exactly the flows the system needs: evaluated like a CNI would for the needed flows
    (each must pass) and for flows nobody needs (each must be refused);
  - prod requires its Secrets: graph-api reads its read/write/admin tokens and ws-gateway its read tokens from
    files of a non-optional Secret volume, nothing sets CODEGRAPH__AUTH__ALLOW_OPEN=true or a token in clear,
    every service has CODEGRAPH__REDIS__CA_FILE and CODEGRAPH__TELEMETRY__OTLP_CA_FILE (stream-consumer also the
    sinks' CA files, graph-api FalkorDB's, which it reads for /api/graph/query and MCP's cypher_query) in a
    non-optional volume, its Redis URL from a required key, and nothing in prod speaks plain text to a store or
    the collector (redis://, bolt://, http:// OTLP).

Usage: check_k8s_security.py dev.yaml prod.yaml   (the two renders; exit 0 when everything holds, else one line
       per problem)
       check_k8s_security.py --self-test dev.yaml prod.yaml   (breaks each rule in a copy of the renders and
       checks that the checks notice: exit 0 when every break is caught)
"""
import copy
import ipaddress
import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SERVICES = ["graph-api", "ws-gateway", "stream-consumer", "analysis-worker"]


def load(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]


def pod_specs(docs):
    """(name, pod template metadata, pod spec) of every workload (CronJobs and bare Pods too)."""
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind in WORKLOADS:
            t = d["spec"]["template"]
            yield f"{kind}/{name}", t.get("metadata", {}), t["spec"]
        elif kind == "CronJob":
            t = d["spec"]["jobTemplate"]["spec"]["template"]
            yield f"{kind}/{name}", t.get("metadata", {}), t["spec"]
        elif kind == "Pod":
            yield f"Pod/{name}", d["metadata"], d["spec"]


def check_pods(docs, env):
    problems = []
    for where, _, spec in pod_specs(docs):
        pod = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{env} {where}: automountServiceAccountToken must be false")
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host):
                problems.append(f"{env} {where}: {host} is on")
        for c in spec.get("initContainers", []) + spec["containers"]:
            ctx = c.get("securityContext") or {}
            at = f"{env} {where} container {c['name']}"

            def effective(key):
                return ctx.get(key, pod.get(key))

            if effective("runAsNonRoot") is not True:
                problems.append(f"{at}: runAsNonRoot must be true")
            if effective("runAsUser") == 0:
                problems.append(f"{at}: runAsUser is 0")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem must be true")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation must be false")
            if ctx.get("privileged"):
                problems.append(f"{at}: privileged")
            if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{at}: capabilities must drop ALL")
            if ((ctx.get("capabilities") or {}).get("add")):
                problems.append(f"{at}: adds capabilities")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile must be RuntimeDefault")
    return problems


# --- NetworkPolicy evaluation --------------------------------------------------------------------------------

def selects(selector, labels):
    """Kubernetes label selector semantics; None (absent) selects nothing, {} everything."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Endpoint:
    """A pod (namespace, its labels, its named ports) or an address outside the cluster."""

    def __init__(self, namespace=None, labels=None, ports=None, ip=None):
        self.namespace, self.labels, self.ports, self.ip = namespace, labels or {}, ports or {}, ip

    def ns_labels(self):
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


def peer_matches(peer, policy_ns, ep):
    if "ipBlock" in peer:
        if ep.ip is None:
            return False
        block = peer["ipBlock"]
        addr = ipaddress.ip_address(ep.ip)
        return addr in ipaddress.ip_network(block["cidr"]) and not any(
            addr in ipaddress.ip_network(x) for x in block.get("except") or []
        )
    if ep.ip is not None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], ep.ns_labels()):
            return False
    elif ep.namespace != policy_ns:
        return False
    return selects(peer.get("podSelector", {}), ep.labels)


def port_matches(ports, port, protocol, dest):
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        want = p.get("port")
        if want is None or want == port or (isinstance(want, str) and dest.ports.get(want) == port):
            return True
    return False


def allowed(policies, src, dst, port, protocol="TCP"):
    """Whether the policies let src open a connection to dst:port (egress of src and ingress of dst)."""

    def side(direction, subject, other):
        key = "egress" if direction == "Egress" else "ingress"
        peer_key = "to" if direction == "Egress" else "from"
        applying = [
            p for p in policies
            if subject.ip is None and p["metadata"]["namespace"] == subject.namespace
            and direction in p["spec"].get("policyTypes", ["Ingress"])
            and selects(p["spec"].get("podSelector", {}), subject.labels)
        ]
        if subject.ip is not None or not applying:
            return True  # outside the cluster, or no policy isolates it
        for p in applying:
            for rule in p["spec"].get(key) or []:
                peers = rule.get(peer_key)
                if (not peers or any(peer_matches(x, p["metadata"]["namespace"], other) for x in peers)) and \
                        port_matches(rule.get("ports"), port, protocol, dst):
                    return True
        return False

    return side("Egress", src, dst) and side("Ingress", dst, src)


def endpoints(docs, namespace):
    """The pods of the render by app name, with their labels and named ports."""
    pods = {}
    for _, meta, spec in pod_specs(docs):
        labels = meta.get("labels") or {}
        ports = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", []) if "name" in p}
        pods[labels.get("app.kubernetes.io/name")] = Endpoint(namespace, labels, ports)
    return pods


def check_network(docs, env):
    problems = []
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    namespace = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
    for p in policies:
        p["metadata"].setdefault("namespace", namespace)
    deny_all = [
        p for p in policies
        if p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) >= {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    if not deny_all:
        problems.append(f"{env}: no default-deny NetworkPolicy (podSelector {{}}, Ingress and Egress, no rules)")
    pods = endpoints(docs, namespace)
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"})
    ingress_controller = Endpoint("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    prometheus = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"})
    collector = Endpoint("observability", {"app.kubernetes.io/name": "opentelemetry-collector"})
    outsider = Endpoint("default", {"app": "anything"})
    external = {}
    for p in policies:
        for rule in p["spec"].get("egress") or []:
            for peer in rule.get("to") or []:
                if "ipBlock" in peer:
                    net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    external[p["metadata"]["name"], str(rule.get("ports"))] = Endpoint(ip=str(net.network_address))
    if "redis" in pods:
        redis = pods["redis"]
    else:
        redis = next((e for (name, _), e in external.items() if name == "services-to-redis"), None)
        if redis is None:
            problems.append(f"{env}: no Redis pod and no egress rule to an external Redis")
            return problems
    falkordb = pods.get("falkordb")
    memgraph = pods.get("memgraph")
    needed, refused = [], []
    for name, ep in pods.items():
        needed.append((f"{name} → DNS", ep, dns, 53, "UDP"))
    for s in SERVICES:
        needed.append((f"{s} → Redis", pods[s], redis, 6379, "TCP"))
        needed.append((f"{s} → Redis TLS", pods[s], redis, 6380, "TCP"))
        needed.append((f"Prometheus → {s} /metrics", prometheus, pods[s], pods[s].ports["http"], "TCP"))
        needed.append((f"{s} → OTLP collector", pods[s], collector, 4318, "TCP"))
        refused.append((f"outsider → {s}", outsider, pods[s], pods[s].ports["http"], "TCP"))
        refused.append((f"{s} → the internet", pods[s], Endpoint(ip="93.184.216.34"), 443, "TCP"))
    for s in ["graph-api", "ws-gateway", "dashboard"]:
        needed.append((f"ingress controller → {s}", ingress_controller, pods[s], pods[s].ports["http"], "TCP"))
    refused.append(("ingress controller → stream-consumer", ingress_controller, pods["stream-consumer"], 8002, "TCP"))
    refused.append(("ingress controller → analysis-worker", ingress_controller, pods["analysis-worker"], 8003, "TCP"))
    needed.append(("dashboard → graph-api", pods["dashboard"], pods["graph-api"], 8000, "TCP"))
    needed.append(("dashboard → ws-gateway", pods["dashboard"], pods["ws-gateway"], 8001, "TCP"))
    refused.append(("dashboard → Redis", pods["dashboard"], redis, 6379, "TCP"))
    refused.append(("ws-gateway → graph-api", pods["ws-gateway"], pods["graph-api"], 8000, "TCP"))
    if redis.ip is None:
        # An external Redis is guarded by its own firewall (see the prod overlay), not by these policies.
        refused.append(("outsider → Redis", outsider, redis, 6379, "TCP"))
    # graph-api reads FalkorDB (read-only Cypher), never Memgraph; no other service or the dashboard reaches a sink.
    if falkordb and memgraph:
        needed.append(("stream-consumer → FalkorDB", pods["stream-consumer"], falkordb, 6379, "TCP"))
        needed.append(("stream-consumer → Memgraph", pods["stream-consumer"], memgraph, 7687, "TCP"))
        needed.append(("graph-api → FalkorDB", pods["graph-api"], falkordb, 6379, "TCP"))
        refused.append(("graph-api → Memgraph", pods["graph-api"], memgraph, 7687, "TCP"))
        refused.append(("outsider → FalkorDB", outsider, falkordb, 6379, "TCP"))
        for s in ["ws-gateway", "analysis-worker", "dashboard"]:
            refused.append((f"{s} → FalkorDB", pods[s], falkordb, 6379, "TCP"))
            refused.append((f"{s} → Memgraph", pods[s], memgraph, 7687, "TCP"))
    else:
        sinks = {key: e for key, e in external.items() if key[0] == "stream-consumer-to-sinks"}
        if len(sinks) < 2:
            problems.append(f"{env}: stream-consumer has no egress to both external sinks")
        # The rule naming 7687 is Memgraph's, the other FalkorDB's.
        falkordb_ext = [e for (_, ports), e in sinks.items() if "7687" not in ports]
        memgraph_ext = [e for (_, ports), e in sinks.items() if "7687" in ports]
        for sink in falkordb_ext:
            needed.append((f"graph-api → external FalkorDB {sink.ip}", pods["graph-api"], sink, 6380, "TCP"))
        for sink in memgraph_ext:
            refused.append((f"graph-api → external Memgraph {sink.ip}", pods["graph-api"], sink, 7687, "TCP"))
        for sink in sinks.values():
            for s in ["ws-gateway", "analysis-worker", "dashboard"]:
                refused.append((f"{s} → external sink {sink.ip}", pods[s], sink, 7687, "TCP"))
                refused.append((f"{s} → external sink {sink.ip} TLS", pods[s], sink, 6380, "TCP"))
    for what, src, dst, port, proto in needed:
        if not allowed(policies, src, dst, port, proto):
            problems.append(f"{env}: needed flow refused: {what} ({proto} {port})")
    for what, src, dst, port, proto in refused:
        if allowed(policies, src, dst, port, proto):
            problems.append(f"{env}: unneeded flow allowed: {what} ({proto} {port})")
    return problems


# --- prod's required Secrets ---------------------------------------------------------------------------------

def mounted_from(spec, container, path):
    """The volume (dict) whose mount holds `path`, or None."""
    for m in container.get("volumeMounts", []):
        if path.startswith(m["mountPath"].rstrip("/") + "/"):
            return next((v for v in spec.get("volumes", []) if v["name"] == m["name"]), None)
    return None


def check_prod_secrets(docs):
    problems = []
    deployments = {name.split("/", 1)[1]: spec for name, _, spec in pod_specs(docs) if name.startswith("Deployment/")}
    plain = {
        "CODEGRAPH__TELEMETRY__OTLP_ENDPOINT": "http://",
        "CODEGRAPH__SINKS__FALKORDB__URL": "redis://",
        "CODEGRAPH__FALKORDB__URL": "redis://",
        "CODEGRAPH__SINKS__MEMGRAPH__URL": "bolt://",
    }
    for d in docs:
        if d["kind"] == "ConfigMap":
            for k, v in (d.get("data") or {}).items():
                if k in plain and str(v).startswith(plain[k]):
                    problems.append(f"prod ConfigMap/{d['metadata']['name']}: {k} is plain text ({v})")
                if k == "CODEGRAPH__AUTH__ALLOW_OPEN" and str(v).lower() == "true":
                    problems.append(f"prod ConfigMap/{d['metadata']['name']}: CODEGRAPH__AUTH__ALLOW_OPEN=true")
                if k.endswith("_TOKENS") and v:
                    problems.append(f"prod ConfigMap/{d['metadata']['name']}: a token in clear ({k})")
    wanted = {
        "graph-api": ["READ", "WRITE", "ADMIN"],
        "ws-gateway": ["READ"],
        "stream-consumer": [],
        "analysis-worker": [],
    }
    for name, scopes in wanted.items():
        spec = deployments.get(name)
        if spec is None:
            problems.append(f"prod: no Deployment {name}")
            continue
        c = spec["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        for e in env.values():
            if e["name"] == "CODEGRAPH__AUTH__ALLOW_OPEN" and str(e.get("value")).lower() == "true":
                problems.append(f"prod {name}: CODEGRAPH__AUTH__ALLOW_OPEN=true")
            if e["name"].endswith("_TOKENS") and e.get("value"):
                problems.append(f"prod {name}: a token in clear ({e['name']})")
            if e["name"] in plain and str(e.get("value", "")).startswith(plain[e["name"]]):
                problems.append(f"prod {name}: {e['name']} is plain text ({e['value']})")
        for scope in scopes:
            var = f"CODEGRAPH__AUTH__{scope}_TOKENS_FILE"
            if var not in env:
                problems.append(f"prod {name}: {var} is not set")
                continue
            volume = mounted_from(spec, c, env[var].get("value", ""))
            secret = (volume or {}).get("secret")
            if not secret:
                problems.append(f"prod {name}: {var} is not in a mounted Secret")
            elif secret.get("optional") is True:
                problems.append(f"prod {name}: the Secret {secret.get('secretName')} of {var} is optional")
        cas = ["CODEGRAPH__REDIS__CA_FILE", "CODEGRAPH__TELEMETRY__OTLP_CA_FILE"]
        if name == "stream-consumer":
            cas += ["CODEGRAPH__SINKS__FALKORDB__CA_FILE", "CODEGRAPH__SINKS__MEMGRAPH__CA_FILE"]
        if name == "graph-api":
            cas += ["CODEGRAPH__FALKORDB__CA_FILE"]
        for var in cas:
            ca = env.get(var)
            volume = mounted_from(spec, c, (ca or {}).get("value", "")) if ca else None
            source = (volume or {}).get("configMap") or (volume or {}).get("secret")
            if not source:
                problems.append(f"prod {name}: {var} is not a file of a mounted ConfigMap/Secret")
            elif source.get("optional") is True:
                problems.append(f"prod {name}: the volume of {var} is optional")
        url = (env.get("CODEGRAPH__REDIS__URL") or {}).get("valueFrom", {}).get("secretKeyRef")
        if not url:
            problems.append(f"prod {name}: CODEGRAPH__REDIS__URL does not come from a Secret")
        elif url.get("optional") is True:
            problems.append(f"prod {name}: the Redis URL Secret is optional")
    return problems


def check(dev, prod):
    return (check_pods(dev, "dev") + check_pods(prod, "prod") + check_network(dev, "dev")
            + check_network(prod, "prod") + check_prod_secrets(prod))


def self_test(dev, prod):
    """Each break of a rule must be caught; returns what went unnoticed."""

    def find(docs, kind, name):
        return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)

    def container(docs, name):
        return find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]

    def volume(docs, name, vol):
        spec = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        return next(v for v in spec["volumes"] if v["name"] == vol)

    breaks = {
        "a container may write its root": lambda d, p: container(p, "graph-api")["securityContext"].update(
            readOnlyRootFilesystem=False),
        "a container keeps its capabilities": lambda d, p: container(d, "dashboard")["securityContext"].pop(
            "capabilities"),
        "a pod without seccomp": lambda d, p: (
            find(d, "Deployment", "memgraph")["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile"),
            container(d, "memgraph")["securityContext"].pop("seccompProfile")),
        "a pod may run as root": lambda d, p: (
            find(d, "Deployment", "falkordb")["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
            container(d, "falkordb")["securityContext"].pop("runAsNonRoot")),
        "no default deny": lambda d, p: d.remove(find(d, "NetworkPolicy", "default-deny")),
        "no DNS": lambda d, p: p.remove(find(p, "NetworkPolicy", "allow-dns")),
        "Redis open to every pod": lambda d, p: find(d, "NetworkPolicy", "redis-from-services")["spec"].update(
            ingress=[{}]),
        "egress open to everything": lambda d, p: d.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "oops", "namespace": "codegraph-dev"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}),
        "the tokens Secret is optional": lambda d, p: volume(p, "ws-gateway", "tokens")["secret"].update(
            optional=True),
        "a token scope from no file": lambda d, p: container(p, "graph-api").update(
            env=[e for e in container(p, "graph-api")["env"] if e["name"] != "CODEGRAPH__AUTH__ADMIN_TOKENS_FILE"]),
        "prod open on purpose": lambda d, p: find(p, "ConfigMap", next(
            x["metadata"]["name"] for x in p if x["kind"] == "ConfigMap"
            and x["metadata"]["name"].startswith("codegraph-config")))["data"].update(CODEGRAPH__AUTH__ALLOW_OPEN="true"),
        "plain Bolt in prod": lambda d, p: find(p, "ConfigMap", next(
            x["metadata"]["name"] for x in p if x["kind"] == "ConfigMap"
            and x["metadata"]["name"].startswith("codegraph-sinks")))["data"].update(
            CODEGRAPH__SINKS__MEMGRAPH__URL="bolt://memgraph:7687"),
        "no Redis CA": lambda d, p: container(p, "analysis-worker").update(
            env=[e for e in container(p, "analysis-worker")["env"] if e["name"] != "CODEGRAPH__REDIS__CA_FILE"]),
        "graph-api without FalkorDB's CA": lambda d, p: container(p, "graph-api").update(
            env=[e for e in container(p, "graph-api")["env"] if e["name"] != "CODEGRAPH__FALKORDB__CA_FILE"]),
        "graph-api on plain FalkorDB in prod": lambda d, p: container(p, "graph-api")["env"].append(
            {"name": "CODEGRAPH__FALKORDB__URL", "value": "redis://falkordb:6379"}),
        "FalkorDB refuses graph-api": lambda d, p: d.remove(find(d, "NetworkPolicy", "falkordb-from-graph-api")),
        "graph-api reaches Memgraph": lambda d, p: (
            find(d, "NetworkPolicy", "graph-api-to-falkordb")["spec"]["egress"].append(
                {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "memgraph"}}}],
                 "ports": [{"protocol": "TCP", "port": 7687}]}),
            find(d, "NetworkPolicy", "sinks-from-stream-consumer")["spec"]["ingress"].append(
                {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "graph-api"}}}],
                 "ports": [{"protocol": "TCP", "port": 7687}]})),
    }
    assert not check(dev, prod), "the renders must pass before they are broken"
    unnoticed = []
    for what, breaker in breaks.items():
        d, p = copy.deepcopy(dev), copy.deepcopy(prod)
        breaker(d, p)
        if not check(d, p):
            unnoticed.append(what)
    return unnoticed


def main(argv):
    if argv[:1] == ["--self-test"]:
        unnoticed = self_test(load(argv[1]), load(argv[2]))
        for what in unnoticed:
            print(f"not caught: {what}")
        return 1 if unnoticed else 0
    problems = check(load(argv[0]), load(argv[1]))
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
