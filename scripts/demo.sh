#!/usr/bin/env bash
# `make demo`: start the legacy backend, the host service and Envoy with twiml-guard in the
# background (pid files and logs in ./run/), place one simulated call without and one with the
# filter, and show the TwiML before and after, the transcript and the summary. `make stop` (this
# script with `stop`) ends what it started. Expects `make build` to have run (the Makefile does).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUN="$ROOT/run"
VENV="${TWIML_GUARD_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
BIN="${TWIML_GUARD_BIN_DIR:-$ROOT/target/release}"
WASM="${TWIML_GUARD_WASM:-$ROOT/target/wasm32-wasip1/release/twiml_guard_filter.wasm}"
PUBLIC_HOST="${PUBLIC_HOST:-voice.example.com}"
# The demo's shared secret: the simulator signs with it, the host service checks it.
AUTH_TOKEN="${DEMO_AUTH_TOKEN:-demo-auth-token-0123456789abcdef}"
# The filter and the host share it: the filter adds a per-call token to the stream it lets
# through, the host accepts a stream only with it. A fresh one per run.
MEDIA_KEY="${DEMO_MEDIA_KEY:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}"
# espeak-ng's "book" and US "John" come out of tiny.en as "welcome" and "Dan" (measured through
# the 8 kHz mu-law line): its default English voice saying "make" is heard word for word.
SPEECH="${DEMO_SPEECH:-Hello, I would like to make an appointment for tomorrow morning. My name is John Smith. Please call me back.}"
VOICE="${DEMO_VOICE:-en}"
# The ports in the shipped envoy.yaml.
ENVOY_PORT=8080 ADMIN_PORT=9901 BACKEND_PORT=5000 HOST_PORT=7000
SERVICES=(envoy host-service legacy-backend)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

stop() {
  local stopped=0
  for name in "${SERVICES[@]}"; do
    local pidfile="$RUN/$name.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
      echo "stopped $name (pid $pid)"
      stopped=1
    fi
    rm -f "$pidfile"
  done
  [ "$stopped" = 1 ] || echo "nothing running"
}

port_free() {
  "$PY" - "$1" <<'PYEOF'
import socket, sys
s = socket.socket()
# As the servers themselves bind: connections left in TIME_WAIT by a previous run do not count.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PYEOF
}

# wait_for NAME SECONDS COMMAND...: poll until COMMAND succeeds, with a deadline.
wait_for() {
  local name="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "demo: $name not ready after ${secs}s; last log lines:" >&2
      tail -n 30 "$RUN/$name.log" >&2 || true
      exit 1
    fi
    local pidfile="$RUN/$name.pid"
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "demo: $name exited; last log lines:" >&2
      tail -n 30 "$RUN/$name.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

# start NAME COMMAND...: run in the background with its log and pid file under ./run/.
start() {
  local name="$1"; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  echo "started $name (pid $!, log run/$name.log)"
}

envoy_ready() { [ "$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready")" = LIVE ]; }

json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

demo() {
  for f in "$BIN/host-service" "$BIN/twilio-sim" "$BIN/twiml-guard" "$WASM" "$VENV/bin/envoy"; do
    [ -e "$f" ] || die "$f is missing: run \`make demo\` (it builds first)"
  done
  command -v espeak-ng >/dev/null || die "espeak-ng is missing: run \`make setup\`"
  mkdir -p "$RUN"
  stop >/dev/null
  for port in $ENVOY_PORT $ADMIN_PORT $BACKEND_PORT $HOST_PORT; do
    port_free "$port" || die "port $port is in use (envoy.yaml uses 8080, 9901, 5000 and 7000)"
  done

  say "starting the stack"
  PUBLIC_HOST="$PUBLIC_HOST" start legacy-backend "$PY" tests/legacy_backend/app.py --port "$BACKEND_PORT"
  cat >"$RUN/host-service.toml" <<TOML
# Written by scripts/demo.sh.
listen = "127.0.0.1:$HOST_PORT"
data_dir = "$RUN/data"
public_base_url = "https://$PUBLIC_HOST"

[twilio]
auth_token = "$AUTH_TOKEN"
media_key = "$MEDIA_KEY"

# twilio-sim plays the call faster than real time (--speed), so its media timestamps run ahead
# of the wall clock; Twilio's run at real time and keep the default.
[recording]
max_timestamp_jump_ms = 600000

# For the same reason it sends more frames a second (50 x speed).
[websocket]
max_frames_per_s = 5000

[transcription]
engine = "whisper"

[transcription.whisper]
model_dir = "$ROOT/models/whisper-tiny.en"
TOML
  start host-service env -u HOST_SERVICE_CONFIG "$BIN/host-service" --config "$RUN/host-service.toml"
  # The shipped envoy.yaml as it is: it reads the guard's configuration from run/ecds/ (ECDS),
  # relative to this directory. That file is the shipped seed with the module path made
  # absolute (the build may live elsewhere) and signatures checked over the public URL the
  # simulator signs; `twiml-guard mode set ... --ecds-dir run/ecds` changes it live.
  cp envoy.yaml "$RUN/envoy.yaml"
  mkdir -p "$RUN/ecds"
  "$PY" - "$WASM" "https://$PUBLIC_HOST" deploy/ecds/twiml_guard.json "$RUN/ecds/twiml_guard.json" <<'PYEOF' ||
import json, sys
wasm, public, seed, out = sys.argv[1:]
doc = json.load(open(seed))
config = doc["resources"][0]["typed_config"]["config"]
assert config["vm_config"]["code"]["local"]["filename"] == "target/wasm32-wasip1/release/twiml_guard_filter.wasm"
config["vm_config"]["code"]["local"]["filename"] = wasm
plugin = json.loads(config["configuration"]["value"])
plugin["signature"]["public_base_url"] = public
config["configuration"]["value"] = json.dumps(plugin)
open(out + ".tmp", "w").write(json.dumps(doc, indent=2))
PYEOF
    die "deploy/ecds/twiml_guard.json no longer has the shape this script expects"
  mv "$RUN/ecds/twiml_guard.json.tmp" "$RUN/ecds/twiml_guard.json"
  "$BIN/twiml-guard" config check --ecds-dir "$RUN/ecds"
  # envoy.yaml passes TWILIO_AUTH_TOKEN and TWIML_GUARD_MEDIA_KEY to the filter
  # (vm_config.environment_variables).
  if command -v func-e >/dev/null; then
    # func-e runs the same pinned Envoy binary unless ENVOY_PATH says otherwise.
    TWILIO_AUTH_TOKEN="$AUTH_TOKEN" TWIML_GUARD_MEDIA_KEY="$MEDIA_KEY" ENVOY_PATH="${ENVOY_PATH:-$VENV/bin/envoy}" start envoy func-e run -c "$RUN/envoy.yaml" --disable-hot-restart
  else
    TWILIO_AUTH_TOKEN="$AUTH_TOKEN" TWIML_GUARD_MEDIA_KEY="$MEDIA_KEY" start envoy "$VENV/bin/envoy" -c "$RUN/envoy.yaml" --disable-hot-restart
  fi
  wait_for legacy-backend 30 curl -fsS "http://127.0.0.1:$BACKEND_PORT/healthz"
  wait_for host-service 60 curl -fsS "http://127.0.0.1:$HOST_PORT/healthz"
  wait_for envoy 90 envoy_ready

  say "the caller's speech (espeak-ng)"
  echo "\"$SPEECH\""
  espeak-ng -v "$VOICE" -s 150 -w "$RUN/caller.wav" "$SPEECH"

  say "TwiML before the filter (straight from the legacy backend on :$BACKEND_PORT)"
  curl -fsS -X POST -H "Host: $PUBLIC_HOST" --data-urlencode "CallSid=CA00000000000000000000000000000000" \
    --data-urlencode "To=+15005550001" "http://127.0.0.1:$BACKEND_PORT/webhook/incoming_call"
  echo

  say "a call without the filter: Twilio meets <Record> first (straight to the backend)"
  set +e
  "$BIN/twilio-sim" call --url "https://$PUBLIC_HOST/webhook/incoming_call" --local "127.0.0.1:$BACKEND_PORT" \
    --auth-token "$AUTH_TOKEN" --silence 1 --report-json "$RUN/call-without-filter.json" >"$RUN/call-without-filter.txt"
  local code=$?
  set -e
  sed -n '/^timeline/,/^$/p' "$RUN/call-without-filter.txt"
  grep -E '^(LOOP|result):' "$RUN/call-without-filter.txt" || true
  echo "(twilio-sim exit code $code; full report: run/call-without-filter.txt)"

  say "the same call through Envoy with twiml-guard on :$ENVOY_PORT"
  set +e
  "$BIN/twilio-sim" call --url "https://$PUBLIC_HOST/webhook/incoming_call" --local "127.0.0.1:$ENVOY_PORT" \
    --auth-token "$AUTH_TOKEN" --audio "$RUN/caller.wav" --speed "${DEMO_SPEED:-4}" \
    --report-json "$RUN/call.json" >"$RUN/call.txt"
  code=$?
  set -e
  cat "$RUN/call.txt"
  [ "$code" = 0 ] || die "the call through the filter did not stream (exit $code); see run/*.log"
  local sid; sid="$(json "$RUN/call.json" 'd["call_sid"]')"

  say "TwiML after the filter (what Twilio would run)"
  json "$RUN/call.json" 'd["fetches"][0]["body"]'
  echo "x-twiml-guard: $(json "$RUN/call.json" 'd["fetches"][0]["guard"]')"

  say "post-call pipeline for $sid (recording, Whisper, summary)"
  local api="http://127.0.0.1:$HOST_PORT/api/calls/$sid" deadline=$((SECONDS + 300)) status=""
  while :; do
    curl -fsS "$api" >"$RUN/call-api.json" 2>/dev/null && status="$(json "$RUN/call-api.json" 'd["status"]')"
    case "$status" in completed|failed) break ;; esac
    [ "$SECONDS" -lt "$deadline" ] || die "the pipeline did not finish in 300 s; see run/host-service.log"
    sleep 1
  done
  echo "status:     $status"
  echo "recording:  $(json "$RUN/call-api.json" 'd["recording"]["status"]'), $(json "$RUN/call-api.json" 'd["recording"]["duration_ms"]') ms"
  echo "transcript: $(json "$RUN/call-api.json" '(d.get("transcript") or {}).get("text")')"
  echo "summary:    $(json "$RUN/call-api.json" 'd.get("summary")')"
  echo "fields:     $(json "$RUN/call-api.json" 'json.dumps(d.get("fields"))' 2>/dev/null || true)"

  say "the stack is still running"
  cat <<EOF2
  this call:      curl -s $api
  all calls:      curl -s http://127.0.0.1:$HOST_PORT/api/calls
  recording:      curl -s -o call.wav $api/recording.wav
  host metrics:   curl -s http://127.0.0.1:$HOST_PORT/metrics
  filter metrics: curl -s http://127.0.0.1:$ADMIN_PORT/stats/prometheus | grep twiml_guard
  guard status:   $BIN/twiml-guard status --admin http://127.0.0.1:$ADMIN_PORT
  switch mode:    $BIN/twiml-guard mode set monitor --ecds-dir run/ecds --admin http://127.0.0.1:$ADMIN_PORT
  another call:   $BIN/twilio-sim call --url https://$PUBLIC_HOST/webhook/incoming_call --local 127.0.0.1:$ENVOY_PORT --auth-token $AUTH_TOKEN --audio run/caller.wav
  logs:           run/envoy.log run/host-service.log run/legacy-backend.log (configs: run/envoy.yaml, run/host-service.toml)
  stop it all:    make stop
EOF2
}

case "${1:-demo}" in
  demo) demo ;;
  stop) stop ;;
  *) die "usage: $0 [demo|stop]" ;;
esac
