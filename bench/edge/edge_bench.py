# Compares, in one run on one machine, three Envoys in front of the same upstream: no filter, the
# twiml-guard wasm filter (envoy.yaml's filter entry, rewrite/strip) and the Lua filter of
# bench/edge/lua-filter.yaml. First correctness on tests/fixtures/twiml, then wrk load. A benchmark,
# not a test: it prints tables and exits non-zero only when something could not be measured.
"""Usage: edge_bench.py --envoy PATH --wasm PATH [--seconds 5] [--rounds 3] [--warmup 2]
[--connections 16] [--out DIR]"""

from __future__ import annotations

import argparse
import atexit
import difflib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.parsers.expat
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "twiml"
LUA_FILTER = Path(__file__).resolve().parent / "lua-filter.yaml"
CONFIGS = ("none", "wasm", "lua")
LABELS = {"none": "(a) no filter", "wasm": "(b) twiml-guard wasm", "lua": "(c) Lua gsub"}

PROCS: list[subprocess.Popen] = []


def cleanup() -> None:
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def on_signal(signum, _frame) -> None:
    sys.exit(128 + signum)


# ---------------------------------------------------------------------------------------------
# Envoy processes


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def start_envoy(envoy: str, name: str, config: dict, work: Path) -> int:
    """Starts Envoy on port-0 listeners and returns the port the kernel gave its one listener."""
    cfg = work / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    addr_file = work / f"{name}.admin"
    log = open(work / f"{name}.log", "wb")
    p = subprocess.Popen(
        [str(Path(envoy).resolve()), "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
         "--admin-address-path", str(addr_file), "-l", "warning"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work)
    PROCS.append(p)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if p.poll() is not None:
            tail = (work / f"{name}.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"envoy {name} exited with {p.returncode}:\n{tail}")
        if addr_file.exists() and addr_file.read_text().strip():
            admin = addr_file.read_text().strip()
            try:
                with urllib.request.urlopen(f"http://{admin}/ready", timeout=2) as r:
                    ready = r.status == 200
                if ready:
                    with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=2) as r:
                        statuses = json.load(r)["listener_statuses"]
                    return int(statuses[0]["local_address"]["socket_address"]["port_value"])
            except (OSError, KeyError, IndexError, ValueError):
                pass
        time.sleep(0.1)
    raise SystemExit(f"envoy {name} not ready within 60 s (log: {work / (name + '.log')})")


def listener(name: str, routes: list, filters: list, extra_rc: dict | None = None) -> dict:
    rc = {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]}
    rc.update(extra_rc or {})
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": rc,
                "http_filters": filters + [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http."
                                              "router.v3.Router"}}],
            }}]}],
    }


def base(listeners: list, clusters: list | None = None) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": clusters or []},
    }


def upstream_config(bodies: dict[str, Path]) -> dict:
    # Envoy's own direct_response: the cheapest real HTTP server at hand, so the proxies under
    # test, not the upstream, set the pace.
    routes = [{
        "match": {"path": path},
        "direct_response": {"status": 200, "body": {"filename": str(f)}},
        "response_headers_to_add": [{
            "header": {"key": "content-type", "value": "text/xml"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    } for path, f in bodies.items()]
    return base([listener("upstream", routes, [], {"max_direct_response_body_size_bytes": 1 << 20})])


def proxy_config(upstream_port: int, filters: list) -> dict:
    cluster = {
        "name": "upstream", "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": upstream_port}}}}]}]},
    }
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    return base([listener("ingress", routes, filters)], [cluster])


def wasm_filter(wasm: Path) -> dict:
    """The guard's shipped filter entry (envoy.yaml reads it through ECDS from the resource
    deploy/ecds/twiml_guard.json), inline, with the module path made absolute."""
    resource = json.loads((ROOT / "deploy/ecds/twiml_guard.json").read_text())["resources"][0]
    entry = {"name": "twiml_guard", "typed_config": resource["typed_config"]}
    config = entry["typed_config"]["config"]
    config["vm_config"]["code"]["local"]["filename"] = str(wasm)
    # The bench measures TwiML inspection with unsigned requests: no signature checks, so no
    # auth token in the environment either.
    plugin = json.loads(config["configuration"]["value"])
    plugin.pop("signature", None)
    config["configuration"]["value"] = json.dumps(plugin)
    config["vm_config"].pop("environment_variables", None)
    return entry


# ---------------------------------------------------------------------------------------------
# Correctness


class Facts:
    """What expat (apart from the project's own parser) sees in a body. Qualified names stay as
    written: `tw:Record` is not the verb."""

    def __init__(self, body: bytes):
        self.error: str | None = None
        self.records = 0  # <Record> children of a <Response> root
        self.stream = False  # a <Stream> child of <Connect> or <Start>
        self.elements = 0
        self.markup: list[str] = []  # comments, processing instructions, CDATA contents
        stack: list[str] = []

        def start(name, _attrs):
            self.elements += 1
            if len(stack) == 1 and stack[0] == "Response" and name == "Record":
                self.records += 1
            if name == "Stream" and stack and stack[-1] in ("Connect", "Start"):
                self.stream = True
            stack.append(name)

        cdata: list[str] = []
        in_cdata = False

        def text(data):
            if in_cdata:
                cdata.append(data)

        def cdata_edge(opening: bool):
            nonlocal in_cdata
            in_cdata = opening
            if not opening:
                self.markup.append("cdata:" + "".join(cdata))
                cdata.clear()

        p = xml.parsers.expat.ParserCreate()
        p.StartElementHandler = start
        p.EndElementHandler = lambda _n: stack.pop()
        p.CommentHandler = lambda d: self.markup.append("comment:" + d)
        p.ProcessingInstructionHandler = lambda t, d: self.markup.append(f"pi:{t} {d}")
        p.CharacterDataHandler = text
        p.StartCdataSectionHandler = lambda: cdata_edge(True)
        p.EndCdataSectionHandler = lambda: cdata_edge(False)
        try:
            p.Parse(body, True)
        except xml.parsers.expat.ExpatError as e:
            self.error = f"line {e.lineno}: {xml.parsers.expat.ErrorString(e.code)}"


def judge(verdict: str, original: bytes, expected: bytes, status: int, out: bytes) -> str:
    if status != 200:
        return f"WRONG: status {status}"
    if out == expected:
        return "ok"
    got, want = Facts(out), Facts(expected)
    blocking = got.records and got.stream
    # A removed element's indentation left behind as a blank line changes nothing for Twilio.
    if not got.error and not blocking and blankless(out) == blankless(expected):
        return "ok (blank line left)"
    reasons = []
    if want.error:
        reasons.append("edited a body that is not XML")
    elif got.error:
        reasons.append("broke the XML")
    else:
        if blocking:
            reasons.append(f"{got.records} blocking <Record> left")
        if any(m not in Facts(original).markup for m in got.markup):
            reasons.append("edited a comment/CDATA/PI")
        if got.records < want.records:
            reasons.append("removed a <Record> that blocks nothing")
        elif got.elements < want.elements and got.records == want.records:
            reasons.append("removed an element that is not a verb")
    if not reasons:
        reasons.append("changed bytes it should keep")
    return "WRONG: " + ", ".join(reasons)


def blankless(body: bytes) -> bytes:
    return b"\n".join(line for line in body.splitlines() if line.strip())


def fixtures() -> list[tuple[str, str]]:
    rows = []
    for line in (FIXTURES / "manifest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, verdict = line.split()[:2]
            rows.append((name, verdict))
    return rows


def correctness(ports: dict[str, int], out_dir: Path) -> tuple[dict, list[str]]:
    print("\n## Correctness: every fixture in tests/fixtures/twiml through each Envoy\n")
    print("expected: conflict -> the core's strip golden (x.strip.xml), byte for byte;"
          " anything else -> unchanged")
    print()
    print(f"| {'fixture':<34} | {'verdict':<9} | {'(a) none':<8} | {'(b) wasm (x-twiml-guard)':<34} |"
          f" (c) Lua gsub")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 10}|{'-' * 36}|{'-' * 40}")
    score = {c: [0, 0] for c in CONFIGS}
    diffs = []
    rows = fixtures()
    for name, verdict in rows:
        original = (FIXTURES / name).read_bytes()
        golden = FIXTURES / (Path(name).stem + ".strip.xml")
        cells = {}
        for c in CONFIGS:
            expected = golden.read_bytes() if verdict == "conflict" and c != "none" else original
            status, headers, out = http_get(ports[c], f"/fx/{name}")
            (out_dir / c).mkdir(parents=True, exist_ok=True)
            (out_dir / c / name).write_bytes(out)
            result = judge(verdict, original, expected, status, out)
            if result.startswith("ok"):
                score[c][verdict == "malformed"] += 1
            if c == "wasm":
                result += f" ({headers.get('x-twiml-guard', '-')})"
            if c == "lua" and result.startswith("WRONG"):
                diff = difflib.unified_diff(
                    expected.decode("utf-8", "replace").splitlines(),
                    out.decode("utf-8", "replace").splitlines(),
                    f"expected/{name}", f"lua/{name}", n=0, lineterm="")
                diffs.append("\n".join(list(diff)[:14]))
            cells[c] = result
        print(f"| {name:<34} | {verdict:<9} | {cells['none']:<8} | {cells['wasm']:<34} |"
              f" {cells['lua']}")
    print()
    n_bad = sum(1 for _, v in rows if v == "malformed")
    for c in CONFIGS:
        print(f"{LABELS[c]:<22} right on {score[c][0]}/{len(rows) - n_bad} TwiML/XML fixtures,"
              f" {score[c][1]}/{n_bad} malformed ones (forwarded unchanged)")
    print(f"(responses saved under {out_dir})")
    if diffs:
        print("\nWhat the Lua filter actually returned where it is wrong (expected vs got):\n")
        for d in diffs:
            print(d)
            print()
    return score, diffs


# ---------------------------------------------------------------------------------------------
# Load


def large_twiml(target: int, record: bool) -> bytes:
    head = '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n'
    tail = ('  <Connect action="https://voice.example/webhook/stream_ended">\n'
            '    <Stream url="wss://voice.example/ws/twilio-media">\n'
            '      <Parameter name="CallSid" value="CA19ccfe8b0c90c3b22c9fb591bf36aa25" />\n'
            '    </Stream>\n  </Connect>\n</Response>\n')
    rec = ('  <Record maxLength="600" playBeep="false" recordingTrack="inbound" timeout="3"'
           ' transcribe="false" />\n') if record else ""
    says = []
    size = len(head) + len(tail) + len(rec)
    i = 0
    while size < target:
        line = (f'  <Say voice="Polly.Joanna">Menu item {i:05d}: press {i % 10} to hear about'
                f' option {i} &amp; its terms.</Say>\n')
        says.append(line)
        size += len(line)
        i += 1
    return (head + "".join(says) + rec + tail).encode()


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def parse_wrk(text: str) -> dict:
    def dur(s: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
        if not m:
            raise ValueError(f"unparsed wrk duration {s!r}")
        return float(m.group(1)) * UNIT[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    total = re.search(r"(\d+) requests in", text)
    if not (rps and p50 and p99 and total):
        raise SystemExit(f"could not parse wrk output:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:(.*)", text)
    return {"rps": float(rps.group(1)), "p50": dur(p50.group(1)), "p99": dur(p99.group(1)),
            "requests": int(total.group(1)), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1).strip() if errors else ""}


def wrk(port: int, path: str, seconds: int, connections: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s",
           f"http://127.0.0.1:{port}{path}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise SystemExit(f"wrk failed ({r.returncode}): {r.stderr}")
    return parse_wrk(r.stdout)


def check_answer(port: int, config: str, path: str, original: bytes) -> None:
    """The body under load must be the one the config is meant to produce."""
    status, _, out = http_get(port, path)
    ok = status == 200 and (out == original if config == "none" else b"<Record" not in out)
    if not ok:
        raise SystemExit(f"{config} {path}: unexpected answer before load (status {status})")


def load(ports: dict[str, int], bodies: dict[str, bytes], seconds: int, connections: int,
         warmup: int, rounds: int) -> None:
    print("\n## Load: wrk, one config at a time, back to back\n")
    print(f"wrk -t1 -c{connections} -d{seconds}s --latency per measurement; per body, {rounds}"
          f" rounds of (a) (b) (c) interleaved, each Envoy warmed {warmup} s first; the row is the"
          f" round with the median req/s")
    print("loopback; each Envoy --concurrency 1; upstream: a fourth Envoy (direct_response)")
    print(f"machine: {os.cpu_count()} cores shared with other work (wrk, 4 Envoys and anything"
          f" else running); load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| body | config | req/s | p50 ms | p99 ms | vs (a) req/s | req/s of each round |")
    print("|---|---|---:|---:|---:|---:|---|")
    for path, original in bodies.items():
        runs: dict[str, list[dict]] = {c: [] for c in CONFIGS}
        for c in CONFIGS:
            check_answer(ports[c], c, path, original)
            if warmup:
                wrk(ports[c], path, warmup, connections)
        for _ in range(rounds):
            for c in CONFIGS:
                r = wrk(ports[c], path, seconds, connections)
                if r["non2xx"] or r["errors"]:
                    print(f"  ({c} {path}: {r['non2xx']} non-2xx, socket errors: {r['errors']})")
                runs[c].append(r)
        median = {c: sorted(runs[c], key=lambda r: r["rps"])[(rounds - 1) // 2] for c in CONFIGS}
        for c in CONFIGS:
            r = median[c]
            rel = f"{100 * r['rps'] / median['none']['rps']:.0f}%"
            each = " / ".join(f"{x['rps']:.0f}" for x in runs[c])
            print(f"| {path} ({len(original) / 1024:.1f} KiB) | {LABELS[c]} | {r['rps']:.0f} |"
                  f" {r['p50']:.2f} | {r['p99']:.2f} | {rel} | {each} |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--wasm", required=True, type=Path)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "bench-edge")
    args = ap.parse_args()
    if not args.wasm.is_file():
        raise SystemExit(f"no wasm module at {args.wasm}: run `make wasm`")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk (make bench-edge installs it)")

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    work = Path(tempfile.mkdtemp(prefix="twiml-guard-bench-edge."))
    atexit.register(shutil.rmtree, work, True)

    large = {"/large-clean": large_twiml(100 * 1024, False),
             "/large-conflict": large_twiml(100 * 1024, True)}
    for path, data in large.items():
        (work / path.lstrip("/")).write_bytes(data)
    served = {f"/fx/{name}": FIXTURES / name for name, _ in fixtures()}
    served["/seed"] = FIXTURES / "seed_001.xml"
    served.update({p: work / p.lstrip("/") for p in large})

    print(f"# twiml-guard at the edge: no filter vs wasm filter vs Lua filter\n")
    print(f"envoy: {subprocess.run([args.envoy, '--version'], capture_output=True, text=True).stdout.strip()}")
    up = start_envoy(args.envoy, "upstream", upstream_config(served), work)
    lua = yaml.safe_load(LUA_FILTER.read_text())
    filters = {"none": [], "wasm": [wasm_filter(args.wasm.resolve())], "lua": [lua]}
    ports = {c: start_envoy(args.envoy, c, proxy_config(up, filters[c]), work) for c in CONFIGS}

    out_dir = args.out / "responses"
    shutil.rmtree(out_dir, ignore_errors=True)
    correctness(ports, out_dir)
    bodies = {"/seed": served["/seed"].read_bytes(), **large}
    load(ports, bodies, args.seconds, args.connections, args.warmup, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
