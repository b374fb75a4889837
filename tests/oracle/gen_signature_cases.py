# Signature oracle: random webhook requests signed and judged by Twilio's own Python
# RequestValidator, so the Rust validator (and the filter and host behind Envoy) can be held to the
# reference implementation. Prints one JSON document on stdout.
#
# Each case is a request as Twilio sends it: the URL it requested, the raw body (form-encoded or
# JSON), X-Twilio-Signature and, for shared-key signing, X-Twilio-Webhooks-Signature-Settings.
# Each case carries mutations (one character of the URL, of a parameter or of the signature
# changed) with the validator's verdict on each.
#
# usage: gen_signature_cases.py [--count N] [--seed S] [--base-url https://host]
#                               [--path-prefix /p/ | --path /exact/path]
import argparse
import json
import random
import sys
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit

from twilio.request_validator import RequestValidator, get_signature_algorithm

AUTH_TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SHARED_KEY = "sk-oracle-4f1c2a9e7d6b5a3c"
SHARED_KEY_ID = "webhooks_sharedkey_0123456789abcdef"

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
B64 = ALNUM + "+/"
HOSTS = ["voice.example.com", "mycompany.com", "api.example.org", "a.b.c.example.net", "localhost"]
TWILIO_NAMES = ["AccountSid", "ApiVersion", "CallSid", "CallStatus", "Called", "Caller",
                "Direction", "From", "FromCity", "To", "ToState", "Digits", "SpeechResult",
                "RecordingUrl", "RecordingSid", "StirVerstat"]
# Unicode the signing string must carry byte for byte: accents, CJK, emoji (astral), combining
# marks, RTL, a non-breaking space.
UNICODE = ["é", "ß", "ø", "漢字", "日本", "😀", "🎉", "e\u0301", "שלום", "\u00a0", "Ω", "ü"]
VALUE_PIECES = ["+14155550100", "CA" + "0" * 32, "hello world", "a&b=c", "100%", "x+y", "",
                "line\nbreak", "quote\"'", "<Record/>", "/path?q=1", "  spaced  ", "#hash"]


class MultiDict(dict):
    """The shape Flask hands the validator: every value of a repeated name."""

    def getall(self, name):
        return self[name]


def rand_text(rng, alphabet=ALNUM, lo=1, hi=12):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def rand_value(rng):
    parts = []
    for _ in range(rng.randint(0, 3)):
        r = rng.random()
        if r < 0.4:
            parts.append(rand_text(rng))
        elif r < 0.7:
            parts.append(rng.choice(VALUE_PIECES))
        else:
            parts.append(rng.choice(UNICODE))
    return "".join(parts)


def rand_name(rng):
    r = rng.random()
    if r < 0.6:
        return rng.choice(TWILIO_NAMES)
    if r < 0.85:
        return rand_text(rng, lo=1, hi=8)
    return rand_text(rng, lo=0, hi=3) + rng.choice(UNICODE)


def rand_params(rng):
    pairs = []
    for _ in range(rng.randint(0, 12)):
        name = rand_name(rng)
        pairs.append((name, rand_value(rng)))
        # Repeated names, with distinct and with identical values.
        while rng.random() < 0.2:
            pairs.append((name, rng.choice([rand_value(rng), pairs[-1][1]])))
    rng.shuffle(pairs)
    return pairs


def rand_query(rng):
    if rng.random() < 0.4:
        return ""
    pairs = [(rand_name(rng), rand_value(rng)) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.2 and pairs:
        pairs.append((pairs[0][0], rand_value(rng)))
    return urlencode(pairs)


def rand_path(rng, prefix):
    segments = [rand_text(rng, lo=1, hi=8) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.15:
        segments.append(quote(rng.choice(UNICODE)))
    path = prefix + "/".join(segments)
    if rng.random() < 0.2:
        path += ".php"
    return path or "/"


def with_port(scheme, host, port):
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def make_case(rng, base_url, prefix, fixed_path=None):
    if base_url:
        parts = urlsplit(base_url)
        scheme, host = parts.scheme, parts.hostname
        port = parts.port
    else:
        scheme = rng.choice(["https", "https", "http"])
        host = rng.choice(HOSTS)
        port = rng.choice([None, None, 443 if scheme == "https" else 80, rng.randint(1024, 65535)])
    default = 443 if scheme == "https" else 80
    path = fixed_path or rand_path(rng, prefix)
    query = rand_query(rng)
    tail = path + ("?" + query if query else "")
    url = with_port(scheme, host, port) + tail
    # Twilio signs with the default port added or removed, inconsistently.
    signed_url = url
    if port is None and rng.random() < 0.3:
        signed_url = with_port(scheme, host, default) + tail
    elif port == default and rng.random() < 0.5:
        signed_url = with_port(scheme, host, None) + tail

    algorithm = "HMAC_SHA256" if rng.random() < 0.35 else "HMAC_SHA1"
    settings = None
    if algorithm == "HMAC_SHA256":
        settings = f"key={SHARED_KEY_ID},algorithm={rng.choice(['HMAC_SHA256', 'hmac_sha256'])}"
    secret = SHARED_KEY if algorithm == "HMAC_SHA256" else AUTH_TOKEN
    validator = RequestValidator(secret)

    r = rng.random()
    if r < 0.8:
        kind = "form"
        pairs = rand_params(rng)
        # Both spellings of a space a client may use.
        body = urlencode(pairs, quote_via=rng.choice([quote, quote_plus]))
        signature = validator.compute_signature(signed_url, group(pairs), algorithm)
    elif r < 0.9:
        kind = "json"
        body = json.dumps({rand_name(rng): rand_value(rng) for _ in range(rng.randint(0, 4))},
                          ensure_ascii=rng.random() < 0.5)
        sep = "&" if "?" in url else "?"
        digest = validator.compute_hash(body)
        url += f"{sep}bodySHA256={digest}"
        signed_url += f"{sep}bodySHA256={digest}"
        signature = validator.compute_signature(signed_url, {}, algorithm)
    else:
        kind = "none"
        body = ""
        signature = validator.compute_signature(signed_url, {}, algorithm)

    case = {"url": url, "kind": kind, "body": body, "signature": signature, "settings": settings}
    case["valid"] = judge(case)
    # Behind a fixed origin only the path after the signed prefix, and the query, can change.
    url_flip_from = len(base_url) + len(fixed_path or prefix) if base_url else 0
    case["mutations"] = mutations(rng, case, url_flip_from)
    return case


def group(pairs):
    grouped = MultiDict()
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


def judge(case):
    """The reference verdict: what a Flask app using RequestValidator would decide."""
    algorithm = get_signature_algorithm(case["settings"])
    secret = SHARED_KEY if algorithm.upper() == "HMAC_SHA256" else AUTH_TOKEN
    validator = RequestValidator(secret)
    if case["kind"] == "form":
        params = group(parse_qsl(case["body"], keep_blank_values=True))
    elif case["kind"] == "json":
        params = case["body"]
    else:
        params = {}
    try:
        return bool(validator.validate(case["url"], params, case["signature"], algorithm))
    except (ValueError, TypeError):
        # A mangled port or a raw body without bodySHA256: the validator raises, the request fails.
        return False


def flip(rng, text, alphabet, start=0):
    """`text` with one character at or after `start` replaced by a different one from
    `alphabet`, and where."""
    i = rng.randrange(start, len(text))
    choices = [c for c in alphabet if c != text[i] and c.lower() != text[i].lower()]
    return text[:i] + rng.choice(choices) + text[i + 1:], i


def mutations(rng, case, url_flip_from):
    out = []
    if len(case["url"]) > url_flip_from:
        url, pos = flip(rng, case["url"], ALNUM, url_flip_from)
        out.append({"what": "url", "position": pos, **case, "url": url})

    if case["kind"] == "form":
        pairs = parse_qsl(case["body"], keep_blank_values=True)
        if pairs:
            k = rng.randrange(len(pairs))
            name, value = pairs[k]
            if value and rng.random() < 0.7:
                value, pos = flip(rng, value, ALNUM + "é😀")
            else:
                name, pos = flip(rng, name, ALNUM + "é😀") if name else ("x", 0)
            pairs[k] = (name, value)
            out.append({"what": "param", "position": pos, **case, "body": urlencode(pairs)})
        else:
            out.append({"what": "param", "position": 0, **case, "body": "Injected=1"})
    elif case["kind"] == "json":
        body, pos = flip(rng, case["body"], ALNUM)
        out.append({"what": "param", "position": pos, **case, "body": body})

    # The last Base64 character of a SHA-1 digest carries padding bits: flip a data character.
    sig, pos = flip(rng, case["signature"].rstrip("="), B64)
    sig += "=" * (len(case["signature"]) - len(case["signature"].rstrip("=")))
    out.append({"what": "signature", "position": pos, **case, "signature": sig})

    # The settings header switches key and hash: dropping or forging it must not validate.
    settings = None if case["settings"] else f"key={SHARED_KEY_ID},algorithm=HMAC_SHA256"
    out.append({"what": "settings", "position": 0, **case, "settings": settings})

    for m in out:
        m.pop("mutations", None)
        m["valid"] = judge(m)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--base-url", default=None, help="fixed scheme://host[:port] for every case")
    ap.add_argument("--path-prefix", default="/")
    ap.add_argument("--path", default=None, help="one exact path for every case (queries vary)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cases = [make_case(rng, args.base_url, args.path_prefix, args.path) for _ in range(args.count)]
    json.dump({"auth_token": AUTH_TOKEN, "shared_key": SHARED_KEY, "cases": cases},
              sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
