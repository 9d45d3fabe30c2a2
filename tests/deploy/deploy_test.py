#!/usr/bin/python3
"""Everything under deploy/ against the binaries it deploys.

deploy/ holds systemd units, Kubernetes manifests, example configs, a
Prometheus scrape config with alerts, and Grafana dashboards. None of them
is compiled, so nothing else notices when a flag is renamed, a port moves or
a metric disappears. This test does, in one pass:

- every YAML file under deploy/ parses (and the YAML inside the ConfigMaps),
  every dashboard is JSON;
- promtool: `check config` on the scrape configs, `check rules` on the
  alert and recording rules, `test rules` on the alerts' unit tests; every
  alert has `for:`, a severity and a summary and description;
- the systemd units: `systemd-analyze verify` (with ExecStart pointed at the
  built binaries), `systemd-analyze security --offline` at most
  MAX_EXPOSURE, Restart=on-failure, a StateDirectory, the flags of ExecStart
  in the binary's --help (skipped, with a message, without systemd-analyze);
- the Kubernetes manifests: the kustomization lists every manifest, the
  container args' flags are in --help, every port (container, Service,
  probe, annotation, listen flag, ConfigMap setting, the agents' DNS target,
  the Prometheus DNS targets) agrees, every path the args name is mounted,
  every ConfigMap named exists; the agents' DaemonSet sees the node's
  filesystems (collector on, the node's / read-only at --rootfs with
  HostToContainer propagation, the node's init's mount table, pods' volume
  mounts relabeled away);
- the binaries run as deployed: sheafd and sheaf-agent started as the
  systemd units start them (with the example configs) and as the Kubernetes
  containers start them (with the ConfigMaps' configs), paths and
  addresses moved to a temp directory and loopback: all four come up, so
  every setting in those configs is accepted (unknown ones exit 2); the
  DaemonSet-style agent delivers to the StatefulSet-style sheafd each mount
  point by its host path, sized as statvfs() of that path;
- every metric name that alerts.yml and the dashboards use is exported: by
  sheafd's /metrics, the agent's /metrics, or among the host metrics the
  agent delivered to sheafd (`up` is Prometheus' own). Histogram suffixes
  count for their histogram. The remote-write sender's seven names are
  checked live once sheafd accepts a `remote_write:` setting (started with
  one pointing at an unused loopback port), taken as given until then;
- every dashboard expression, with Grafana's variables substituted, parses
  with sheaf's engine (/api/v1/format_query) and evaluates without an error
  (/api/v1/query) on a sheafd holding a real agent's data, and every host
  panel has data; the alerts' expressions parse too; the query-error
  alert's and panel's handler regex matches exactly sheafd's query routes
  as sheaf_http_requests_total labels them; dashboards' panels do not
  overlap;
- Debian's Prometheus with deploy/prometheus/prometheus.yml (targets moved
  to the test's processes, intervals to 1 s) scrapes every job, gets the
  agents' filesystem series through sheafd's /federate, evaluates every
  alert without an error, and every panel of the health dashboard has data
  (where empty is not a healthy answer).

Prints 'N passed, N failed'; exit 1 on any failure.
"""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

SHEAFD = os.environ["SHEAFD"]
SHEAF_AGENT = os.environ["SHEAF_AGENT"]
ROOT = os.environ["SOURCE_ROOT"]
DEPLOY = os.path.join(ROOT, "deploy")
BINARIES = {"sheafd": SHEAFD, "sheaf-agent": SHEAF_AGENT}

# `systemd-analyze security` exposure (0 safe .. 10 unsafe) a unit may
# reach: sheafd.service measured 1.1, sheaf-agent.service 1.5 (systemd 252).
MAX_EXPOSURE = 2.0

# The remote-write sender's metrics (sheafd's `remote_write:`), taken as exported
# until sheafd accepts a `remote_write:` setting.
REMOTE_WRITE_SENDER = {
    "sheaf_remote_write_samples_sent_total", "sheaf_remote_write_samples_dropped_total",
    "sheaf_remote_write_samples_pending", "sheaf_remote_write_queue_bytes", "sheaf_remote_write_lag_seconds",
    "sheaf_remote_write_requests_total", "sheaf_remote_write_retries_total",
}
# Names Prometheus adds to every scrape, not exported by anyone.
PROMETHEUS_OWN = {"up"}

# What Grafana substitutes before sending an expression.
GRAFANA_VARIABLES = [("$__rate_interval", "1m"), ("$__interval", "15s"), ("$__range", "1h"),
                     ("${instance}", ".*"), ("$instance", ".*"), ("${agent}", ".*"), ("$agent", ".*"),
                     ("${host}", ".*"), ("$host", ".*"), ("${region}", ".*"), ("$region", ".*")]

sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
# Shared helpers: `results` is promql_compat_test's list, which `check` fills.
from promql_compat_test import check, free_port, results, stop, wait_for  # noqa: E402
from hostile_wire_test import grpc_call  # noqa: E402


def expect(name, ok, detail=""):
    """check() with any truthy value (a match, a list) taken as passing."""
    check(name, bool(ok), detail)


def rel(path):
    return os.path.relpath(path, ROOT)


def help_flags(binary):
    """The flag names (without dashes) in `binary --help`, and its text."""
    text = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=10).stdout
    return set(re.findall(r"^  --([a-z0-9-]+)", text, re.M)), text


def flags_of(args):
    """--name tokens of an argument list (--name=value too)."""
    return [a[2:].split("=", 1)[0] for a in args if a.startswith("--")]


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def quantity(text):
    """A Kubernetes quantity ("500m", "2", "512Mi", "2Gi") as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    return float(m.group(1)) * units.get(m.group(2), 1)


# ---- PromQL names ----------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
            "bool", "inf", "nan"}


def metric_names(expr):
    """Metric names an expression selects: identifiers that are not label
    names (inside {} or a by/on/... list), functions, keywords or numbers."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", e):
        name, call = m.group(1), m.group(2)
        if not call and name.lower() not in KEYWORDS:
            names.add(name)
    # {__name__="x"} selectors
    names.update(re.findall(r'__name__\s*=\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', expr))
    return names


def grafana_to_promql(expr):
    for var, value in GRAFANA_VARIABLES:
        expr = expr.replace(var, value)
    return expr


def dashboard_expressions(dashboard):
    """(where, PromQL) of every panel target and every variable query (the
    selector of label_values(SELECTOR, label))."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append(("panel %r" % p.get("title"), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)\s*", q)
        out.append(("variable %r" % v["name"], m.group(1) if m else q))
    return out


def exported_names(metrics_text):
    """Metric names a /metrics page exports: every sample's name, and for a
    histogram or summary its _bucket/_sum/_count."""
    names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[ {]", metrics_text, re.M))
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", metrics_text, re.M):
        names.add(name)
        if kind in ("histogram", "summary"):
            names.update({name + "_bucket", name + "_sum", name + "_count"})
    return names


# ---- systemd -----------------------------------------------------------------

def parse_unit(path):
    """{section: [(key, value)]} of a unit file (keys repeat)."""
    sections = {}
    current = None
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def unit_value(unit, section, key):
    values = [v for k, v in unit.get(section, []) if k == key]
    return values[-1] if values else None


def check_systemd(tmp):
    """Static checks and systemd-analyze on the units; returns {binary:
    ExecStart args} for the start-up checks."""
    units = sorted(glob.glob(os.path.join(DEPLOY, "systemd", "*.service")))
    expect("systemd: units for sheafd and sheaf-agent",
           sorted(os.path.basename(u) for u in units) == ["sheaf-agent.service", "sheafd.service"])
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("skip: systemd-analyze not installed (Debian package systemd): units not verified", flush=True)
    exec_args = {}
    verify_dir = os.path.join(tmp, "units")
    os.makedirs(verify_dir)
    for path in units:
        name = os.path.basename(path)
        unit = parse_unit(path)
        args = shlex.split(unit_value(unit, "Service", "ExecStart"))
        binary = os.path.basename(args[0])
        expect("%s: ExecStart runs a sheaf binary" % name, binary in BINARIES, args[0])
        if binary not in BINARIES:
            continue
        exec_args[binary] = args[1:]
        known, _ = help_flags(BINARIES[binary])
        unknown = [f for f in flags_of(args[1:]) if f not in known]
        expect("%s: ExecStart's flags are in %s --help" % (name, binary), not unknown, "unknown: %s" % unknown)
        config = args[args.index("--config") + 1] if "--config" in args else ""
        expect("%s: --config is /etc/sheaf/<a deploy/ example config>" % name,
               config.startswith("/etc/sheaf/") and os.path.exists(os.path.join(DEPLOY, os.path.basename(config))),
               config)
        expect("%s: the ConfigurationDirectory holds --config" % name,
               unit_value(unit, "Service", "ConfigurationDirectory") == "sheaf")
        expect("%s: the store/state is the StateDirectory" % name,
               unit_value(unit, "Service", "StateDirectory") is not None and "${STATE_DIRECTORY}" in args)
        expect("%s: Restart=on-failure" % name, unit_value(unit, "Service", "Restart") == "on-failure")
        expect("%s: a dedicated user" % name,
               unit_value(unit, "Service", "DynamicUser") == "yes" or unit_value(unit, "Service", "User") == "sheaf")
        if unit_value(unit, "Service", "User") == "sheaf":
            sysusers = open(os.path.join(DEPLOY, "systemd", "sheaf.sysusers.conf")).read()
            expect("%s: sheaf.sysusers.conf creates user sheaf" % name, re.search(r"^u\s+sheaf\s", sysusers, re.M))
        if not analyze:
            continue
        text = open(path).read().replace(args[0], BINARIES[binary], 1)
        copy = os.path.join(verify_dir, name)
        with open(copy, "w") as f:
            f.write(text)
        p = subprocess.run([analyze, "verify", "--man=no", copy], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        expect("%s: systemd-analyze verify" % name, p.returncode == 0 and not p.stdout.strip(), p.stdout.strip())
        p = subprocess.run([analyze, "security", "--offline=yes", copy], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
        if not m:
            print("skip: systemd-analyze security --offline not supported here: %s" % p.stdout.strip()[-200:])
            continue
        print("%s: systemd-analyze security exposure %s" % (name, m.group(1)), flush=True)
        expect("%s: systemd-analyze security exposure %s <= %.1f" % (name, m.group(1), MAX_EXPOSURE),
               float(m.group(1)) <= MAX_EXPOSURE)
    return exec_args


# ---- Kubernetes --------------------------------------------------------------

def check_kubernetes():
    """Static checks on the manifests; returns {binary: (container, pod
    spec, configmaps)} for the start-up checks."""
    kdir = os.path.join(DEPLOY, "kubernetes")
    kustomization = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml")))
    manifests = sorted(os.path.basename(p) for p in glob.glob(os.path.join(kdir, "*.yaml"))
                       if not p.endswith("kustomization.yaml"))
    expect("kubernetes: kustomization.yaml lists every manifest", sorted(kustomization["resources"]) == manifests,
           "%s vs %s" % (kustomization["resources"], manifests))
    objects = {}
    for name in manifests:
        for doc in yaml.safe_load_all(open(os.path.join(kdir, name))):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    namespace = kustomization["namespace"]
    expect("kubernetes: every object in namespace %s" % namespace,
           all(o["metadata"].get("namespace", namespace) == namespace for (k, _), o in objects.items()
              if k != "Namespace") and ("Namespace", namespace) in objects)
    configmaps = {n: o["data"] for (k, n), o in objects.items() if k == "ConfigMap"}
    for n, data in configmaps.items():
        for key, text in data.items():
            try:
                yaml.safe_load(text)
                expect("kubernetes: ConfigMap %s/%s is YAML" % (n, key), True)
            except yaml.YAMLError as e:
                expect("kubernetes: ConfigMap %s/%s is YAML" % (n, key), False, str(e))
    services = {n: o for (k, n), o in objects.items() if k == "Service"}
    workloads = {}
    for (kind, name), obj in objects.items():
        if kind not in ("StatefulSet", "DaemonSet"):
            continue
        pod = obj["spec"]["template"]
        expect("%s %s: selector matches the pod's labels" % (kind, name),
               obj["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items())
        # Claim templates are volumes of the pod too.
        spec = dict(pod["spec"], volumes=pod["spec"].get("volumes", []) + [
            {"name": t["metadata"]["name"], "persistentVolumeClaim": {}}
            for t in obj["spec"].get("volumeClaimTemplates", [])])
        for c in spec["containers"]:
            binary = os.path.basename(c["command"][0])
            expect("%s %s: runs a sheaf binary" % (kind, name), binary in BINARIES, c["command"][0])
            if binary not in BINARIES:
                continue
            workloads[binary] = (c, spec, configmaps)
            known, _ = help_flags(BINARIES[binary])
            args = c.get("args", [])
            unknown = [f for f in flags_of(args) if f not in known]
            expect("%s %s: args' flags are in %s --help" % (kind, name, binary), not unknown, "unknown: %s" % unknown)
            resources = c.get("resources", {})
            expect("%s %s: cpu and memory requests at most their limits" % (kind, name),
                   all(quantity(resources["requests"][r]) <= quantity(resources["limits"][r])
                       for r in ("cpu", "memory")) if {"requests", "limits"} <= resources.keys() else False,
                   str(resources))
            expect("%s %s: a liveness probe" % (kind, name), "livenessProbe" in c)
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            # Listen flags and the ConfigMap's listen settings use the container ports.
            listen = {f: args[i + 1] for i, f in enumerate(args[:-1]) if f.endswith("-listen")}
            for flag, address in listen.items():
                expect("%s %s: %s %s is a container port" % (kind, name, flag, address),
                       port_of(address) in ports.values())
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in c:
                    handler = c[probe].get("grpc") or c[probe].get("httpGet")
                    expect("%s %s: %s's port is a container port" % (kind, name, probe),
                           handler["port"] in ports.values() or handler["port"] in ports)
                    if "grpc" in c[probe]:
                        expect("%s %s: %s (gRPC health) is the --grpc-listen port" % (kind, name, probe),
                               "--grpc-listen" in listen
                               and c[probe]["grpc"]["port"] == port_of(listen["--grpc-listen"]))
                    if "httpGet" in c[probe]:
                        expect("%s %s: %s's path is /metrics of --metrics-listen" % (kind, name, probe),
                               c[probe]["httpGet"]["path"] == "/metrics" and "--metrics-listen" in listen)
            annotated = pod["metadata"].get("annotations", {}).get("prometheus.io/port")
            if annotated:
                expect("%s %s: prometheus.io/port is the HTTP/metrics port" % (kind, name),
                       int(annotated) in ports.values() and int(annotated) == port_of(
                          listen.get("--http-listen") or listen.get("--metrics-listen")))
            # Every path argument lives in a mounted volume; mounted ConfigMaps exist.
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for i, a in enumerate(args):
                if a.startswith("/"):
                    under = [p for p in mounts if a == p or a.startswith(p.rstrip("/") + "/")]
                    expect("%s %s: %s %s is on a mounted volume" % (kind, name, args[i - 1], a), under)
            for m in mounts.values():
                v = volumes.get(m["name"])
                if v is None:
                    expect("%s %s: volume %s exists" % (kind, name, m["name"]), False)
                    continue
                if "configMap" in v:
                    cm = v["configMap"]["name"]
                    expect("%s %s: ConfigMap %s exists (or is optional)" % (kind, name, cm),
                           cm in configmaps or v["configMap"].get("optional"))
                    if "subPath" in m:
                        expect("%s %s: ConfigMap %s has key %s" % (kind, name, cm, m["subPath"]),
                               m["subPath"] in configmaps.get(cm, {}))
            # Services that select these pods target existing ports.
            for sname, svc in services.items():
                if svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items():
                    for sp in svc["spec"]["ports"]:
                        expect("Service %s: port %s targets container port %s" % (sname, sp["name"], sp["targetPort"]),
                               ports.get(sp["targetPort"], sp["targetPort"]) == sp["port"])
    # The agents' DNS target is sheafd's headless Service and gRPC port.
    agent_config = yaml.safe_load(configmaps["sheaf-agent-config"]["sheaf-agent.yaml"])
    check_agent_host_view(objects[("DaemonSet", "sheaf-agent")], agent_config)
    sheafd_svc = services["sheafd"]
    grpc_port = [p["port"] for p in sheafd_svc["spec"]["ports"] if p["name"] == "grpc"][0]
    expect("kubernetes: the agents' daemon target is the headless Service sheafd",
           agent_config["daemon"] == "dns:///sheafd.%s.svc.cluster.local:%d" % (namespace, grpc_port)
           and sheafd_svc["spec"]["clusterIP"] == "None", agent_config["daemon"])
    expect("kubernetes: the StatefulSet's serviceName is the headless Service",
           objects[("StatefulSet", "sheafd")]["spec"]["serviceName"] == "sheafd")
    # Prometheus' DNS targets are these Services and their ports.
    prom = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "prometheus-kubernetes.yml")))
    for job in prom["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for dns in sd["names"]:
                svc = dns.split(".")[0]
                ok = svc in services and dns == "%s.%s.svc.cluster.local" % (svc, namespace) and \
                    sd["port"] in [p["port"] for p in services[svc]["spec"]["ports"]]
                expect("prometheus-kubernetes.yml: job %s targets Service %s port %s"
                       % (job["job_name"], svc, sd["port"]), ok)
    return workloads


def arg_value(args, flag):
    return args[args.index(flag) + 1] if flag in args[:-1] else None


# Mount points of a node the DaemonSet's relabel rules must drop (pods'
# volumes, containers' root filesystems) and keep (the node's disks).
POD_MOUNTS = ["/var/lib/kubelet/pods/0b5c/volumes/kubernetes.io~projected/kube-api-access-x7",
              "/var/lib/kubelet/pods/0b5c/volumes/kubernetes.io~csi/pvc-1f2e/mount",
              "/run/containerd/io.containerd.runtime.v2.task/k8s.io/3fa1/rootfs"]
NODE_MOUNTS = ["/", "/var", "/var/lib/kubelet", "/boot/efi", "/mnt/data"]


def check_agent_host_view(daemonset, agent_config):
    """The DaemonSet's agent measures the node's filesystems: collector on,
    the node's mount table, the node's / under --rootfs (read-only,
    HostToContainer), pods' volumes dropped."""
    pod = daemonset["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c.get("args", [])
    disabled = agent_config.get("disable_collector", []) + [
        a for i, a in enumerate(args) if i and args[i - 1] == "--disable-collector"]
    expect("DaemonSet sheaf-agent: the filesystem collector is on", "filesystem" not in disabled, str(disabled))
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    host = {v["name"]: v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v}
    rootfs = arg_value(args, "--rootfs")
    m = mounts.get(rootfs, {})
    expect("DaemonSet sheaf-agent: --rootfs %s is the node's / read-only, mountPropagation HostToContainer" % rootfs,
           host.get(m.get("name")) == "/" and m.get("readOnly") and m.get("mountPropagation") == "HostToContainer",
           str(m))
    proc_root = arg_value(args, "--proc-root")
    expect("DaemonSet sheaf-agent: --proc-root %s is the node's /proc, read-only" % proc_root,
           host.get(mounts.get(proc_root, {}).get("name")) == "/proc" and mounts[proc_root].get("readOnly"))
    expect("DaemonSet sheaf-agent: --mounts-file is the node's init's mount table (<--proc-root>/1/mounts)",
           proc_root and arg_value(args, "--mounts-file") == proc_root + "/1/mounts", arg_value(args, "--mounts-file"))
    dropping = [r for r in agent_config.get("relabel", [])
                if r.get("action") == "drop" and r.get("source_labels") == ["mountpoint"]]
    dropped = [p for p in POD_MOUNTS + NODE_MOUNTS if any(re.fullmatch(r["regex"], p) for r in dropping)]
    expect("DaemonSet sheaf-agent: relabel drops pods' volume mounts, keeps the node's disks",
           dropped == POD_MOUNTS, "dropped: %s" % dropped)


# ---- Prometheus --------------------------------------------------------------

def check_prometheus():
    promtool = shutil.which("promtool")
    expect("promtool installed (Debian package prometheus)", promtool is not None)
    if not promtool:
        return
    pdir = os.path.join(DEPLOY, "prometheus")
    runs = [["check", "config", p] for p in sorted(glob.glob(os.path.join(pdir, "prometheus*.yml")))]
    runs.append(["check", "rules", os.path.join(pdir, "alerts.yml")]
                + sorted(glob.glob(os.path.join(DEPLOY, "rules", "*.yml"))))
    runs.append(["test", "rules", os.path.join(pdir, "alerts_test.yml")])
    for run in runs:
        p = subprocess.run([promtool] + run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
                           cwd=pdir)
        expect("promtool %s %s" % (" ".join(run[:2]), " ".join(rel(r) for r in run[2:])), p.returncode == 0,
               p.stdout[-2000:])
    alerts = yaml.safe_load(open(os.path.join(pdir, "alerts.yml")))
    for group in alerts["groups"]:
        for rule in group["rules"]:
            ok = "for" in rule and rule.get("labels", {}).get("severity") in ("critical", "warning") and \
                rule.get("annotations", {}).get("summary") and rule.get("annotations", {}).get("description")
            expect("alert %s: for, severity, summary, description" % rule["alert"], ok)
    # The static config's ports are the binaries' defaults.
    prom = yaml.safe_load(open(os.path.join(pdir, "prometheus.yml")))
    _, sheafd_help = help_flags(SHEAFD)
    _, agent_help = help_flags(SHEAF_AGENT)
    for job in prom["scrape_configs"]:
        for target in [t for sc in job.get("static_configs", []) for t in sc["targets"]]:
            text = agent_help if job["job_name"] == "sheaf-agent" else sheafd_help
            flag = "metrics-listen" if job["job_name"] == "sheaf-agent" else "http-listen"
            m = re.search(r"--%s VALUE\n(.*)" % flag, text)
            expect("prometheus.yml: job %s's port %d is --%s's" % (job["job_name"], port_of(target), flag),
                   m and (":%d" % port_of(target)) in m.group(1), m.group(1) if m else "no --%s" % flag)


# ---- running the binaries ----------------------------------------------------

def start(procs, tmp, name, argv):
    log = open(os.path.join(tmp, name + ".log"), "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc


def log_tail(tmp, name):
    try:
        return open(os.path.join(tmp, name + ".log")).read()[-1500:]
    except OSError:
        return ""


def start_sheafd(procs, tmp, name, args):
    """sheafd with `args` + loopback ports and a ready file: (proc, grpc
    port, http port), or (proc, None, None) if it did not come up."""
    ready = os.path.join(tmp, name + ".ready")
    proc = start(procs, tmp, name, [SHEAFD] + args + ["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                                      "--ready-file", ready])
    up = wait_for(lambda: proc.poll() is not None or (os.path.exists(ready) and os.path.getsize(ready) > 0), 20)
    if not up or proc.poll() is not None:
        return proc, None, None
    ports = dict(line.split("=") for line in open(ready).read().split())
    return proc, int(ports["grpc_port"]), int(ports["http_port"])


def http_get(port, path, timeout=10):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read().decode()


def api(port, endpoint, query):
    """GET /api/v1/<endpoint>?query=...: the JSON answer, errors included."""
    url = "/api/v1/%s?%s" % (endpoint, urllib.parse.urlencode({"query": query}))
    try:
        return json.loads(http_get(port, url))
    except urllib.error.HTTPError as e:
        return json.loads(e.read().decode())


def mapped_path(path, tmp, mounts):
    """A container path moved onto this machine: hostPath volumes mounted
    read-only to their host path, everything else into `tmp`."""
    for mount_path, host in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            return host + path[len(mount_path):]
    return path


def container_argv(container, spec, configmaps, tmp, extra_env):
    """The container's args runnable here: ConfigMap files written to
    `tmp`, read-only hostPath mounts to a link in `tmp` to the host path,
    writable volumes to `tmp`, $(VAR) substituted."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {}
    for m in container.get("volumeMounts", []):
        v = volumes[m["name"]]
        local = os.path.join(tmp, container["name"] + "-" + m["name"])
        if "configMap" in v and "subPath" in m:
            with open(local, "w") as f:
                f.write(configmaps[v["configMap"]["name"]][m["subPath"]])
        elif "configMap" in v:
            os.makedirs(local, exist_ok=True)
            for key, text in configmaps.get(v["configMap"]["name"], {}).items():
                with open(os.path.join(local, key), "w") as f:
                    f.write(text)
        elif "hostPath" in v and m.get("readOnly"):
            # A link to the host path, so that a path given as a prefix
            # (--rootfs, --proc-root) still is one.
            os.symlink(v["hostPath"]["path"], local)
        else:
            os.makedirs(local, exist_ok=True)
        mounts[m["mountPath"]] = local
    argv = []
    for a in container.get("args", []):
        a = re.sub(r"\$\((\w+)\)", lambda m: extra_env[m.group(1)], a)
        argv.append(mapped_path(a, tmp, mounts) if a.startswith("/") else a)
    return argv


def without_flags(argv, names):
    """argv minus --name VALUE pairs (the test sets its own)."""
    out = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in names:
            skip = True
        else:
            out.append(a)
    return out


def unit_argv(args, tmp, binary):
    """A unit's ExecStart args runnable here: /etc/sheaf/X.yaml is
    deploy/X.yaml, ${STATE_DIRECTORY} a temp directory."""
    state = os.path.join(tmp, binary + "-unit-state")
    return [os.path.join(DEPLOY, a[len("/etc/sheaf/"):]) if a.startswith("/etc/sheaf/") else
            a.replace("${STATE_DIRECTORY}", state) for a in args]


def run_binaries(procs, tmp, unit_args, workloads):
    """Starts the four deployments; returns (sheafd http port, agent
    metrics port, sender landed) of the unit-style pair, or None."""
    # sheafd as the unit starts it, with the example config; the shipped
    # rules so the rule metrics exist; one remote_write entry at an unused
    # port if this sheafd knows the setting.
    config = os.path.join(tmp, "sheafd-remote-write.yaml")
    with open(config, "w") as f:
        f.write(open(os.path.join(DEPLOY, "sheafd.yaml")).read())
        # The agent's load series, so that requests (refused: nothing
        # listens there) are made and counted within the test.
        f.write("\nremote_write:\n  - url: http://127.0.0.1:%d/api/v1/write\n"
                "    match: ['{__name__=~\"node_load.*\"}']\n    batch_send_deadline: 1s\n" % free_port())
    base = unit_argv(unit_args["sheafd"], tmp, "sheafd") + ["--rule-files", os.path.join(DEPLOY, "rules", "fleet.yml")]
    with_rw = [config if a == os.path.join(DEPLOY, "sheafd.yaml") else a for a in base]
    name = "sheafd-unit-rw"
    proc, grpc_port, http_port = start_sheafd(procs, tmp, name, with_rw)
    sender = http_port is not None
    if not sender:
        proc.wait(timeout=20)
        text = log_tail(tmp, name)
        expect("sheafd with deploy/sheafd.yaml and a remote_write entry: starts, or refuses only the unknown setting",
               'unknown setting "remote_write"' in text, text)
        print("remote-write sender not in sheafd yet: its 7 metric names are taken as given", flush=True)
        name = "sheafd-unit"
        proc, grpc_port, http_port = start_sheafd(procs, tmp, name, base)
    expect("sheafd starts as sheafd.service starts it, with deploy/sheafd.yaml", http_port is not None,
           log_tail(tmp, name))
    if http_port is None:
        return None

    agent_port = free_port()
    start(procs, tmp, "agent-unit",
          [SHEAF_AGENT] + unit_argv(unit_args["sheaf-agent"], tmp, "sheaf-agent") +
          ["--daemon", "127.0.0.1:%d" % grpc_port, "--interval", "1s", "--stream-max-age", "1s",
           "--replay-jitter", "0s", "--metrics-listen", "127.0.0.1:%d" % agent_port])

    # The Kubernetes containers, as their manifests start them.
    c, spec, configmaps = workloads["sheafd"]
    argv = without_flags(container_argv(c, spec, configmaps, tmp, {}), {"--grpc-listen", "--http-listen"})
    _, k8s_grpc, k8s_http = start_sheafd(procs, tmp, "sheafd-k8s", argv)
    expect("sheafd starts as the StatefulSet starts it, with the ConfigMap's config", k8s_http is not None,
           log_tail(tmp, "sheafd-k8s"))
    c, spec, configmaps = workloads["sheaf-agent"]
    k8s_agent_port = free_port()
    argv = container_argv(c, spec, configmaps, tmp, {"NODE_NAME": "node-1", "NODE_IP": "127.0.0.1"})
    argv = [a.replace("127.0.0.1:%d" % c["ports"][0]["containerPort"], "127.0.0.1:%d" % k8s_agent_port)
            for a in argv]
    rootfs = arg_value(argv, "--rootfs")
    if k8s_grpc:
        # To the StatefulSet-style sheafd rather than the cluster's DNS name.
        argv += ["--daemon", "127.0.0.1:%d" % k8s_grpc, "--interval", "1s", "--stream-max-age", "1s",
                 "--replay-jitter", "0s"]
    k8s_agent = start(procs, tmp, "agent-k8s", [SHEAF_AGENT] + argv)
    expect("sheaf-agent starts as the DaemonSet starts it, with the ConfigMap's config (and collects)",
           wait_for(lambda: re.search(r"^sheaf_agent_collections_total [1-9]",
                                     http_get(k8s_agent_port, "/metrics", 2), re.M), 15) and k8s_agent.poll() is None,
           log_tail(tmp, "agent-k8s"))
    if k8s_http:
        check_node_filesystems(k8s_http, rootfs, tmp)

    delivered = wait_for(lambda: "node_load1" in http_get(http_port, "/api/v1/label/__name__/values") and re.search(
        r"^sheaf_agent_samples_acked_total [1-9]", http_get(agent_port, "/metrics", 2), re.M), 20)
    expect("sheaf-agent starts as sheaf-agent.service starts it, with deploy/sheaf-agent.yaml, and delivers",
           delivered, log_tail(tmp, "agent-unit"))
    # A Push stream that fails, so sheaf_ingest_stream_errors_total has a series.
    status, message = grpc_call(grpc_port, "/sheaf.v1.IngestService/Push", b"\xff\xff\xff", False, timeout=10)
    expect("a broken Push stream is refused INVALID_ARGUMENT", status == 3, "%s %s" % (status, message))
    if sender:
        expect("the remote-write sender tried to send the agent's samples",
               wait_for(lambda: re.search(r"^sheaf_remote_write_requests_total\{[^}]*remote=",
                                          http_get(http_port, "/metrics"), re.M), 20), log_tail(tmp, name))
    return (http_port, agent_port, sender) if delivered else None


def check_node_filesystems(http_port, rootfs, tmp):
    """The DaemonSet-style agent's filesystem series, as sheafd holds them:
    each mount point of /proc/1/mounts by its host path (not under
    --rootfs), its size as statvfs() of that path says."""
    pseudo = {"autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
              "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay", "proc", "procfs", "pstore",
              "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tracefs"}
    table = [line.split() for line in open("/proc/1/mounts")]
    real = {f[1] for f in table if len(f) > 2 and f[2] not in pseudo
            and not re.match(r"/(dev|proc|sys)(/|$)", f[1]) and "\\" not in f[1]}
    if not real:
        print("skip: /proc/1/mounts has no filesystem the agent measures: node filesystems not checked", flush=True)
        return

    def series():
        answer = api(http_port, "query", 'node_filesystem_size_bytes{host="node-1"}')
        return answer.get("data", {}).get("result")

    found = series() if wait_for(series, 15) else []
    sizes = {s["metric"].get("mountpoint"): float(s["value"][1]) for s in found}
    expect("the DaemonSet's agent reports mount points by host path, not under --rootfs %s" % rootfs,
           sizes and set(sizes) <= real, "%s not in %s; %s" % (sorted(sizes), sorted(real), log_tail(tmp, "agent-k8s")))
    wrong = []
    for mount_point, size in sizes.items():
        try:
            st = os.statvfs(mount_point)
        except OSError:
            continue
        if size != st.f_blocks * (st.f_frsize or st.f_bsize):
            wrong.append((mount_point, size, st.f_blocks * (st.f_frsize or st.f_bsize)))
    expect("the DaemonSet's agent measures each mount point under --rootfs as statvfs() of its host path",
           sizes and not wrong, str(wrong))


def comparison_filtered(expr):
    """True if the expression filters by a comparison (`> 0`, `< 0`, `== 0`):
    empty is a healthy answer for it."""
    return re.search(r"[<>]|==", re.sub(r"\{[^}]*\}", "", expr)) is not None


def start_watching_prometheus(procs, tmp, http_port, agent_port):
    """Debian's Prometheus with deploy/prometheus/prometheus.yml, its targets
    moved to the test's sheafd and agent and its intervals to 1 s (alerts.yml
    loaded as shipped): the port once it has scraped every job twice, or
    None."""
    config = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "prometheus.yml")))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [os.path.join(DEPLOY, "prometheus", r) for r in config["rule_files"]]
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        port = agent_port if job["job_name"] == "sheaf-agent" else http_port
        job["static_configs"] = [{"targets": ["127.0.0.1:%d" % port]}]
    path = os.path.join(tmp, "prometheus.yml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    port = free_port()
    start(procs, tmp, "prometheus", [shutil.which("prometheus") or "/usr/bin/prometheus", "--config.file", path,
                                     "--storage.tsdb.path", os.path.join(tmp, "prom"),
                                     "--web.listen-address", "127.0.0.1:%d" % port])
    jobs = len(config["scrape_configs"])

    def scraped_twice():
        answer = api(port, "query", "count_over_time(up[1m]) >= 2 and up == 1")
        return len(answer["data"]["result"]) == jobs

    ok = wait_for(scraped_twice, 20)
    expect("Prometheus with deploy/prometheus/prometheus.yml scrapes every job (%d) twice" % jobs, ok,
           log_tail(tmp, "prometheus"))
    return port if ok else None


def check_prometheus_view(prom_port, sender):
    """The health dashboard has data in a real Prometheus scraping sheaf,
    and alerts.yml evaluates there without an error."""
    rules = json.loads(http_get(prom_port, "/api/v1/rules"))["data"]["groups"]
    bad = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r.get("health") == "err"]
    expect("alerts.yml: every alert evaluates in Prometheus", not bad and rules, str(bad))
    firing = [a["labels"]["alertname"] for a in json.loads(http_get(prom_port, "/api/v1/alerts"))["data"]["alerts"]]
    print("alerts pending or firing in the test's Prometheus: %s" % (firing or "none"), flush=True)
    answer = api(prom_port, "query", "node_filesystem_avail_bytes")
    expect("Prometheus gets node_filesystem_avail_bytes through /federate", answer["data"]["result"])
    dashboard = json.load(open(os.path.join(DEPLOY, "grafana", "sheaf-health.json")))
    panels = {}
    for where, expr in dashboard_expressions(dashboard):
        answer = api(prom_port, "query", grafana_to_promql(expr))
        expect("sheaf-health.json %s: Prometheus evaluates it" % where, answer.get("status") == "success",
               answer.get("error", ""))
        has_data = bool(answer.get("data", {}).get("result"))
        if comparison_filtered(expr) or (not sender and metric_names(expr) & REMOTE_WRITE_SENDER) or \
                'grpc_service="sheaf.v1.QueryService"' in expr or 'code=~"5.."' in expr:
            has_data = None  # empty is healthy: a filter, no sender yet, no query served or none failed
        panels.setdefault(where, []).append(has_data)
    for where, answers in panels.items():
        if any(a is not None for a in answers):
            expect("sheaf-health.json %s: has data" % where, any(answers))


# sheafd's HTTP routes that read the store (handler label: the registered
# route), with a request each: what SheafQueryErrors must cover. Others
# requested too, which it must not: writes, scrapes, the console's API.
QUERY_ROUTES = {
    "/api/v1/query": "/api/v1/query?query=1", "/api/v1/query_range": "/api/v1/query_range?query=1&start=0&end=60&step=15",
    "/api/v1/series": "/api/v1/series?match[]=up", "/api/v1/labels": "/api/v1/labels",
    "/api/v1/label/": "/api/v1/label/__name__/values", "/api/v1/read": "POST /api/v1/read",
    "/federate": "/federate?match[]=up",
}
OTHER_ROUTES = {"/api/v1/write": "POST /api/v1/write", "/metrics": "/metrics",
                "/api/v1/status/buildinfo": "/api/v1/status/buildinfo", "": "/no-such-page"}


def check_http_routes(http_port):
    """The handler regex of the query-error alert and panel names real
    routes: every query route answered shows under its handler label in
    sheaf_http_requests_total and matches, no other route does."""
    for request in list(QUERY_ROUTES.values()) + list(OTHER_ROUTES.values()):
        method, _, path = request.rpartition(" ")
        try:
            urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d%s" % (http_port, path),
                                                          data=b"" if method == "POST" else None,
                                                          method=method or "GET"), timeout=10).read()
        except urllib.error.HTTPError:
            pass  # an error answer is counted too
    handlers = set(re.findall(r'^sheaf_http_requests_total\{[^}]*handler="([^"]*)"', http_get(http_port, "/metrics"),
                              re.M))
    expect("sheaf_http_requests_total has a handler for each route requested",
           set(QUERY_ROUTES) | set(OTHER_ROUTES) <= handlers, "handlers: %s" % sorted(handlers))
    texts = [open(os.path.join(DEPLOY, "prometheus", "alerts.yml")).read(),
             open(os.path.join(DEPLOY, "grafana", "sheaf-health.json")).read().replace('\\"', '"')]
    regexes = {r for text in texts for r in re.findall(r'handler=~"([^"]+)"', text)}
    expect("alerts.yml and sheaf-health.json select the query routes with one handler regex", len(regexes) == 1,
           str(regexes))
    for regex in regexes:
        matched = {h for h in handlers if re.fullmatch(regex, h)}
        expect("handler=~%r matches exactly the query routes" % regex, matched == set(QUERY_ROUTES),
               "matches %s" % sorted(matched))


def check_names_and_expressions(http_port, agent_port, sender):
    exported = exported_names(http_get(http_port, "/metrics")) | exported_names(http_get(agent_port, "/metrics"))
    exported |= set(json.loads(http_get(http_port, "/api/v1/label/__name__/values"))["data"])
    exported |= PROMETHEUS_OWN
    if not sender:
        exported |= REMOTE_WRITE_SENDER
    pressure_optional = not os.path.exists("/proc/pressure")
    if pressure_optional:
        print("this kernel has no /proc/pressure: node_pressure_* not required", flush=True)

    sources = []
    alerts = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "alerts.yml")))
    for group in alerts["groups"]:
        for rule in group["rules"]:
            sources.append(("alerts.yml", "alert %s" % rule["alert"], rule["expr"]))
    for path in sorted(glob.glob(os.path.join(DEPLOY, "grafana", "*.json"))):
        for where, expr in dashboard_expressions(json.load(open(path))):
            sources.append((rel(path), where, expr))
    expect("expressions found in alerts.yml and the dashboards", len(sources) > 50, str(len(sources)))

    used = set()
    evaluated = nonempty = 0
    for source, where, expr in sources:
        names = metric_names(expr)
        used |= names
        missing = sorted(n for n in names
                         if n not in exported and not (pressure_optional and n.startswith("node_pressure_")))
        expect("%s %s: every metric exported" % (source, where), not missing,
               "not exported: %s in %s" % (missing, expr))
        promql = grafana_to_promql(expr)
        answer = api(http_port, "format_query", promql)
        expect("%s %s: sheaf's engine parses it" % (source, where), answer.get("status") == "success",
               "%s: %s" % (promql, answer.get("error")))
        if source.endswith(".json"):
            answer = api(http_port, "query", promql)
            evaluated += 1
            has_data = bool(answer.get("data", {}).get("result"))
            nonempty += has_data
            if source.endswith("hosts.json") and not comparison_filtered(expr) and not (
                    pressure_optional and "node_pressure_" in expr):
                expect("%s %s: has data from the agent" % (source, where), has_data, promql)
            expect("%s %s: sheafd evaluates it" % (source, where), answer.get("status") == "success",
                   "%s: %s" % (promql, answer.get("error")))
    print("%d metric names used, %d dashboard expressions evaluated, %d with data" % (len(used), evaluated, nonempty),
          flush=True)
    expect("the metric names include the daemon's, the agent's and the hosts'",
           {"sheaf_ingest_samples_total", "sheaf_agent_spool_bytes", "node_cpu_seconds_total",
           "sheaf_remote_write_lag_seconds", "sheaf_storage_disk_free_bytes", "sheaf_storage_disk_size_bytes",
           "sheaf_http_requests_total", "sheaf_http_request_duration_seconds_bucket"} <= used)


def main():
    started = time.time()
    tmp = tempfile.mkdtemp(prefix="sheaf-deploy-")
    procs = []
    try:
        for path in sorted(glob.glob(os.path.join(DEPLOY, "**", "*.y*ml"), recursive=True)):
            try:
                list(yaml.safe_load_all(open(path)))
                expect("YAML parses: %s" % rel(path), True)
            except yaml.YAMLError as e:
                expect("YAML parses: %s" % rel(path), False, str(e))
        for path in sorted(glob.glob(os.path.join(DEPLOY, "grafana", "*.json"))):
            try:
                d = json.load(open(path))
                variables = {v["name"]: v for v in d["templating"]["list"]}
                expect("dashboard %s: JSON with a Prometheus datasource variable" % rel(path),
                       variables.get("datasource", {}).get("type") == "datasource"
                       and variables["datasource"].get("query") == "prometheus")
                # Grafana keys panels by id and places them by gridPos; every
                # query goes to the chosen data source.
                panels = [p for top in d["panels"] for p in [top] + top.get("panels", [])]
                ids = [p["id"] for p in panels]
                expect("dashboard %s: panel ids unique, every panel placed" % rel(path),
                       len(ids) == len(set(ids)) and all({"x", "y", "w", "h"} <= p["gridPos"].keys()
                                                         for p in panels))
                # Grafana moves overlapping panels around: the layout is
                # what was meant only without overlaps (on the top level;
                # a collapsed row's panels are placed when it opens).
                cells = {}
                for p in d["panels"]:
                    g = p["gridPos"]
                    for x in range(g["x"], g["x"] + g["w"]):
                        for y in range(g["y"], g["y"] + g["h"]):
                            cells.setdefault((x, y), []).append(p["id"])
                overlaps = sorted({tuple(i) for i in cells.values() if len(i) > 1})
                expect("dashboard %s: no panels overlap, none wider than 24" % rel(path),
                       not overlaps and max(x for x, _ in cells) < 24, "panel ids %s" % overlaps)
                sources = [t.get("datasource", p.get("datasource")) for p in panels for t in p.get("targets", [])]
                sources += [v["datasource"] for v in variables.values() if v.get("type") == "query"]
                expect("dashboard %s: every query uses ${datasource}" % rel(path),
                       sources and all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources))
            except ValueError as e:
                expect("dashboard %s is JSON" % rel(path), False, str(e))
        check_prometheus()
        unit_args = check_systemd(tmp)
        workloads = check_kubernetes()
        if set(unit_args) != set(BINARIES) or set(workloads) != set(BINARIES):
            expect("units and manifests for both binaries", False)
            return
        running = run_binaries(procs, tmp, unit_args, workloads)
        if running:
            http_port, agent_port, sender = running
            prom_port = start_watching_prometheus(procs, tmp, http_port, agent_port)
            check_http_routes(http_port)
            check_names_and_expressions(http_port, agent_port, sender)
            if prom_port:
                check_prometheus_view(prom_port, sender)
    finally:
        stop(procs, tmp, results)
        print("deploy_test took %.1f s" % (time.time() - started))


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
