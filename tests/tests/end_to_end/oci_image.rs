//! `make oci`'s image the way Istio and Envoy Gateway would get it: built twice to the same bytes,
//! pushed with skopeo to a real registry (Debian's `docker-registry`) on loopback, pulled back,
//! and held to their fetchers' rules: the last layer is gzip tar (not zstd) holding `plugin.wasm`,
//! byte-identical to the module the build made.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{free_local_addr, http_client, poll, repo_root, spawn_logged, wasm_module};
use serde_json::Value;

const TAG: &str = "9.9.9";
const COMMIT: &str = "abc1234";
const CREATED: &str = "2026-12-02T00:00:00+00:00";

fn build_layout(out: &Path) {
    let status = Command::new("python3")
        .arg(repo_root().join("scripts/oci_image.py"))
        .arg("--wasm")
        .arg(wasm_module().unwrap())
        .arg("--out")
        .arg(out)
        .args([
            "--tag",
            TAG,
            "--version",
            TAG,
            "--commit",
            COMMIT,
            "--created",
            CREATED,
        ])
        .status()
        .expect("python3 runs scripts/oci_image.py");
    assert!(status.success(), "oci_image.py failed: {status}");
}

/// Every file of a layout, as (relative path, bytes), sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo (`make test` installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one file of a ustar archive: its name and bytes.
fn only_file(tar: &[u8]) -> (String, Vec<u8>) {
    let header = &tar[..512];
    let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let name = String::from_utf8(header[..name_end].to_vec()).unwrap();
    let size_field = std::str::from_utf8(&header[124..136]).unwrap();
    let size =
        usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap();
    assert_eq!(header[156], b'0', "a regular file");
    let next = 512 + size.div_ceil(512) * 512;
    assert!(
        tar[next..].iter().all(|&b| b == 0),
        "one entry only, then the end-of-archive blocks"
    );
    (name, tar[512..512 + size].to_vec())
}

#[tokio::test]
async fn the_image_is_reproducible_and_survives_a_registry_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    build_layout(&first);
    build_layout(&second);
    assert_eq!(files(&first), files(&second), "two builds, the same bytes");

    let addr = free_local_addr().unwrap();
    let config = dir.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("registry").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("registry.log");
    let _registry = spawn_logged(
        "docker-registry",
        Command::new("docker-registry").arg("serve").arg(&config),
        &log,
    )
    .unwrap();
    let client = http_client();
    let v2 = format!("http://{addr}/v2/");
    poll(
        Duration::from_secs(20),
        "the registry to answer /v2/",
        || {
            let (client, v2) = (client.clone(), v2.clone());
            async move {
                let resp = client.get(&v2).send().await.ok()?;
                resp.status().is_success().then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });

    let remote = format!("docker://{addr}/twiml-guard:{TAG}");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:{TAG}", first.display()),
        &remote,
    ]);
    let pulled = dir.path().join("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:{TAG}", pulled.display()),
    ]);

    // The registry serves the manifest we built, byte for byte, under its digest.
    let index: Value =
        serde_json::from_slice(&std::fs::read(first.join("index.json")).unwrap()).unwrap();
    let built_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let pulled_index: Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        pulled_index["manifests"][0]["digest"],
        built_digest.as_str()
    );
    let manifest_bytes = blob(&pulled, &built_digest);
    assert_eq!(manifest_bytes, blob(&first, &built_digest));

    // The fetchers' rules: OCI manifest, the last layer gzip tar holding plugin.wasm.
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&pulled, layers[0]["digest"].as_str().unwrap());
    assert_eq!(&layer[..2], &[0x1f, 0x8b], "gzip, not zstd");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&layer[..])
        .read_to_end(&mut tar)
        .unwrap();
    let (name, module) = only_file(&tar);
    assert_eq!(name, "plugin.wasm");
    assert_eq!(module, std::fs::read(wasm_module().unwrap()).unwrap());

    let annotations = &manifest["annotations"];
    assert_eq!(annotations["module.wasm.image/variant"], "compat");
    assert_eq!(annotations["org.opencontainers.image.version"], TAG);
    assert_eq!(annotations["org.opencontainers.image.revision"], COMMIT);
    let config: Value = serde_json::from_slice(&blob(
        &pulled,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"],
        COMMIT
    );
    assert_eq!(config["created"], CREATED);
}
