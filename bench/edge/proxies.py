# The Envoy configurations `edge_bench.py` starts: the upstream (Envoy's own direct_response), and
# the proxy under test with one of the filter entries (the guard's wasm and native entries as
# shipped, their do-nothing floors). Split from edge_bench.py, which measures.

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The route prefix where a proxy runs without the guard (switched off per route).
OFF = "/off"
MEDIA_PATH = "/ws/twilio-media"


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


def upstream_config(bodies: dict[str, tuple[Path, str]]) -> dict:
    # Envoy's own direct_response: the cheapest real HTTP server at hand, so the proxies under
    # test, not the upstream, set the pace.
    routes = [{
        "match": {"path": path},
        "direct_response": {"status": 200, "body": {"filename": str(f)}},
        "response_headers_to_add": [{
            "header": {"key": "content-type", "value": content_type},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    } for path, (f, content_type) in bodies.items()]
    return base([listener("upstream", routes, [], {"max_direct_response_body_size_bytes": 1 << 20})])


def cluster(name: str, port: int) -> dict:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def proxy_config(upstream_port: int, ws_port: int, filters: list) -> dict:
    """The same listener in every proxy: the media WebSocket route (upgrades on), a route where the
    guard is switched off per route (`OFF`, prefix dropped on the way up), and everything else."""
    off = {"twiml_guard": {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                           "disabled": True}}
    routes = [
        {"match": {"path": MEDIA_PATH},
         "route": {"cluster": "ws_echo", "timeout": "0s",
                   "upgrade_configs": [{"upgrade_type": "websocket"}]}},
        {"match": {"prefix": OFF + "/"},
         "route": {"cluster": "upstream", "prefix_rewrite": "/"},
         "typed_per_filter_config": off},
        {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}},
    ]
    config = base([listener("ingress", routes, filters)],
                  [cluster("upstream", upstream_port), cluster("ws_echo", ws_port)])
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["upgrade_configs"] = [{"upgrade_type": "websocket", "enabled": False}]
    return config


def shipped_entry() -> dict:
    """The guard's filter resource as shipped in deploy/ecds/twiml_guard.json."""
    return json.loads((ROOT / "deploy/ecds/twiml_guard.json").read_text())["resources"][0]


def shipped_plugin() -> dict:
    """The plugin JSON of the shipped entry (mode, on_malformed, reject_status, ...)."""
    return json.loads(shipped_entry()["typed_config"]["config"]["configuration"]["value"])


def wasm_filter(wasm: Path, paths: list[str] | None = None) -> dict:
    """The guard's shipped filter entry (envoy.yaml reads it through ECDS from the resource
    deploy/ecds/twiml_guard.json), inline, with the module path made absolute; `paths` set in the
    plugin JSON when given."""
    entry = {"name": "twiml_guard", "typed_config": shipped_entry()["typed_config"]}
    config = entry["typed_config"]["config"]
    config["vm_config"]["code"]["local"]["filename"] = str(wasm)
    # The bench measures TwiML inspection with unsigned requests: no signature checks, so no
    # auth token in the environment either.
    plugin = json.loads(config["configuration"]["value"])
    plugin.pop("signature", None)
    if paths is not None:
        plugin["paths"] = paths
    config["configuration"]["value"] = json.dumps(plugin)
    config["vm_config"].pop("environment_variables", None)
    return entry


def floor_filter(floor: Path, vm_id: str = "twiml_guard_floor") -> dict:
    """The guard's entry with the do-nothing module (or bench/edge/calls) in place of the guard:
    same name, VM settings and failure policy, so Envoy treats both alike."""
    entry = wasm_filter(floor)
    config = entry["typed_config"]["config"]
    config["vm_config"]["vm_id"] = vm_id
    return entry

def native_filter(module: Path) -> dict:
    """The guard's native entry (deploy/ecds/twiml_guard.native.json) inline, with the module path
    made absolute and, as for the wasm entry, no signature checks."""
    resource = json.loads((ROOT / "deploy/ecds/twiml_guard.native.json").read_text())["resources"][0]
    entry = {"name": "twiml_guard", "typed_config": resource["typed_config"]}
    typed = entry["typed_config"]
    typed["dynamic_module_config"]["module"]["local"]["filename"] = str(module)
    plugin = json.loads(typed["filter_config"]["value"])
    plugin.pop("signature", None)
    typed["filter_config"]["value"] = json.dumps(plugin)
    return entry


def native_floor_filter(module: Path) -> dict:
    """The native entry with the do-nothing dynamic module in place of the guard."""
    return native_filter(module)
