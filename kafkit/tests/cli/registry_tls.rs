//! An `https://` registry whose certificate a private CA signed: the CLI
//! and the codec reach it given the CA file (`--registry-ca-file`,
//! `SCHEMA_REGISTRY_SSL_CA_LOCATION`), and without it refuse, saying why.
#![allow(clippy::unwrap_used)]

use kafkit_events::{CodecSettings, EventCodec};
use schema_registry::RunningRegistry;
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=kafkit test CA",
            ][..],
            &days,
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-extfile",
                "ext.cnf",
            ][..],
            &days,
        ]
        .concat(),
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// TLS in front of `upstream`: answers on the returned `https://` URL.
async fn tls_proxy(upstream: String, certificate: &Path, key: &Path) -> String {
    let identity = native_tls::Identity::from_pkcs8(
        &std::fs::read(certificate).unwrap(),
        &std::fs::read(key).unwrap(),
    )
    .unwrap();
    let acceptor =
        tokio_native_tls::TlsAcceptor::from(native_tls::TlsAcceptor::new(identity).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_registry_is_reached_with_its_ca_file_and_refused_without() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, certificate, key) = certificates(&dir);
    let registry = RunningRegistry::in_memory().await.unwrap();
    let https = tls_proxy(
        registry.url.trim_start_matches("http://").to_owned(),
        &certificate,
        &key,
    )
    .await;
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let kafkit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kafkit"))
            .args(args)
            .env_remove("SCHEMA_REGISTRY_SSL_CA_LOCATION")
            .output()
            .unwrap()
    };
    let ca_text = ca.to_string_lossy().into_owned();
    let schemas_text = schemas.to_string_lossy().into_owned();

    // With the CA file: registered and listed over TLS.
    let out = kafkit(&[
        "schemas",
        "register",
        "--dir",
        &schemas_text,
        "--registry-url",
        &https,
        "--registry-ca-file",
        &ca_text,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kafkit(&[
        "schemas",
        "list",
        "--registry-url",
        &https,
        "--registry-ca-file",
        &ca_text,
    ]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && listed.contains("orders-value"),
        "{listed}"
    );

    // Without it: refused, and the error says the certificate is not trusted.
    let out = kafkit(&["schemas", "list", "--registry-url", &https]);
    let error = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success());
    assert!(error.contains("certificate"), "{error}");

    // The codec: the same, and a file that holds no certificate is an error at once.
    let settings = |ca_file: Option<PathBuf>| CodecSettings {
        ca_file,
        ..CodecSettings::new(&https)
    };
    let codec = EventCodec::new(settings(Some(ca.clone()))).unwrap();
    codec.check_registry().await.unwrap();
    let untrusting = EventCodec::new(settings(None)).unwrap();
    assert!(untrusting.check_registry().await.is_err());
    let not_pem = dir.join("server.csr.txt");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let error = EventCodec::new(settings(Some(not_pem)))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(error.contains("holds no PEM certificate"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
