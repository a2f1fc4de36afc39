#!/usr/bin/env python3
"""Smoke test of the rendered manifests with the real binary (run by scripts/validate-deploy).

Schemas say nothing about whether the pods' shell scripts and MQPAXOS_* settings work with
the mqpaxos binary. This runs them: the servers-3 overlay's server entry point three times
(as pods mqpaxos-0..2) and client1's load loop, with the environment the overlay's
ConfigMaps give them, against the built-in broker on 127.0.0.1 enforcing the ACL that
`mqpaxos acl --format mosquitto` prints. Only the broker address, the metrics ports, the data
directories and the password file location are changed (to loopback and temporary ones).

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


def http(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
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
    sts = next(o for o in objs if o["kind"] == "StatefulSet")
    servers = sts["spec"]["replicas"]
    client = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "mqpaxos-client1")
    cms = {o["metadata"]["name"]: o.get("data") or {} for o in objs if o["kind"] == "ConfigMap"}

    def env_of(container):
        env = {}
        for e in container.get("envFrom") or []:
            env.update(cms[e["configMapRef"]["name"]])
        return env

    problems = []
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        bindir = os.path.join(tmp, "bin")
        os.mkdir(bindir)
        os.symlink(binary, os.path.join(bindir, "mqpaxos"))
        path = bindir + ":/usr/local/bin:/usr/bin:/bin"
        # The ACL for the overlay's cluster name, and a password file (the built-in broker
        # refuses an ACL without one): every server and the client with one test password.
        cluster = env_of(sts["spec"]["template"]["spec"]["containers"][0]).get("MQPAXOS_CLUSTER", "default")
        client_user = next(e["value"] for e in client["spec"]["template"]["spec"]["containers"][0]["env"]
                           if e["name"] == "MQPAXOS_USER")
        acl = os.path.join(tmp, "acl.conf")
        with open(acl, "w") as f:
            subprocess.run([binary, "acl", "--format", "mosquitto", "--servers", str(servers), "--cluster", cluster],
                           stdout=f, check=True)
        passwd = os.path.join(tmp, "passwd")
        for u in ["server%d" % (k + 1) for k in range(servers)] + [client_user]:
            subprocess.run([binary, "broker", "--password-file", passwd, "--add-user", u],
                           env={"PATH": path, "MQPAXOS_PASSWORD": SMOKE_PASSWORD}, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = free_port()
        broker_url = "mqtt://127.0.0.1:%d" % port

        def start(args, env, log):
            p = subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(p)
            return p

        try:
            start([binary, "broker", "--listen", "127.0.0.1:%d" % port, "--password-file", passwd, "--acl-file", acl], {"PATH": path}, os.path.join(tmp, "broker.log"))
            c = sts["spec"]["template"]["spec"]["containers"][0]
            script = c["args"][0].replace("/etc/mqpaxos/passwords", os.path.join(tmp, "passwords"))
            os.mkdir(os.path.join(tmp, "passwords"))
            metrics = []
            for k in range(servers):
                with open(os.path.join(tmp, "passwords", "server%d" % (k + 1)), "w") as f:
                    f.write(SMOKE_PASSWORD + "\n")
                env = env_of(c)
                mport = free_port()
                metrics.append(mport)
                env.update(PATH=path, POD_NAME="%s-%d" % (sts["metadata"]["name"], k), MQPAXOS_BROKER=broker_url,
                           MQPAXOS_METRICS="127.0.0.1:%d" % mport, MQPAXOS_DATA_DIR=os.path.join(tmp, "data%d" % k))
                start(c["command"] + [script], env, os.path.join(tmp, "server%d.log" % (k + 1)))
            deadline = time.time() + 20
            while time.time() < deadline and not all(http("http://127.0.0.1:%d/health" % m)[0] == 200 for m in metrics):
                time.sleep(0.2)
            for k, m in enumerate(metrics):
                if http("http://127.0.0.1:%d/health" % m)[0] != 200:
                    problems.append("server %d (pod %s-%d) is not healthy after 20 s" % (k + 1, sts["metadata"]["name"], k))

            cc = client["spec"]["template"]["spec"]["containers"][0]
            env = env_of(cc)
            user = next(e["value"] for e in cc["env"] if e["name"] == "MQPAXOS_USER")
            env.update(PATH=path, MQPAXOS_BROKER=broker_url, MQPAXOS_USER=user, MQPAXOS_PASSWORD=SMOKE_PASSWORD,
                       BENCH_DURATION="2s")
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
                                 "--servers", str(servers), "--user", client_user], capture_output=True, text=True, timeout=20,
                                env=dict(os.environ, MQPAXOS_PASSWORD=SMOKE_PASSWORD))
            try:
                rows = json.loads(st.stdout)
                if sum(1 for r in rows if r.get("online")) != servers or not any(r.get("role") == "leader" for r in rows):
                    problems.append("mqpaxos status: not all %d servers online with a leader: %s" % (servers, st.stdout.strip()))
            except ValueError:
                problems.append("mqpaxos status --json printed no JSON: %s %s" % (st.stdout.strip(), st.stderr.strip()))

            _, text = http("http://127.0.0.1:%d/metrics" % metrics[0])
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
        print("smoke: %d servers from the servers-3 overlay's entry point elected a leader and served "
              "client1's load loop on the built-in broker with the ACL; the dashboard's metrics are all served" % servers)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
