#!/usr/bin/env python3
"""Package the filter module as an OCI image layout that Istio's `WasmPlugin` and Envoy Gateway's
`EnvoyExtensionPolicy` pull: one gzip tar layer holding `plugin.wasm` (the "compat" variant).

Reproducible: the same module, version and commit give the same bytes (fixed tar header, gzip
without a timestamp, JSON with sorted keys, `created` taken from the commit's date).

    oci_image.py --wasm plugin.wasm --out DIR --tag 0.1.0 --version 0.1.0 \
        --commit abc1234 --created 2026-12-02T00:00:00Z

Then `skopeo copy oci:DIR:TAG docker://REGISTRY/twiml-guard:TAG` pushes it.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(wasm: bytes) -> bytes:
    """A tar with one regular file, `plugin.wasm`, whose header says nothing about this machine."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return out.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    # mtime=0 and no file name: the gzip header carries neither.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def write_blob(blobs: str, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build(wasm_path, out, tag, version, commit, created):
    with open(wasm_path, "rb") as f:
        wasm = f.read()
    if not wasm.startswith(b"\0asm"):
        sys.exit(f"oci_image: {wasm_path} is not a WebAssembly module (no \\0asm magic)")

    if os.path.exists(out):
        shutil.rmtree(out)
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)

    tar = layer_tar(wasm)
    layer = write_blob(blobs, gzip_bytes(tar))
    labels = {
        "org.opencontainers.image.title": "twiml-guard",
        "org.opencontainers.image.description": "The twiml-guard proxy-wasm filter for Envoy",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    config = write_blob(
        blobs,
        canonical(
            {
                "architecture": "wasm",
                "os": "wasip1",
                "created": created,
                "config": {"Labels": labels},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"],
                },
            }
        ),
    )
    manifest_bytes = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, **config},
            "layers": [{"mediaType": LAYER_TYPE, **layer}],
            "annotations": {"module.wasm.image/variant": "compat", **labels},
        }
    )
    manifest = write_blob(blobs, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                **manifest,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(out, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    print(f"{out}:{tag} manifest {manifest['digest']} layer {layer['digest']} ({layer['size']} bytes)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wasm", required=True, help="the filter module")
    p.add_argument("--out", required=True, help="the OCI layout folder (replaced)")
    p.add_argument("--tag", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--commit", required=True, help="the git commit the module was built from")
    p.add_argument("--created", required=True, help="RFC 3339 time, e.g. the commit's date")
    a = p.parse_args()
    build(a.wasm, a.out, a.tag, a.version, a.commit, a.created)


if __name__ == "__main__":
    main()
