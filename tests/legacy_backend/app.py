# A legacy voice backend exactly like the seed's server/routes_twilio.py before its fix: the real
# `twilio` library puts a blocking <Record> before <Connect><Stream>, so behind no filter every
# call loops on <Record> and the media stream never opens. twiml-guard is tested against it.
"""Legacy Twilio voice backend (the bug, reproduced with the real twilio library)."""

import argparse
import logging
import os

from flask import Flask, Response, request
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

app = Flask(__name__)
log = logging.getLogger("legacy_backend")


def _host() -> str:
    # As the seed did: the configured public host, else whatever host the request came to.
    return os.environ.get("PUBLIC_HOST") or request.host


def _legacy_twiml() -> str:
    host = _host()
    call_sid = request.values.get("CallSid", "")
    to = request.values.get("To", "")
    vr = VoiceResponse()
    # The seed's recording call, attribute for attribute.
    vr.record(
        max_length=600,
        timeout=3,
        play_beep=False,
        transcribe=False,
        recording_track="inbound",
    )
    connect = Connect(action=f"https://{host}/webhook/stream_ended")
    stream = Stream(url=f"wss://{host}/ws/twilio-media", track="inbound_track")
    stream.parameter(name="CallSid", value=call_sid)
    stream.parameter(name="To", value=to)
    connect.append(stream)
    vr.append(connect)
    twiml = str(vr)
    log.info("TWIML_HOST=%s TWIML_FULL=%s", host, twiml)
    return twiml


@app.route("/webhook/incoming_call", methods=["GET", "POST"])
def incoming_call():
    return Response(_legacy_twiml(), mimetype="text/xml")


@app.route("/webhook/outbound_call", methods=["GET", "POST"])
def outbound_call():
    return Response(_legacy_twiml(), mimetype="text/xml")


@app.route("/healthz")
def healthz():
    return "ok\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("LEGACY_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("LEGACY_PORT", "5000"))
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
