# What each proxy of `make bench-edge` costs per request, which req/s on a shared machine hides.
# The same upstream and proxy configurations as edge_bench.py, every proxy a listener of one
# Envoy (so all share one process and its placement), each driven in turn by wrk. Two meters:
# `cpu`, the process's CPU time (every thread's /proc/<pid>/task/*/schedstat) over the requests
# wrk completed, median and lowest of the rounds; `instructions`, the same Envoy under
# valgrind's callgrind, instructions executed per request, which other work on the machine
# cannot disturb (a fixed number of requests, one at a time, per proxy; the callgrind files
# say where they go). Variants of the native module run side by side: `--native NAME=PATH` adds a
# listener with that module, `--config NAME=TEXT` gives it its own configuration.
# A profiling aid, not a test: it prints a table and exits non-zero only when nothing ran.
"""Usage: cpu_per_request.py --envoy PATH [--native NAME=PATH]... [--config NAME=TEXT]...
[--floor PATH] [--lua] [--path /webhook/seed] [--meter cpu|instructions] [--rounds 5]
[--seconds 3] [--connections 16] [--requests 300] [--out DIR]"""

from __future__ import annotations

import argparse
import atexit
import copy
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

import edge_bench as eb
from proxies import native_filter, native_floor_filter, proxy_config, upstream_config


def cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def one_envoy(proxies: dict[str, list], upstream: int) -> dict:
    """One Envoy with a listener per proxy, each with its own filters before the router."""
    config = proxy_config(upstream, 0, [])
    template = config["static_resources"]["listeners"][0]
    config["static_resources"]["listeners"] = []
    for name, filters in proxies.items():
        listener = copy.deepcopy(template)
        listener["name"] = name
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"] = filters + hcm["http_filters"]
        config["static_resources"]["listeners"].append(listener)
    return config


def start_under_callgrind(envoy: str, config: dict, work: Path) -> tuple[subprocess.Popen, str]:
    """Envoy under callgrind with collection off until asked; its admin address."""
    binary = Path(envoy).resolve()
    if binary.read_bytes()[:2] == b"#!":
        # The pip package's launcher execs the real binary; valgrind must start that one.
        found = sorted(binary.parent.parent.glob("lib/python3*/site-packages/envoy/_bin/envoy"))
        if not found:
            raise SystemExit(f"no Envoy binary behind the launcher {binary}")
        binary = found[0]
    (work / "cg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    admin_file = work / "cg.admin"
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         f"--callgrind-out-file={work}/callgrind.out", str(binary), "-c", str(work / "cg.yaml"),
         "--concurrency", "1", "--disable-hot-restart", "--admin-address-path", str(admin_file),
         "-l", "warning"],
        stdout=open(work / "cg.log", "wb"), stderr=subprocess.STDOUT, cwd=work)
    eb.PROCS.append(p)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"envoy under callgrind exited:\n{(work / 'cg.log').read_text()[-3000:]}")
        if admin_file.exists() and admin_file.read_text().strip():
            admin = admin_file.read_text().strip()
            try:
                with urllib.request.urlopen(f"http://{admin}/ready", timeout=10) as r:
                    if r.status == 200:
                        return p, admin
            except OSError:
                pass
        time.sleep(0.5)
    raise SystemExit("envoy under callgrind not ready within 300 s")


def listener_ports(admin: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=30) as r:
        return {s["name"]: s["local_address"]["socket_address"]["port_value"]
                for s in json.load(r)["listener_statuses"]}


def drive(port: int, path: str, n: int) -> int:
    """`n` requests one after another on one keep-alive connection; how many answered 200."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    ok = 0
    try:
        for _ in range(n):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            ok += r.status == 200
    finally:
        conn.close()
    return ok


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def instructions(args, proxies: dict[str, list], upstream: int, work: Path, out: Path) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--meter instructions runs Envoy under valgrind, which is not installed"
                         " (Debian: apt-get install valgrind)")
    p, admin = start_under_callgrind(args.envoy, one_envoy(proxies, upstream), work)
    ports = listener_ports(admin)
    pid = str(p.pid)
    rows = []
    for name in proxies:
        drive(ports[name], args.path, 50)
        before = set(work.glob("callgrind.out*"))
        callgrind_control("-z", pid)
        callgrind_control("-i", "on", pid)
        answered = drive(ports[name], args.path, args.requests)
        callgrind_control("-i", "off", pid)
        if answered != args.requests:
            raise SystemExit(f"{name}: {args.requests - answered} requests not answered 200")
        callgrind_control("-d", name, pid)
        deadline = time.monotonic() + 60
        dumped: list[Path] = []
        while not dumped and time.monotonic() < deadline:
            dumped = sorted(set(work.glob("callgrind.out*")) - before)
            time.sleep(0.2)
        if not dumped:
            raise SystemExit(f"callgrind wrote no dump for {name}")
        time.sleep(0.5)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(dumped[-1], out / f"callgrind.{name}")
        annotated = subprocess.run(["callgrind_annotate", str(out / f"callgrind.{name}")],
                                   capture_output=True, text=True).stdout
        total = re.search(r"^([\d,]+) .*PROGRAM TOTALS", annotated, re.M)
        if not total:
            raise SystemExit(f"no totals in {out / f'callgrind.{name}'}")
        rows.append((name, int(total.group(1).replace(",", "")) / args.requests))
    base = rows[0][1]
    print(f"path {args.path}: instructions per request in the proxy (all threads) under"
          f" callgrind, {args.requests} requests on one connection per proxy (callgrind files in"
          f" {out})")
    print("| proxy | instructions/request | over none |")
    print("|---|---:|---:|")
    for name, per in rows:
        print(f"| {name} | {per:,.0f} | {per - base:+,.0f} |")


def cpu(args, proxies: dict[str, list], upstream: int, work: Path, out: Path) -> None:
    eb.start_envoy(args.envoy, "proxies", one_envoy(proxies, upstream), work)
    pid = eb.PROCS[-1].pid
    ports = listener_ports((work / "proxies.admin").read_text().strip())
    names = list(proxies)
    for name in names:
        eb.wrk(ports[name], args.path, 1, args.connections)
    per_req: dict[str, list[float]] = {n: [] for n in names}
    rps: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        random.shuffle(names)
        for name in names:
            before = cpu_ns(pid)
            w = eb.wrk(ports[name], args.path, args.seconds, args.connections)
            per_req[name].append((cpu_ns(pid) - before) / 1e3 / w["requests"])
            rps[name].append(w["rps"])
    base, low = statistics.median(per_req["none"]), min(per_req["none"])
    print(f"path {args.path}: {args.rounds} rounds of wrk -t1 -c{args.connections}"
          f" -d{args.seconds}s per proxy; load average {eb.loadavg()}")
    print("| proxy | CPU us/request (median) | over none | lowest round | over none's lowest |"
          " each round | req/s (median) |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for name in proxies:
        med, least = statistics.median(per_req[name]), min(per_req[name])
        each = " / ".join(f"{x:.1f}" for x in per_req[name])
        print(f"| {name} | {med:.1f} | {med - base:+.1f} | {least:.1f} | {least - low:+.1f} |"
              f" {each} | {statistics.median(rps[name]):.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--native", action="append", default=[],
                    help="NAME=PATH: a listener with this native module")
    ap.add_argument("--config", action="append", default=[],
                    help="NAME=TEXT: variant NAME's configuration JSON when TEXT is JSON, else put"
                         " TEXT before it")
    ap.add_argument("--floor", type=Path, help="the empty dynamic module")
    ap.add_argument("--lua", action="store_true")
    ap.add_argument("--path", default="/webhook/seed")
    ap.add_argument("--meter", choices=("cpu", "instructions"), default="cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--requests", type=int, default=300, help="per proxy, for `instructions`")
    ap.add_argument("--out", type=Path, default=eb.ROOT / "target" / "cpu-per-request")
    args = ap.parse_args()

    atexit.register(eb.cleanup)
    work = Path(tempfile.mkdtemp(prefix="twiml-guard-cpu."))
    atexit.register(shutil.rmtree, work, True)
    served = {"/webhook/seed": (eb.FIXTURES / "seed_001.xml", "text/xml")}
    for path, (data, content_type) in {
            "/api/calls.json": (eb.json_answer(2 * 1024), "application/json"),
            "/calls.html": (eb.html_page(20 * 1024), "text/html; charset=utf-8"),
            "/webhook/large-conflict": (eb.large_twiml(100 * 1024, True), "text/xml")}.items():
        f = work / path.strip("/").replace("/", "_")
        f.write_bytes(data)
        served[path] = (f, content_type)
    upstream = eb.start_envoy(args.envoy, "upstream", upstream_config(served), work)

    proxies: dict[str, list] = {"none": []}
    if args.floor:
        proxies["native-floor"] = [native_floor_filter(args.floor.resolve())]
    if args.lua:
        proxies["lua"] = [yaml.safe_load(eb.LUA_FILTER.read_text())]
    for spec in args.native:
        name, path = spec.split("=", 1)
        proxies[name] = [native_filter(Path(path).resolve())]
    for spec in args.config:
        name, text = spec.split("=", 1)
        value = proxies[name][0]["typed_config"]["filter_config"]
        value["value"] = text if text.startswith("{") else text + value["value"]
    meter = instructions if args.meter == "instructions" else cpu
    meter(args, proxies, upstream, work, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
