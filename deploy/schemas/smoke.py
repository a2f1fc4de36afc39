#!/usr/bin/env python3
"""Smoke test of the rendered manifests with the real binary (run by scripts/validate-deploy).

Schemas say nothing about whether the pods' shell scripts and MQPAXOS_* settings work with
the mqpaxos binary. This runs them: the servers-3 overlay's three server StatefulSets' entry
points (as pods mqpaxos-server1-0..3-0) and client1's load loop, with the environment the
overlay's ConfigMaps and env give them, against the built-in broker on 127.0.0.1 enforcing the
ACL that `mqpaxos acl --format mosquitto` prints, over TLS (mqtts://, as in the manifests):
a throw-away CA and broker certificate are made with openssl, as deploy/k8s/make-secrets
does. Only the broker's host and port, the pod IP and metrics port, the data directories and
the password and CA file locations are changed (to loopback and temporary ones).

It checks: every server's /health turns 200; a leader is elected (mqpaxos status --json);
the client loop completes a bench run with operations and no errors; the client's shell
stops at once on SIGTERM; and every metric the Grafana dashboard queries is one the
servers serve. Bounded: about 15 s, 60 s at most; everything it starts is stopped.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

# Every user's password on the smoke test's broker.
SMOKE_PASSWORD = "smoke-test-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, timeout=1.0, token=None):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--overlay", required=True, help="the rendered servers-3 overlay")
    ap.add_argument("--dashboard", required=True)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)

    objs = [o for o in yaml.safe_load_all(open(a.overlay)) if o]
    sts_all = sorted((o for o in objs if o["kind"] == "StatefulSet"
                      and o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "server"),
                     key=lambda o: o["metadata"]["name"])
    servers = len(sts_all)
    client = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "mqpaxos-client1")
    cms = {o["metadata"]["name"]: o.get("data") or {} for o in objs if o["kind"] == "ConfigMap"}

    def env_of(container):
        """The container's environment from its ConfigMaps and literal env values, $(VAR)
        expanded as the kubelet does (values from the downward API or Secrets are left out)."""
        env = {}
        for e in container.get("envFrom") or []:
            env.update(cms[e["configMapRef"]["name"]])
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
        return env

    def local_broker(url, port):
        """The manifests' broker URL with its host and port made the local broker's."""
        m = re.fullmatch(r"(mqtts?)://[^:/]+:\d+", url)
        if not m:
            raise SystemExit("INVALID smoke: MQPAXOS_BROKER %r is not scheme://host:port" % url)
        return "%s://127.0.0.1:%d" % (m.group(1), port)

    problems = []
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        bindir = os.path.join(tmp, "bin")
        os.mkdir(bindir)
        os.symlink(binary, os.path.join(bindir, "mqpaxos"))
        path = bindir + ":/usr/local/bin:/usr/bin:/bin"
        # The ACL for the overlay's cluster name, and a password file (the built-in broker
        # refuses an ACL without one): every server (user <cluster>-server<i>) and the client
        # with one test password.
        cluster = env_of(sts_all[0]["spec"]["template"]["spec"]["containers"][0]).get("MQPAXOS_CLUSTER", "default")
        client_user = next(e["value"] for e in client["spec"]["template"]["spec"]["containers"][0]["env"]
                           if e["name"] == "MQPAXOS_USER")
        acl = os.path.join(tmp, "acl.conf")
        with open(acl, "w") as f:
            subprocess.run([binary, "acl", "--format", "mosquitto", "--servers", str(servers), "--cluster", cluster],
                           stdout=f, check=True)
        passwd = os.path.join(tmp, "passwd")
        for u in ["%s-server%d" % (cluster, k + 1) for k in range(servers)] + [client_user]:
            subprocess.run([binary, "broker", "--password-file", passwd, "--add-user", u],
                           env={"PATH": path, "MQPAXOS_PASSWORD": SMOKE_PASSWORD}, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port, tls_port = free_port(), free_port()
        # A CA and a broker certificate for 127.0.0.1, as make-secrets makes EMQX's.
        ca, cert, key = (os.path.join(tmp, n) for n in ("ca.crt", "tls.crt", "tls.key"))
        ossl = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=mqpaxos smoke CA", "-keyout", os.path.join(tmp, "ca.key"), "-out", ca,
                        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], **ossl)
        subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", os.path.join(tmp, "tls.csr")], **ossl)
        with open(os.path.join(tmp, "ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
        subprocess.run(["openssl", "x509", "-req", "-in", os.path.join(tmp, "tls.csr"), "-CA", ca, "-CAkey", os.path.join(tmp, "ca.key"),
                        "-CAcreateserial", "-days", "1", "-extfile", os.path.join(tmp, "ext"), "-out", cert], **ossl)
        manifest_broker = env_of(sts_all[0]["spec"]["template"]["spec"]["containers"][0]).get("MQPAXOS_BROKER", "")
        broker_url = local_broker(manifest_broker, tls_port if manifest_broker.startswith("mqtts://") else port)

        def start(args, env, log):
            p = subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(p)
            return p

        try:
            # The plain listener stays on loopback for nobody: the pods get the TLS one.
            start([binary, "broker", "--listen", "127.0.0.1:%d" % port, "--password-file", passwd, "--acl-file", acl,
                   "--tls-cert", cert, "--tls-key", key, "--tls-listen", "127.0.0.1:%d" % tls_port],
                  {"PATH": path}, os.path.join(tmp, "broker.log"))
            metrics = []
            # The metrics token, when the manifests give the servers one (as make-secrets does).
            token = "smoke-metrics-token"
            token_file = os.path.join(tmp, "metrics-token")
            with open(token_file, "w") as f:
                f.write(token + "\n")
            for k, sts in enumerate(sts_all):
                c = sts["spec"]["template"]["spec"]["containers"][0]
                env = env_of(c)
                pwfile = os.path.join(tmp, "password%d" % (k + 1))
                with open(pwfile, "w") as f:
                    f.write(SMOKE_PASSWORD + "\n")
                mport = free_port()
                metrics.append(mport)
                env.update(PATH=path, POD_NAME="%s-0" % sts["metadata"]["name"], POD_IP="127.0.0.1", METRICS_PORT=str(mport),
                           MQPAXOS_BROKER=broker_url, MQPAXOS_PASSWORD_FILE=pwfile, MQPAXOS_DATA_DIR=os.path.join(tmp, "data%d" % k))
                if "MQPAXOS_CA_FILE" in env:
                    env["MQPAXOS_CA_FILE"] = ca
                if "MQPAXOS_METRICS_TOKEN_FILE" in env:
                    env["MQPAXOS_METRICS_TOKEN_FILE"] = token_file
                start(c["command"] + [c["args"][0]], env, os.path.join(tmp, "server%d.log" % (k + 1)))
            deadline = time.time() + 20
            while time.time() < deadline and not all(http("http://127.0.0.1:%d/health" % m)[0] == 200 for m in metrics):
                time.sleep(0.2)
            for k, m in enumerate(metrics):
                if http("http://127.0.0.1:%d/health" % m)[0] != 200:
                    problems.append("server %d (pod %s-0) is not healthy after 20 s" % (k + 1, sts_all[k]["metadata"]["name"]))

            cc = client["spec"]["template"]["spec"]["containers"][0]
            env = env_of(cc)
            user = next(e["value"] for e in cc["env"] if e["name"] == "MQPAXOS_USER")
            env.update(PATH=path, MQPAXOS_BROKER=broker_url, MQPAXOS_USER=user, MQPAXOS_PASSWORD=SMOKE_PASSWORD,
                       BENCH_DURATION="2s")
            if "MQPAXOS_CA_FILE" in env:
                env["MQPAXOS_CA_FILE"] = ca
            log = os.path.join(tmp, "client.log")
            cp = start(cc["command"] + [cc["args"][0]], env, log)
            deadline = time.time() + 25
            while time.time() < deadline:
                out = open(log).read()
                if re.search(r"^\| *\d+ *\|", out, re.M) or "exited with status" in out:
                    break
                time.sleep(0.2)
            out = open(log).read()
            # | clients | rate | ops/s | p50 | p90 | p99 | p99.9 | max | errors | ...
            row = re.search(r"^\| *(\d+) *\| *[-\d.]+ *\| *([\d.]+) *\|(?:[^|]*\|){5} *(\d+) *\|", out, re.M)
            if "exited with status" in out or not row:
                problems.append("the client loop did not complete a bench run: %s" % out.strip()[-400:])
            elif float(row.group(2)) <= 0 or row.group(3) != "0":
                problems.append("the client's bench run did %s ops/s with %s errors" % (row.group(2), row.group(3)))
            cp.send_signal(signal.SIGTERM)
            try:
                cp.wait(timeout=3)
            except subprocess.TimeoutExpired:
                problems.append("the client's shell did not stop within 3 s of SIGTERM")

            st = subprocess.run([binary, "status", "--json", "--broker", broker_url, "--cluster", env["MQPAXOS_CLUSTER"],
                                 "--servers", str(servers), "--user", client_user, "--ca-file", ca], capture_output=True, text=True, timeout=20,
                                env=dict(os.environ, MQPAXOS_PASSWORD=SMOKE_PASSWORD))
            try:
                rows = json.loads(st.stdout)
                if sum(1 for r in rows if r.get("online")) != servers or not any(r.get("role") == "leader" for r in rows):
                    problems.append("mqpaxos status: not all %d servers online with a leader: %s" % (servers, st.stdout.strip()))
            except ValueError:
                problems.append("mqpaxos status --json printed no JSON: %s %s" % (st.stdout.strip(), st.stderr.strip()))

            protected = "MQPAXOS_METRICS_TOKEN_FILE" in env_of(sts_all[0]["spec"]["template"]["spec"]["containers"][0])
            if protected:
                code, _ = http("http://127.0.0.1:%d/metrics" % metrics[0])
                if code != 401:
                    problems.append("/metrics without the token answered %s, not 401" % code)
                for probe in ("/health", "/live"):
                    code, _ = http("http://127.0.0.1:%d%s" % (metrics[0], probe))
                    if code != 200:
                        problems.append("%s (a probe, no token) answered %s, not 200" % (probe, code))
            code, text = http("http://127.0.0.1:%d/metrics" % metrics[0], token=token if protected else None)
            if code != 200:
                problems.append("/metrics with the token answered %s, not 200" % code)
            served = set(re.findall(r"^# TYPE (\w+)", text, re.M)) | set(re.findall(r"^(\w+)[{ ]", text, re.M))
            dash = json.load(open(a.dashboard))
            used = {m for p in dash["panels"] for t in p.get("targets", []) for m in re.findall(r"\bmqpaxos_\w+", t.get("expr", ""))}
            for m in sorted(used):
                base = re.sub(r"_(bucket|sum|count|total)$", "", m)
                if m not in served and base not in served:
                    problems.append("the dashboard queries %s, which the server's /metrics does not serve" % m)
        finally:
            for p in procs:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for p in procs:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            if problems:
                for name in sorted(os.listdir(tmp)):
                    if name.endswith(".log"):
                        tail = open(os.path.join(tmp, name)).read().strip().splitlines()[-5:]
                        print("  %s: %s" % (name, " | ".join(tail)))

    for p in problems:
        print("INVALID smoke: %s" % p)
    if not problems:
        print("smoke: %d servers from the servers-3 overlay's entry points elected a leader and served "
              "client1's load loop on the built-in broker with the ACL over %s; the dashboard's metrics are all served"
              % (servers, "TLS" if broker_url.startswith("mqtts://") else "plain MQTT"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
