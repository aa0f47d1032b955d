#!/usr/bin/env python3
"""The whole comparison (`make bench`): pychat and the four peers of bench/peers/, every
scenario, one run on this machine. Writes bench/results/<date>.json, the perf profiles beside
it, and the generated tables of docs/benchmarks.md (between the bench:results markers).

    python3 bench/run.py            # everything (about 12 minutes)
    python3 bench/run.py --only fanout,signal --no-docs

Every server is started fresh for its run (a new database for PostgreSQL and MariaDB, a temp
directory for SQLite, a private redis-server for clusters) and stopped after it.
"""

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import re
import resource
import statistics
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import curves  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
PEERS = ["limit", "node-ws", "node-socketio", "flask-socketio"]
FRAMING = {"limit": "relay", "node-ws": "relay", "node-socketio": "socketio", "flask-socketio": "socketio"}
TARGETS = ["pychat"] + PEERS
# The sweep's offered loads: shares of each server's own saturation (dm, fan-out), and signals per
# second in all over SIGNAL_ROOMS call rooms of two (signaling has no saturation mode).
SWEEP_SHARES = (1, 2, 4, 10, 25, 50, 70, 90)
# The store-only ceiling is the best of these writer threads × rows per transaction.
STORE_SHAPES = ((1, 256), (1, 1000), (2, 256), (4, 256), (8, 256))
SIGNAL_ROOMS = 8
# (members besides the sender, groups) of the groups scenario.
GROUP_SHAPES = ((10, 1), (100, 1), (1000, 1), (100, 10))
SIGNAL_LOADS = (160, 640, 1600, 6400, 16000, 32000, 64000)
SCENARIOS = ["idle", "dm", "fanout", "groups", "list", "signal", "sweep", "login", "cluster", "profile"]
BACKENDS = ["sqlite", "postgres", "mysql"]
# A benchmark server does not rate-limit its own load generator; bcrypt at its minimum cost
# except in the login storm, which is about bcrypt.
PYCHAT_ENV = {
    "PYCHAT_BCRYPT_COST": "4",
    "PYCHAT_WS_RATE_PER_SEC": "1000000",
    "PYCHAT_WS_RATE_BURST": "1000000",
    # The abuse limits, too: every client of the generator is one loopback address.
    "PYCHAT_REGISTRATIONS_PER_ADDRESS_PER_HOUR": "1000000",
    "PYCHAT_TICKETS_PER_USER_PER_MINUTE": "1000000",
    "PYCHAT_WS_CONNECTIONS_PER_USER": "1000000",
    "PYCHAT_WS_CONNECTIONS_PER_ADDRESS": "1000000",
    "PYCHAT_LOGIN_CONCURRENCY_PER_ADDRESS": "64",
    "PYCHAT_LOG": "warn",
    # A group of 1000 listeners and its sender (the default limit is 1000 members in all).
    "PYCHAT_GROUP_MAX_MEMBERS": "1001",
    "PYCHAT_JWT_SECRET": "bench-secret-shared-by-every-instance-of-a-cluster-0123456789",
}


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def established(port):
    """Established TCP connections whose local port is `port` (the server's side)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, check=False,
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip())


TICKS = os.sysconf("SC_CLK_TCK")
DATABASE_PROCESSES = {"postgres": ("postgres",), "mysql": ("mariadbd", "mysqld")}


def processes():
    """{pid: (command name, parent pid)} of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = pathlib.Path(f"/proc/{entry}/stat").read_text()
                found[int(entry)] = (text[text.index("(") + 1:text.rindex(")")], int(text.rsplit(")", 1)[1].split()[1]))
    return found


def cpu_secs(pid):
    """User + system CPU seconds of one process (all its threads)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    return 0.0


def machine_ticks():
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    values = [int(v) for v in pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU used during one generator run, in cores (CPU seconds / wall seconds): the servers and
    their child processes, the database server's processes (none for SQLite: it runs inside
    pychat), the generator (this script's children waited meanwhile), and the whole machine."""

    def __init__(self, servers, backend):
        self.roots = {s.pid for s in servers}
        self.database = DATABASE_PROCESSES.get(backend, ())
        self.started = time.time()
        self.children = self.children_secs()
        self.server0, self.database0 = self.sample()
        self.machine0 = machine_ticks()

    @staticmethod
    def children_secs():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def sample(self):
        procs = processes()
        tree, grew = set(self.roots), True
        while grew:
            more = {pid for pid, (_, parent) in procs.items() if parent in tree} - tree
            tree |= more
            grew = bool(more)
        database = {pid for pid, (name, _) in procs.items() if name in self.database}
        return {pid: cpu_secs(pid) for pid in tree}, {pid: cpu_secs(pid) for pid in database}

    def stop(self):
        wall = time.time() - self.started
        server, database = self.sample()
        busy, total = machine_ticks()
        cores = os.cpu_count() or 1

        def delta(now, before):
            return sum(max(0.0, secs - before.get(pid, 0.0)) for pid, secs in now.items())

        report = {
            "wall_secs": round(wall, 2),
            "server_cores": round(delta(server, self.server0) / wall, 2),
            "database_cores": round(delta(database, self.database0) / wall, 2) if self.database else None,
            "generator_cores": round((self.children_secs() - self.children) / wall, 2),
            "machine_busy": round((busy - self.machine0[0]) / max(1, total - self.machine0[1]), 2),
            "cores": cores,
        }
        serving = report["server_cores"] + (report["database_cores"] or 0)
        # The generator limits when the machine is full and the generator is the bigger user of it.
        report["generator_bound"] = report["machine_busy"] >= 0.9 and report["generator_cores"] >= serving
        return report


class Server:
    """One server process (pychat or a peer) on a free port."""

    def __init__(self, name, cmd, env, workdir):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = pathlib.Path(workdir) / f"{name}-{self.port}.log"
        full_env = dict(os.environ, **env)
        full_env["PORT"] = str(self.port)
        full_env["PYCHAT_BIND"] = f"127.0.0.1:{self.port}"
        cmd = [part.replace("{port}", str(self.port)) for part in cmd]
        self.command = " ".join(shlex.quote(c) for c in cmd)
        self.proc = subprocess.Popen(
            cmd, env=full_env, cwd=ROOT, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT
        )
        self.pid = self.proc.pid

    def wait_ready(self, http_path=None, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if http_path:
                    urllib.request.urlopen(self.url + http_path, timeout=1).read()
                else:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout} s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="pychat-bench-")
        self.runs = []
        self.backend = None

    # ---- servers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def redis(self):
        port = free_port()
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 10
            while time.time() < deadline:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait()

    @contextlib.contextmanager
    def database(self, backend):
        name = f"bench_{os.getpid()}_{int(time.time() * 1000)}"
        self.backend = backend
        if backend == "sqlite":
            yield None
            return
        if backend == "postgres":
            subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f"create database {name}"], check=True)
            url = f"postgres://postgres@127.0.0.1:5432/{name}?gssencmode=disable"
            drop = ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f"drop database if exists {name} with (force)"]
        else:
            subprocess.run(["mysql", "-h127.0.0.1", "-uroot", "-e", f"create database {name}"], check=True)
            url = f"mysql://root@127.0.0.1:3306/{name}"
            drop = ["mysql", "-h127.0.0.1", "-uroot", "-e", f"drop database if exists {name}"]
        try:
            yield url
        finally:
            subprocess.run(drop, check=False, capture_output=True)

    @contextlib.contextmanager
    def pychat(self, backend="sqlite", instances=1, env=None):
        """`instances` pychat processes on one database (with a private Redis when > 1)."""
        servers = []
        with contextlib.ExitStack() as stack:
            db = stack.enter_context(self.database(backend))
            redis = stack.enter_context(self.redis()) if instances > 1 else None
            data = tempfile.mkdtemp(dir=self.work)
            base = dict(PYCHAT_ENV, PYCHAT_DATA_DIR=data, **(env or {}))
            if db:
                base["PYCHAT_DATABASE_URL"] = db
            if redis:
                base["PYCHAT_REDIS_URL"] = redis
                if backend == "sqlite":
                    base["PYCHAT_SINGLE_MACHINE"] = "true"
            try:
                for i in range(instances):
                    server = Server(f"pychat{i}", [str(BIN / "pychat"), "serve"], base, self.work)
                    servers.append(server)
                    # The first applies the migrations; the others start after it.
                    server.wait_ready("/readyz")
                yield servers
            finally:
                for server in servers:
                    server.stop()

    @contextlib.contextmanager
    def peer(self, name, instances=1):
        self.backend = None
        servers = []
        with contextlib.ExitStack() as stack:
            env = {}
            if instances > 1:
                env["REDIS_URL"] = stack.enter_context(self.redis())
            try:
                for i in range(instances):
                    server = Server(f"{name}{i}", ["bench/peers/start.sh", name, "{port}"], env, self.work)
                    servers.append(server)
                    server.wait_ready()
                yield servers
            finally:
                for server in servers:
                    server.stop()

    @contextlib.contextmanager
    def target(self, target, instances=1, backend="sqlite", env=None):
        if target == "pychat":
            with self.pychat(backend, instances, env) as servers:
                yield servers
        else:
            with self.peer(target, instances) as servers:
                yield servers

    # ---- the generator -------------------------------------------------------------------

    def generator(self, target, servers, scenario, *args):
        cmd = [str(BIN / "pychat-bench"), "--server", servers[0].url]
        if target != "pychat":
            cmd += ["--target", FRAMING[target]]
        if len(servers) > 1:
            cmd += ["--cluster", servers[1].url]
        return cmd + [scenario, *map(str, args)]

    def run(self, label, target, servers, scenario, *args, setup="", record=True, timeout=300):
        cmd = self.generator(target, servers, scenario, *args)
        log(f"{label}: {target} {scenario} {' '.join(map(str, args))}")
        meter = CpuMeter(servers, self.backend)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        cpu = meter.stop()
        if out.returncode != 0:
            report = {"failed": out.stderr.strip()[-500:]}
            log(f"  FAILED: {report['failed']}")
        else:
            report = json.loads(out.stdout.strip().splitlines()[-1])
        entry = {"label": label, "target": target, "scenario": scenario, "setup": setup,
                 "command": " ".join(shlex.quote(c) for c in cmd), "report": report, "cpu": cpu}
        if record:
            self.runs.append(entry)
        return entry

    def spawn(self, target, servers, scenario, *args):
        cmd = self.generator(target, servers, scenario, *args)
        return cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # ---- scenarios -----------------------------------------------------------------------

    def idle(self):
        for target in TARGETS:
            sizes = [10_000, 19_500] if target == "pychat" else [10_000]
            for n in sizes:
                with self.target(target) as servers:
                    self.idle_run(f"idle {n}", target, servers, n)
        with self.pychat("postgres", instances=6) as servers:
            self.idle_run("idle 100k cluster", "pychat", servers, 100_000)

    def idle_run(self, label, target, servers, total):
        """`total` idle connections spread evenly over `servers`, by generator processes of at
        most 9,750 connections each (20,000 open files per process); server memory is read by
        this script once every connection is established."""
        per_process = 9750
        processes = -(-total // per_process)
        baseline = {s.pid: rss_kib(s.pid) for s in servers}
        procs, commands = [], []
        source = 2
        for p in range(processes):
            server = servers[p % len(servers)]
            n = total // processes + (1 if p < total % processes else 0)
            sources = ",".join(f"127.0.0.{source + i}" for i in range(2))
            source += 2
            cmd, proc = self.spawn(target, [server], "idle", "--connections", n, "--users", 50,
                                   "--hold", 15, "--sources", sources)
            procs.append(proc)
            commands.append(" ".join(shlex.quote(c) for c in cmd))
        deadline = time.time() + 240
        counts = {}
        while time.time() < deadline:
            counts = {s.port: established(s.port) for s in servers}
            if sum(counts.values()) >= total or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.5)
        time.sleep(3)  # let allocations settle
        counts = {s.port: established(s.port) for s in servers}
        after = {s.pid: rss_kib(s.pid) for s in servers}
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            reports.append(json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 else {"failed": err[-500:]})
        held = sum(counts.values())
        growth = sum(after[s.pid] - baseline[s.pid] for s in servers if after[s.pid] and baseline[s.pid])
        report = {
            "scenario": "idle", "target": target, "instances": len(servers), "requested": total,
            "established_at_sample": held,
            "server_rss_growth_kib": growth,
            "server_kib_per_connection": growth / held if held else None,
            "failed_connections": sum(r.get("failed", 0) for r in reports if isinstance(r.get("failed", 0), int)),
            "failed_generators": sum(1 for r in reports if isinstance(r.get("failed"), str)),
            "generators": reports,
        }
        log(f"  {label} {target}: {held} established, {report['server_kib_per_connection']} KiB/conn")
        self.runs.append({"label": label, "target": target, "scenario": "idle",
                          "setup": f"{len(servers)} instance(s)", "command": " & ".join(commands), "report": report})

    def dm(self):
        for backend in BACKENDS:
            self.store_ceiling(backend)
            for _ in range(self.args.repeats):
                with self.pychat(backend) as servers:
                    self.run(f"dm saturation {backend}", "pychat", servers, "dm", "--pairs", 10, "--rate", 0,
                             "--duration", 8, setup=backend)
        for target in PEERS:
            for _ in range(self.args.repeats):
                with self.target(target) as servers:
                    self.run("dm saturation relay", target, servers, "dm", "--pairs", 10, "--rate", 0, "--duration", 8)

    def store_ceiling(self, backend):
        if subprocess.run([str(BIN / "pychat-bench"), "store", "--help"], capture_output=True).returncode != 0:
            return
        for writers, batch in STORE_SHAPES:
            with self.database(backend) as url:
                url = url or f"sqlite://{tempfile.mkdtemp(dir=self.work)}/store.db"
                cmd = [str(BIN / "pychat-bench"), "store", "--database-url", url, "--writers", str(writers),
                       "--batch", str(batch), "--duration", "5"]
                log(f"store ceiling {backend}: {writers} writers x {batch}")
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
                report = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0
                          else {"failed": out.stderr[-500:]})
                self.runs.append({"label": f"store {backend}", "target": "diesel", "scenario": "store",
                                  "setup": backend, "command": " ".join(cmd), "report": report})

    def fanout(self):
        for k in (10, 100, 1000):
            for target in TARGETS:
                with self.target(target) as servers:
                    self.run(f"fanout k={k}", target, servers, "fanout", "--listeners", k, "--rate", 0,
                             "--window", 16, "--duration", 5, "--sources", "127.0.0.2,127.0.0.3")

    def groups(self):
        """Stored group fan-out on each backend beside the peers relaying to rooms of the same
        size: one sender and k members for k = 10, 100, 1000, and 10 groups of 100 at once."""
        for members, groups in GROUP_SHAPES:
            label = f"groups {groups}x{members}"
            for backend in BACKENDS:
                with self.pychat(backend) as servers:
                    self.run(label, "pychat", servers, "groups", "--members", members, "--groups", groups,
                             "--rate", 0, "--window", 16, "--duration", 5, "--sources", "127.0.0.2,127.0.0.3",
                             setup=backend)
            for target in PEERS:
                with self.target(target) as servers:
                    self.run(label, target, servers, "groups", "--members", members, "--groups", groups,
                             "--rate", 0, "--window", 16, "--duration", 5, "--sources", "127.0.0.2,127.0.0.3")

    def list(self):
        """The first page of the conversation list of a user in 500 conversations (20 unread
        messages in each), on each backend."""
        for backend in BACKENDS:
            with self.pychat(backend) as servers:
                self.run("list 500", "pychat", servers, "list", "--conversations", 500, "--unread", 20,
                         "--page", 100, "--requests", 200, setup=backend, timeout=600)

    def signal(self):
        for target in TARGETS:
            with self.target(target) as servers:
                self.run("signal calm", target, servers, "signal", "--rooms", 1, "--rate", 200, "--duration", 5)
            for _ in range(self.args.repeats):
                with self.target(target) as servers:
                    cmd, background = self.spawn(target, servers, "dm", "--pairs", 10, "--rate", 0, "--duration", 10)
                    time.sleep(1.5)
                    entry = self.run("signal under dm load", target, servers, "signal", "--rooms", 1, "--rate", 200,
                                     "--duration", 8)
                    before = CpuMeter.children_secs()
                    out, _ = background.communicate(timeout=120)
                    entry["cpu"]["background_generator_cpu_secs"] = round(CpuMeter.children_secs() - before, 2)
                    with contextlib.suppress(ValueError, IndexError):
                        entry["report"]["background"] = json.loads(out.strip().splitlines()[-1])
                    entry["setup"] = "background: " + " ".join(shlex.quote(c) for c in cmd)

    # ---- latency against load ------------------------------------------------------------

    def sweep(self):
        """Latency against offered load, ~1 % of saturation to saturation, for dm (each backend,
        beside each peer's relay), call signaling and fan-out: the curves of docs/benchmarks.md."""
        secs = self.args.point_secs
        for backend in BACKENDS:
            with self.pychat(backend) as servers:
                self.sweep_shares(f"sweep dm {backend}", "pychat", servers, "dm", ["--pairs", 20, "--window", 16],
                                  lambda r: r.get("acked_per_sec"), secs)
        for target in PEERS:
            with self.target(target) as servers:
                self.sweep_shares("sweep dm relay", target, servers, "dm", ["--pairs", 20, "--window", 16],
                                  lambda r: r.get("delivered_per_sec"), secs)
        for target in TARGETS:
            with self.target(target) as servers:
                # Offered load = fan-out deliveries per second (sends/s × k).
                self.sweep_shares("sweep fanout k=100", target, servers, "fanout",
                                  ["--listeners", 100, "--window", 16, "--sources", "127.0.0.2,127.0.0.3"],
                                  lambda r: (r.get("delivered_per_sec") or 0) / 100, secs, scale=100)
        for target in TARGETS:
            with self.target(target) as servers:
                peers = 2 * SIGNAL_ROOMS
                for repeat in range(self.args.repeats):
                    for total in (SIGNAL_LOADS if repeat % 2 == 0 else SIGNAL_LOADS[::-1]):
                        entry = self.run("sweep signal", target, servers, "signal", "--rooms", SIGNAL_ROOMS,
                                         "--rate", total / peers, "--duration", secs)
                        achieved = curves.achieved_of(entry["report"]) or 0
                        entry.update(load=total, share=None, below_saturation=achieved >= 0.95 * total)

    def sweep_shares(self, label, target, servers, scenario, args, rate_of, secs, scale=1):
        """Saturation first (rate 0), then fixed rates at SWEEP_SHARES of it, each `--repeats`
        times (every other pass from the top, so drift shows as spread)."""
        saturation = []
        for _ in range(self.args.repeats):
            entry = self.run(label, target, servers, scenario, *args, "--rate", 0, "--duration", secs)
            rate = rate_of(entry["report"]) or 0
            entry.update(load=round(rate * scale), share=100, below_saturation=False)
            saturation.append(rate)
        rate = statistics.median(saturation)
        if not rate:
            return
        for repeat in range(self.args.repeats):
            for share in (SWEEP_SHARES if repeat % 2 == 0 else SWEEP_SHARES[::-1]):
                offered = max(1, round(rate * share / 100))
                entry = self.run(label, target, servers, scenario, *args, "--rate", offered, "--duration", secs)
                entry.update(load=offered * scale, share=share, below_saturation=share <= 70)

    def login(self):
        # The server's real bcrypt cost (12), not the benchmark's 4: the storm is about bcrypt.
        with self.pychat(env={"PYCHAT_BCRYPT_COST": "12"}) as servers:
            self.run("login storm", "pychat", servers, "login", "--rooms", 4, "--rate", 100, "--phase", 5,
                     "--concurrency", 8, "--accounts", 16, setup="bcrypt cost 12", timeout=600)

    def cluster(self):
        for target in ("pychat", "node-socketio", "flask-socketio"):
            with self.target(target, instances=2, backend="postgres") as servers:
                self.run("cluster dm", target, servers, "dm", "--pairs", 10, "--rate", 0, "--duration", 10,
                         setup="2 instances + Redis")
            with self.target(target, instances=2, backend="postgres") as servers:
                self.run("cluster fanout k=100", target, servers, "fanout", "--listeners", 100, "--rate", 0,
                         "--window", 16, "--duration", 5, setup="2 instances + Redis")
        # A 1000-member group fanned out across instances (against `groups 1x1000` on one).
        with self.pychat("postgres", instances=2) as servers:
            self.run("cluster groups 1x1000", "pychat", servers, "groups", "--members", 1000, "--groups", 1,
                     "--rate", 0, "--window", 16, "--duration", 5, "--sources", "127.0.0.2,127.0.0.3",
                     setup="2 instances + Redis")

    def profile(self):
        """System-wide perf profiles while pychat runs dm (PostgreSQL), fan-out (k=100) and stored
        group fan-out (10 groups of 100, PostgreSQL): which process gets the two cores, and
        pychat's hottest functions."""
        if subprocess.run(["perf", "--version"], capture_output=True).returncode != 0:
            log("perf missing: no profiles")
            return
        for name, backend, args in (
            ("dm", "postgres", ["dm", "--pairs", 10, "--rate", 0, "--duration", 8]),
            ("fanout", "sqlite", ["fanout", "--listeners", 100, "--rate", 0, "--window", 16, "--duration", 8]),
            ("groups", "postgres", ["groups", "--members", 100, "--groups", 10, "--rate", 0, "--window", 16,
                                    "--duration", 8]),
        ):
            with self.pychat(backend) as servers:
                cmd, gen = self.spawn("pychat", servers, *args)
                time.sleep(2)
                data = pathlib.Path(self.work) / f"perf-{name}.data"
                subprocess.run(["perf", "record", "-a", "-F", "499", "-o", str(data), "--", "sleep", "5"],
                               capture_output=True, check=False)
                gen.communicate(timeout=120)
                by_process = subprocess.run(
                    ["perf", "report", "-i", str(data), "--stdio", "--sort", "comm", "--percent-limit", "0.5"],
                    capture_output=True, text=True, check=False).stdout
                by_library = subprocess.run(
                    ["perf", "report", "-i", str(data), "--stdio", "--pid", str(servers[0].pid),
                     "--sort", "dso", "--percentage", "relative", "--percent-limit", "1"],
                    capture_output=True, text=True, check=False).stdout
                hottest = subprocess.run(
                    ["perf", "report", "-i", str(data), "--stdio", "--pid", str(servers[0].pid),
                     "--sort", "dso,sym", "--percentage", "relative", "--percent-limit", "0.7"],
                    capture_output=True, text=True, check=False).stdout
                path = self.results_dir() / f"{self.date()}-perf-{name}.txt"
                path.write_text(
                    f"# {name}: pychat ({backend}) under `{' '.join(map(str, args))}`\n"
                    f"# perf record -a -F 499 -- sleep 5 (5 s in the middle of the run)\n\n"
                    f"## CPU by thread name, whole machine (pychat: actix-rt|system = its workers, "
                    f"pychat-writer* = message writers, pychat-bcrypt*; the generator: tokio-rt-worker; "
                    f"swapper = idle)\n{strip_comments(by_process)}\n"
                    f"## pychat's own CPU by library (pid {servers[0].pid}, share of pychat)\n"
                    f"{strip_comments(by_library)}\n"
                    f"## pychat's hottest functions (share of pychat)\n{strip_comments(hottest)}\n")
                self.runs.append({"label": f"profile {name}", "target": "pychat", "scenario": "profile",
                                  "setup": backend, "command": " ".join(shlex.quote(str(c)) for c in cmd),
                                  "report": {"file": str(path.relative_to(ROOT))}})

    # ---- output --------------------------------------------------------------------------

    def date(self):
        return datetime.date.today().isoformat()

    def results_dir(self):
        path = ROOT / "bench" / "results"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def machine(self):
        mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        def version(cmd):
            with contextlib.suppress(OSError):
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                return (out.stdout or out.stderr).strip().splitlines()[0]
            return None
        def short(text, pattern):
            found = re.search(pattern, text or "")
            return found.group(1) if found else text

        return {
            "cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "kernel": platform.release(), "open_files": subprocess.run(["sh", "-c", "ulimit -n"], capture_output=True, text=True).stdout.strip(),
            "postgres": "PostgreSQL " + short(version(["psql", "--version"]), r"(\d+\.\d+)"),
            "mariadb": "MariaDB " + short(version(["mysql", "--version"]), r"Distrib ([\d.]+)"),
            "redis": "Redis " + short(version(["redis-server", "--version"]), r"v=([\d.]+)"),
            "node": version(["node", "--version"]),
            "python": version(["python3", "--version"]),
            "pychat_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        }

    def write(self, started):
        result = {
            "date": self.date(), "duration_secs": round(time.time() - started),
            "command": "make bench", "machine": self.machine(), "repeats": self.args.repeats,
            "point_secs": self.args.point_secs, "runs": self.runs,
        }
        path = self.results_dir() / f"{self.date()}.json"
        if self.args.merge and path.exists():
            # Runs of this invocation replace those of the same label and target.
            fresh = {(r["label"], r["target"]) for r in self.runs}
            earlier = json.loads(path.read_text())
            kept = [r for r in earlier["runs"] if (r["label"], r["target"]) not in fresh]
            result["runs"] = kept + self.runs
            result["duration_secs"] = earlier["duration_secs"]
            result["reruns"] = earlier.get("reruns", []) + [
                {"only": self.args.only, "commit": result["machine"]["pychat_commit"]}]
            result["machine"] = earlier["machine"]
        path.write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {path.relative_to(ROOT)}")
        if not self.args.no_docs:
            render_docs(result, path.relative_to(ROOT))
        return result


def strip_comments(text):
    return "\n".join(l for l in text.splitlines() if l.strip() and not l.startswith("#")) + "\n"


# ---- the tables of docs/benchmarks.md ------------------------------------------------------

BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def fmt(value, digits=0):
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def sweep_curves(runs):
    """{scenario: [(curve name, points)]} from the sweep runs."""
    found = {}
    for label, scenario in (("sweep dm", "dm"), ("sweep fanout k=100", "fanout"), ("sweep signal", "signal")):
        if scenario == "dm":
            wanted = [(f"{label} {b}", "pychat", f"pychat {b}") for b in BACKENDS]
            wanted += [(f"{label} relay", t, t) for t in PEERS]
        else:
            wanted = [(label, t, t) for t in TARGETS]
        for want, target, name in wanted:
            entries = [r for r in runs if r["label"] == want and r["target"] == target and "load" in r]
            if entries:
                found.setdefault(scenario, []).append((name, curves.points(entries)))
    return found


SWEEP_TITLES = {
    "dm": ("Direct messages: 20 pairs, at most 16 unacked per connection (pychat: stored, acked after the commit)",
           "offered msgs/s"),
    "fanout": ("Fan-out: one sender, k = 100 listeners, nothing stored", "offered deliveries/s"),
    "signal": ("Call signaling: 8 rooms of two peers relaying ICE candidates", "offered signals/s"),
}


def sweep_regressions(result):
    return [(scenario, name, low, high) for scenario, named in sweep_curves(result["runs"]).items()
            for name, pts in named for low, high in curves.regressions(pts)]


def sweep_section(result):
    named_curves = sweep_curves(result["runs"])
    if not named_curves:
        return []
    lines = ["### Latency against load", "",
             f"Each point: {result.get('point_secs', 3):g} s of sending at a fixed offered rate, {result.get('repeats', 1)} "
             "times (every other pass from the top); the line is the median, the band the spread. dm and fan-out "
             "go from 1 % of each server's own saturation (measured first, rate 0) to 90 %, and the saturation "
             "itself (×); signaling has no saturation mode, so its loads are the same for every server and a "
             "point that relayed less than 95 % of what was offered is marked ×.", ""]
    docs = ROOT / "docs" / "bench"
    try:
        import plot
    except ImportError:
        plot = None
        lines += ["(No plots: matplotlib is missing; `scripts/setup.sh bench` installs it in target/bench-venv.)", ""]
    for scenario, named in named_curves.items():
        title, x_label = SWEEP_TITLES[scenario]
        if plot:
            docs.mkdir(parents=True, exist_ok=True)
            plot.plot(docs / f"sweep-{scenario}.svg", title, x_label, named)
            lines += [f"![{title}](bench/sweep-{scenario}.svg)", ""]
        lines += [f"{title}: p50 / p99 / p99.9 ms at each offered load ({x_label}).", "",
                  "| server | " + " | ".join(f"{p['share']} %" if p.get("share") else fmt(p["load"]) for p in named[0][1]) + " |",
                  "| --- | " + " | ".join("---" for _ in named[0][1]) + " |"]
        for name, pts in named:
            cells = []
            for point in pts:
                got = [fmt(point[k]["median"], 1) if k in point else "–" for k, _ in curves.PERCENTILES]
                where = "" if scenario == "signal" else f"{fmt(point['load'])}: "
                cells.append(where + " / ".join(got) + ("" if point["below_saturation"] else " ×"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        if scenario == "dm":
            half = [f"{name} {point['p99_ms']['median']:.1f} ms" for name, pts in named if name.startswith("pychat")
                    for point in pts if point.get("share") == 50 and "p99_ms" in point]
            lines += [f"At 50 % of saturation, p99 (target < 25 ms): {', '.join(half)}.", ""]
    found = sweep_regressions(result)
    rule = (f"p50 at a lower load worse than every repeat at a higher one by × {curves.NOISE_FACTOR} and "
            f"{curves.NOISE_FLOOR_MS} ms, below 70 % of saturation; `bench/curves.py`")
    ours = [f for f in found if f[1].startswith("pychat")]
    if ours:
        lines += [f"**Regressions: pychat's latency is lower at a higher load** ({rule}):", ""]
        for scenario, name, low, high in ours:
            lines.append(f"- {scenario}, {name}: {fmt(low['load'])}/s p50 {low['p50_ms']['min']:.1f} ms (best repeat) "
                         f"against {fmt(high['load'])}/s p50 {high['p50_ms']['max']:.1f} ms (worst repeat)")
        lines.append("")
    else:
        lines += [f"**No pychat curve is non-monotonic** ({rule}).", ""]
    theirs = {}
    for scenario, name, low, high in found:
        if not name.startswith("pychat"):
            worst = theirs.get((scenario, name))
            if not worst or low["p50_ms"]["min"] - high["p50_ms"]["max"] > worst[0]["p50_ms"]["min"] - worst[1]["p50_ms"]["max"]:
                theirs[(scenario, name)] = (low, high)
    if theirs:
        lines += ["Peers' curves that are (their widest gap):", ""]
        for (scenario, name), (low, high) in theirs.items():
            lines.append(f"- {scenario}, {name}: {fmt(low['load'])}/s p50 {low['p50_ms']['min']:.1f} ms against "
                         f"{fmt(high['load'])}/s {high['p50_ms']['max']:.1f} ms")
        lines.append("")
    return lines


def render_docs(result, json_path):
    runs = result["runs"]

    def find(label, target=None):
        return [r for r in runs if r["label"] == label and (target is None or r["target"] == target)]

    def one(label, target):
        found = find(label, target)
        return found[0]["report"] if found else {}

    def ratio(a, b):
        return f"{a / b:.2f}×" if a and b else "–"

    def spread(entries, value):
        """'median (min–max)' of value(report) over the repeats."""
        values = [v for v in (value(e["report"]) for e in entries) if v is not None]
        if not values:
            return "–", None
        med = statistics.median(values)
        text = fmt(med)
        if len(values) > 1:
            text += f" ({fmt(min(values))}–{fmt(max(values))})"
        return text, med

    def lat_cell(entries, digits=1):
        """p50 / p99 / p99.9 ms, each the median over the repeats."""
        values = [curves.latency_of(e["report"]) for e in entries]
        out = []
        for pct in ("p50_ms", "p99_ms", "p999_ms"):
            got = [v.get(pct) for v in values if v.get(pct) is not None]
            out.append(fmt(statistics.median(got), digits) if got else "–")
        return " / ".join(out)

    def cpu_cell(entries):
        """Generator / server / database cores (medians over the repeats), machine busy, and a
        flag when the generator was the limit."""
        cpus = [e.get("cpu") for e in entries if e.get("cpu")]
        if not cpus:
            return "– | –"
        def med(key):
            got = [c[key] for c in cpus if c.get(key) is not None]
            return fmt(statistics.median(got), 2) if got else "–"
        flag = " ⚑ generator-bound" if any(c.get("generator_bound") for c in cpus) else ""
        return f"{med('generator_cores')} / {med('server_cores')} / {med('database_cores')} | {fmt(100 * statistics.median(c['machine_busy'] for c in cpus))} %{flag}"

    lines = [BEGIN, "", f"Generated by `make bench` on {result['date']} in {result['duration_secs'] // 60} min "
             f"(raw numbers, every command: [`{json_path}`](../{json_path})).", ""]
    for rerun in result.get("reruns", []):
        lines += [f"Re-run since with `--merge` (replacing the runs of the same label): {rerun['only']}, "
                  f"at {rerun['commit']}.", ""]
    m = result["machine"]
    lines += ["| machine | |", "| --- | --- |",
              f"| cores | {m['cores']} ({m['cpu']}) |", f"| memory | {m['memory_gib']} GiB |",
              f"| kernel | {m['kernel']} |", f"| open files per process | {m['open_files']} |",
              f"| services | {m['postgres']}; {m['mariadb']}; {m['redis']} |",
              f"| runtimes | Node {m['node']}; {m['python']} |", f"| pychat | {m['pychat_commit']} |", ""]

    lines += ["### Idle connections: server RSS per connection", "",
              "| server | connections held | instances | KiB / connection | target |", "| --- | --- | --- | --- | --- |"]
    for r in [r for r in runs if r["scenario"] == "idle"]:
        rep = r["report"]
        target = "≤ 12 KiB" if r["target"] == "pychat" and "cluster" not in r["label"] else ("100k held" if "cluster" in r["label"] else "")
        lines.append(f"| {r['target']} | {fmt(rep.get('established_at_sample'))} of {fmt(rep.get('requested'))} | "
                     f"{rep.get('instances')} | {fmt(rep.get('server_kib_per_connection'), 1)} | {target} |")
    lines.append("")

    cpu_head = "CPU cores: generator / server / database | machine busy"
    lines += ["### Direct messages: stored and acked (pychat) vs. relayed (peers)", "",
              f"Median of {result.get('repeats', 1)} runs (min–max). {cpu_head}: CPU seconds per second of the "
              "generator run, read from /proc (SQLite runs inside pychat; ⚑ = the machine was full and the "
              "generator used more of it than the server and database together).", "",
              f"| server | backend | acked (or relayed) msgs/s | store-only ceiling | ratio | delivery p50 / p99 / p99.9 ms | {cpu_head} |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for backend in BACKENDS:
        entries = find(f"dm saturation {backend}", "pychat")
        text, acked = spread(entries, lambda r: r.get("acked_per_sec"))
        stores = [s["report"].get("rows_per_sec") for s in find(f"store {backend}") if "rows_per_sec" in s["report"]]
        ceiling = max(stores) if stores else None
        lines.append(f"| pychat | {backend} | {text} | {fmt(ceiling)} | {ratio(acked, ceiling)} (target ≥ 0.70) | "
                     f"{lat_cell(entries)} | {cpu_cell(entries)} |")
    for target in PEERS:
        entries = find("dm saturation relay", target)
        text, _ = spread(entries, lambda r: r.get("delivered_per_sec"))
        lines.append(f"| {target} | none (relay) | {text} | | | {lat_cell(entries)} | {cpu_cell(entries)} |")
    lines += ["", "Store-only ceilings (`pychat-bench store`, no server, both cores for the database), rows/s:", "",
              "| backend | " + " | ".join(f"{w} × {b}" for w, b in STORE_SHAPES) + " |",
              "| --- | " + " | ".join("---" for _ in STORE_SHAPES) + " |"]
    for backend in BACKENDS:
        cells = []
        for writers, batch in STORE_SHAPES:
            got = [s["report"].get("rows_per_sec") for s in find(f"store {backend}")
                   if s["report"].get("writers") == writers and s["report"].get("batch") == batch]
            cells.append(fmt(got[0]) if got else "–")
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    lines.append("")

    lines += ["### Fan-out: one sender, k listeners, nothing stored (at saturation)", "",
              f"| k | server | deliveries/s | ratio pychat / server | p50 / p99 ms | delivered / expected | {cpu_head} |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in (10, 100, 1000):
        base = one(f"fanout k={k}", "pychat").get("delivered_per_sec")
        for target in TARGETS:
            entries = find(f"fanout k={k}", target)
            if not entries:
                continue
            rep = entries[0]["report"]
            lat = rep.get("latency", {})
            lines.append(f"| {k} | {target} | {fmt(rep.get('delivered_per_sec'))} | "
                         f"{'' if target == 'pychat' else ratio(base, rep.get('delivered_per_sec'))} | "
                         f"{fmt(lat.get('p50_ms'), 2)} / {fmt(lat.get('p99_ms'), 2)} | "
                         f"{fmt(rep.get('delivered'))} / {fmt(rep.get('expected_deliveries'))} | {cpu_cell(entries)} |")
    lines += ["", "Targets: pychat ≥ 0.70 × limit, ≥ 5 × node-socketio, ≥ 20 × flask-socketio.", ""]

    lines += ["### Groups: stored group fan-out (pychat) vs relayed rooms (peers), at saturation", "",
              "One sender per group, k members besides it, one connection each; at most 16 messages per group not "
              "yet delivered to all of it. pychat stores and acks every message (the database is in the path); "
              "the peers relay to rooms of k + 1.", "",
              f"| groups × k | server | backend | deliveries/s | ratio pychat / limit | p50 / p99 ms | delivered / expected | {cpu_head} |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for members, groups in GROUP_SHAPES:
        label = f"groups {groups}x{members}"
        limit = one(label, "limit").get("delivered_per_sec")
        rows = [("pychat", e) for e in find(label, "pychat")] + [(t, e) for t in PEERS for e in find(label, t)]
        for target, entry in rows:
            rep = entry["report"]
            lat = rep.get("latency", {})
            lines.append(f"| {groups} × {members} | {target} | {entry.get('setup') or 'none (relay)'} | "
                         f"{fmt(rep.get('delivered_per_sec'))} | "
                         f"{ratio(rep.get('delivered_per_sec'), limit) if target == 'pychat' else ''} | "
                         f"{fmt(lat.get('p50_ms'), 2)} / {fmt(lat.get('p99_ms'), 2)} | "
                         f"{fmt(rep.get('delivered'))} / {fmt(rep.get('expected_deliveries'))} | {cpu_cell([entry])} |")
    lines += ["", "Targets: pychat ≥ 0.70 × limit for k = 100 and 1000, ≥ 0.50 × for 10 × 100.", ""]

    lines += ["### Conversation list: 500 conversations, 20 unread in each", "",
              "`GET /api/conversations?limit=100` 200 times in a row from one client.", "",
              "| backend | listed | p50 / p99 / max ms | target |", "| --- | --- | --- | --- |"]
    for entry in find("list 500", "pychat"):
        rep = entry["report"]
        lat = rep.get("latency", {})
        lines.append(f"| {entry.get('setup')} | {fmt(rep.get('listed'))} | {fmt(lat.get('p50_ms'), 1)} / "
                     f"{fmt(lat.get('p99_ms'), 1)} / {fmt(lat.get('max_ms'), 1)} | p99 < 20 ms |")
    lines.append("")

    lines += ["### Signal relay latency (2 peers × 200/s)", "",
              f"Under load: median of {result.get('repeats', 1)} runs (p99 min–max), each beside a dm saturation run "
              "(its generator's CPU is counted in the machine's, not in the generator column).", "",
              f"| server | calm p50 / p99 ms | under dm load p50 / p99 / p99.9 ms | p99 spread | background delivered/s | {cpu_head} |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for target in TARGETS:
        calm = one("signal calm", target).get("latency", {})
        entries = find("signal under dm load", target)
        p99 = [e["report"].get("latency", {}).get("p99_ms") for e in entries if e["report"].get("latency")]
        bg, _ = spread(entries, lambda r: r.get("background", {}).get("delivered_per_sec"))
        lines.append(f"| {target} | {fmt(calm.get('p50_ms'), 2)} / {fmt(calm.get('p99_ms'), 2)} | "
                     f"{lat_cell(entries, 2)} | {fmt(min(p99), 2) if p99 else '–'}–{fmt(max(p99), 2) if p99 else '–'} | "
                     f"{bg} | {cpu_cell(entries)} |")
    lines += ["", "Target: pychat p99 < 5 ms under background load.", ""]

    lines += sweep_section(result)

    rep = one("login storm", "pychat")
    if rep:
        calm, storm = rep.get("calm_latency", {}), rep.get("storm_latency", {})
        lines += ["### Login storm (pychat, bcrypt cost 12)", "",
                  "| logins/s | login p50 / p99 ms | signal p99 calm → storm ms | storm / calm | target |",
                  "| --- | --- | --- | --- | --- |",
                  f"| {fmt(rep.get('logins_per_sec'), 1)} | {fmt(rep.get('login_latency', {}).get('p50_ms'))} / "
                  f"{fmt(rep.get('login_latency', {}).get('p99_ms'))} | {fmt(calm.get('p99_ms'), 2)} → {fmt(storm.get('p99_ms'), 2)} | "
                  f"{fmt(rep.get('storm_p99_over_calm'), 2)}× | < 2× |", ""]

    lines += ["### Cluster: two instances through Redis", "",
              f"| server | scenario | delivered/s | delivered / sent × receivers | p50 / p99 ms | target | {cpu_head} |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in [r for r in runs if r["label"].startswith("cluster")]:
        rep = r["report"]
        lat = rep.get("delivery_latency") or rep.get("latency") or {}
        expected = rep.get("expected_deliveries", rep.get("sent"))
        lines.append(f"| {r['target']} | {r['label'][8:]} | {fmt(rep.get('delivered_per_sec'))} | "
                     f"{fmt(rep.get('delivered'))} / {fmt(expected)} | "
                     f"{fmt(lat.get('p50_ms'), 1)} / {fmt(lat.get('p99_ms'), 1)} | "
                     f"{'≥ 100k deliveries/s' if r['target'] == 'pychat' else ''} | {cpu_cell([r])} |")
    lines.append("")
    profiles = [r["report"]["file"] for r in runs if r["scenario"] == "profile"]
    if profiles:
        lines += ["Profiles: " + ", ".join(f"[`{p}`](../{p})" for p in profiles), ""]
    failed = [f"{r['label']} ({r['target']})" for r in runs
              if isinstance(r["report"].get("failed"), str) or r["report"].get("failed_generators")]
    if failed:
        lines += ["Runs that failed: " + ", ".join(failed), ""]
    lines.append(END)

    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text += "\n## Latest run\n\n" + "\n".join(lines) + "\n"
    doc.write_text(text)
    log("updated docs/benchmarks.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: " + ",".join(TARGETS))
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each saturation and sweep point (the tables give the median and the spread)")
    parser.add_argument("--point-secs", type=float, default=3, help="seconds of sending per sweep point")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: write the docs (tables, plots) from today's JSON again")
    parser.add_argument("--merge", action="store_true",
                        help="keep today's other results and replace only the runs made now")
    args = parser.parse_args()
    TARGETS[:] = [t for t in args.targets.split(",") if t in TARGETS]
    PEERS[:] = [t for t in TARGETS if t != "pychat"]
    bench = Bench(args)
    started = time.time()
    if args.render_only:
        path = bench.results_dir() / f"{bench.date()}.json"
        result = json.loads(path.read_text())
        render_docs(result, path.relative_to(ROOT))
        return
    try:
        for scenario in args.only.split(","):
            getattr(bench, scenario.strip())()
    finally:
        result = bench.write(started)
    found = [f for f in sweep_regressions(result) if f[1].startswith("pychat")]
    for scenario, name, low, high in found:
        log(f"REGRESSION: {scenario} {name}: p50 {low['p50_ms']['min']:.1f} ms at {low['load']:,.0f}/s, "
            f"worse than {high['p50_ms']['max']:.1f} ms at {high['load']:,.0f}/s")
    if found:
        sys.exit(3)


if __name__ == "__main__":
    main()
