//! Static checks of what ships beside the code: `docker-compose.yml`,
//! `deploy/Dockerfile`, the Kubernetes manifests (no Docker engine or
//! cluster on these machines) and the contract documents in
//! `docs/contracts/` (AsyncAPI 3.0 and OpenAPI 3.1, validated against their
//! specifications' schemas).
//!
//! Schemas are checked by well-kept tools, installed pinned by
//! `scripts/install-deploy-tools.sh`: `check-jsonschema` against the Compose
//! specification's schema, `kubectl kustomize` + `kubernetes-validate
//! --strict` against Kubernetes 1.33. Settings are checked by the services'
//! own loaders: every variable compose or Kubernetes gives a kafkit service
//! must be one its `Settings` (or telemetry) reads, with a value it accepts.
#![allow(clippy::unwrap_used)]

use clap::{CommandFactory, Parser};
use devstack::tools::tool;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const KUBERNETES: &str = "1.33.0";

fn root(path: &str) -> PathBuf {
    Path::new(ROOT).join(path)
}

fn run(program: &Path, args: &[&str], input: Option<&str>) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = input {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// YAML (merge keys applied) as JSON.
fn yaml(text: &str) -> Value {
    let mut value: serde_norway::Value = serde_norway::from_str(text).unwrap();
    value.apply_merge().unwrap();
    serde_json::to_value(value).unwrap()
}

fn compose() -> Value {
    yaml(&std::fs::read_to_string(root("docker-compose.yml")).unwrap())
}

/// Every document `kubectl kustomize DIR` renders.
fn rendered(dir: &str) -> Vec<Value> {
    let (ok, out) = run(
        &tool("kubectl"),
        &["kustomize", &root(dir).to_string_lossy()],
        None,
    );
    assert!(ok, "kubectl kustomize {dir}: {out}");
    serde_norway::Deserializer::from_str(&out)
        .map(|doc| {
            let value: serde_norway::Value = serde::Deserialize::deserialize(doc).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .collect()
}

fn env_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Command-line arguments equivalent to `env` for `command`, or the names no
/// argument (and no telemetry setting) reads.
fn arguments(
    command: &clap::Command,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, Vec<String>> {
    let mut args = vec![command.get_name().to_owned()];
    let mut unknown = Vec::new();
    for (name, value) in env {
        match command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
        {
            Some(arg) => args.push(format!("--{}={value}", arg.get_long().unwrap())),
            None if kafkit_telemetry::ENVIRONMENT.contains(&name.as_str()) => {}
            None => unknown.push(name.clone()),
        }
    }
    if unknown.is_empty() {
        Ok(args)
    } else {
        Err(unknown)
    }
}

/// Loads `env` through the service's real settings loader.
fn load(service: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    match service {
        "producer-service" => {
            let args = arguments(&producer_service::Settings::command(), env)
                .map_err(|u| format!("not read by producer-service: {u:?}"))?;
            producer_service::Settings::try_parse_from(args).map_err(|e| e.to_string())?;
        }
        "consumer-service" => {
            let args = arguments(&consumer_service::Settings::command(), env)
                .map_err(|u| format!("not read by consumer-service: {u:?}"))?;
            consumer_service::Settings::try_parse_from(args).map_err(|e| e.to_string())?;
        }
        other => return Err(format!("{other} is not a kafkit service")),
    }
    Ok(())
}

fn kafkit_services(compose: &Value) -> Vec<(String, String, BTreeMap<String, String>)> {
    compose["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(name, service)| {
            let program = service["command"][0].as_str()?;
            matches!(program, "producer-service" | "consumer-service").then(|| {
                (
                    name.clone(),
                    program.to_owned(),
                    env_map(&service["environment"]),
                )
            })
        })
        .collect()
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let schema = root("deploy/schemas/compose-spec.json");
    let file = root("docker-compose.yml");
    let (ok, out) = run(
        &tool("check-jsonschema"),
        &[
            "--schemafile",
            &schema.to_string_lossy(),
            &file.to_string_lossy(),
        ],
        None,
    );
    assert!(ok, "{out}");
    // The validator does reject what the spec does not allow.
    let broken = std::fs::read_to_string(&file)
        .unwrap()
        .replace("condition: service_healthy", "condition: when_ready");
    let path = std::env::temp_dir().join(format!("compose-{}.yml", uuid::Uuid::new_v4()));
    std::fs::write(&path, broken).unwrap();
    let (ok, out) = run(
        &tool("check-jsonschema"),
        &[
            "--schemafile",
            &schema.to_string_lossy(),
            &path.to_string_lossy(),
        ],
        None,
    );
    std::fs::remove_file(&path).ok();
    assert!(!ok && out.contains("when_ready"), "{out}");

    let compose = compose();
    for (name, service) in compose["services"].as_object().unwrap() {
        // A one-shot job is waited for by its exit code, not a health check.
        let one_shot = service["restart"] == "no";
        assert!(
            one_shot || service.get("healthcheck").is_some(),
            "{name} has no health check"
        );
        for (dependency, how) in service["depends_on"].as_object().into_iter().flatten() {
            let condition = how["condition"].as_str().unwrap_or_default();
            assert!(
                matches!(
                    condition,
                    "service_healthy" | "service_completed_successfully"
                ),
                "{name} waits for {dependency} only to start ({condition:?})"
            );
        }
    }
    assert!(compose["volumes"].get("kafka-data").is_some());
    assert_eq!(
        compose["services"]["kafka"]["volumes"][0],
        "kafka-data:/var/lib/kafka/data"
    );
}

#[test]
fn kubernetes_manifests_validate_against_kubernetes_1_33() {
    for dir in ["deploy/k8s/base", "deploy/k8s/overlays/example"] {
        let (ok, out) = run(
            &tool("kubectl"),
            &["kustomize", &root(dir).to_string_lossy()],
            None,
        );
        assert!(ok, "{out}");
        let (valid, report) = run(
            &tool("kubernetes-validate"),
            &["-k", KUBERNETES, "--strict", "-"],
            Some(&out),
        );
        assert!(valid && !report.contains("ERROR"), "{dir}: {report}");
        // And a strict check does fail on a field Kubernetes does not know.
        let (valid, report) = run(
            &tool("kubernetes-validate"),
            &["-k", KUBERNETES, "--strict", "-"],
            Some(&out.replacen("replicas:", "replicaz:", 1)),
        );
        assert!(!valid && report.contains("replicaz"), "{report}");
    }
    let docs = rendered("deploy/k8s/overlays/example");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Deployment",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    for deployment in workloads(&docs) {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"], "/healthz",
            "{name}"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"], "/readyz",
            "{name}"
        );
        assert!(container["resources"]["requests"].is_object(), "{name}");
        assert!(container["resources"]["limits"].is_object(), "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let secret_refs: Vec<&str> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
            .collect();
        assert!(
            secret_refs.contains(&"kafkit-kafka-credentials")
                && secret_refs.contains(&"kafkit-registry-credentials"),
            "{name}: {secret_refs:?}"
        );
        assert_eq!(
            pod["volumes"][0]["secret"]["secretName"],
            "kafkit-kafka-tls"
        );
        if container["command"][0] == "consumer-service" {
            // Static membership: a StatefulSet's pod name, stable across
            // restarts, is the group member id.
            assert_eq!(deployment["kind"], "StatefulSet", "{name}");
            let instance = container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "KAFKA_GROUP_INSTANCE_ID");
            assert_eq!(
                instance.map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
                Some(&Value::from("metadata.name")),
                "{name}"
            );
            let governing = &deployment["spec"]["serviceName"];
            assert!(
                docs.iter()
                    .any(|d| d["kind"] == "Service" && d["metadata"]["name"] == *governing),
                "{name}: no Service {governing}"
            );
        }
    }
}

#[test]
fn every_image_is_pinned() {
    let pinned = |image: &str| {
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        image.contains('@') || (!tag.is_empty() && tag != "latest" && !tag.contains('/'))
    };
    let compose = compose();
    for (name, service) in compose["services"].as_object().unwrap() {
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        assert!(pinned(image), "{name}: {image}");
    }
    let dockerfile = std::fs::read_to_string(root("deploy/Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).unwrap();
        assert!(pinned(image), "{line}");
    }
    for dir in ["deploy/k8s/base", "deploy/k8s/overlays/example"] {
        for doc in workloads(&rendered(dir)) {
            let image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap();
            assert!(pinned(image), "{dir}: {image}");
        }
    }
}

#[test]
fn compose_settings_are_accepted_by_the_services_own_loaders() {
    let compose = compose();
    let services = kafkit_services(&compose);
    let mut names: Vec<&str> = services.iter().map(|(n, _, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "consumer-service",
            "consumer-service-retry",
            "producer-service"
        ]
    );
    for (name, program, env) in &services {
        load(program, env).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The loader really refuses what it does not know, or cannot read.
    let consumer_env = &services
        .iter()
        .find(|(n, _, _)| n == "consumer-service")
        .unwrap()
        .2;
    let mut unknown = consumer_env.clone();
    unknown.insert("RETRY_DELAY_MS".into(), "1000".into());
    assert!(load("consumer-service", &unknown).is_err());
    let mut bad = consumer_env.clone();
    bad.insert("MAX_ATTEMPTS".into(), "four".into());
    assert!(load("consumer-service", &bad).is_err());

    // The init job: each command parses as kafkit's, and its environment is read by it.
    let init = &compose["services"]["kafkit-init"];
    let script = init["command"][0].as_str().unwrap();
    for step in script.split("&&") {
        let words: Vec<&str> = step.split_whitespace().collect();
        kafkit::Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{step}: {e}"));
    }
    let cli = kafkit::Cli::command();
    let topics = cli
        .find_subcommand("topics")
        .unwrap()
        .find_subcommand("create")
        .unwrap();
    let schemas = cli
        .find_subcommand("schemas")
        .unwrap()
        .find_subcommand("register")
        .unwrap();
    for name in env_map(&init["environment"]).keys() {
        let read = [topics, schemas].iter().any(|c| {
            c.get_arguments()
                .any(|a| a.get_env().is_some_and(|e| e == name.as_str()))
        });
        assert!(read, "kafkit-init sets {name}, which kafkit does not read");
    }
}

#[test]
fn kubernetes_settings_are_accepted_by_the_services_own_loaders() {
    let docs = rendered("deploy/k8s/overlays/example");
    let settings = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .map(|d| env_map(&d["data"]))
        .unwrap();
    // One ConfigMap serves both services: each key must be read by one of
    // them (or telemetry); each service loads the keys it reads.
    let reads = |command: &clap::Command, name: &str| {
        command
            .get_arguments()
            .any(|a| a.get_env().is_some_and(|e| e == name))
            || kafkit_telemetry::ENVIRONMENT.contains(&name)
    };
    let (producer, consumer) = (
        producer_service::Settings::command(),
        consumer_service::Settings::command(),
    );
    for name in settings.keys() {
        assert!(
            reads(&producer, name) || reads(&consumer, name),
            "kafkit-settings has {name}, which no kafkit service reads"
        );
    }
    let mut checked = 0;
    for deployment in workloads(&docs) {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let program = container["command"][0].as_str().unwrap();
        let command = if program == "producer-service" {
            &producer
        } else {
            &consumer
        };
        let mut env: BTreeMap<String, String> = settings
            .iter()
            .filter(|(name, _)| reads(command, name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for var in container["env"].as_array().unwrap() {
            let name = var["name"].as_str().unwrap().to_owned();
            // Secret and pod-field references get a stand-in value; literal
            // ones their own.
            let value = var["value"].as_str().unwrap_or("from-the-pod").to_owned();
            env.insert(name, value);
        }
        // The TLS file settings name files mounted in the pod: the loader
        // only takes the paths, librdkafka opens them when it connects.
        load(program, &env).unwrap_or_else(|e| panic!("{}: {e}", deployment["metadata"]["name"]));
        checked += 1;
    }
    assert_eq!(checked, 3);
}

/// The pods' templates: Deployments (producer-service) and StatefulSets
/// (the consumers, whose pod names are their static group member ids).
fn workloads(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        .collect()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

fn default_of(command: &clap::Command, id: &str) -> String {
    command
        .get_arguments()
        .find(|a| a.get_id() == id)
        .unwrap()
        .get_default_values()[0]
        .to_string_lossy()
        .into_owned()
}

#[test]
fn ports_and_topic_names_agree_with_the_code() {
    let producer = producer_service::Settings::command();
    let consumer = consumer_service::Settings::command();
    let producer_port = port_of(&default_of(&producer, "listen"));
    let consumer_port = port_of(&default_of(&consumer, "listen"));
    let registry_port = port_of(&default_of(&producer, "registry_url"));
    let kafka_port = port_of(&default_of(&producer, "bootstrap_servers"));
    assert_eq!(
        (producer_port, consumer_port, registry_port, kafka_port),
        (8080, 8082, 8081, 9092),
        "docs/DESIGN.md's ports"
    );
    let compose = compose();
    let services = &compose["services"];
    let published = |service: &str| -> Vec<String> {
        services[service]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(published("producer-service").contains(&format!("{producer_port}:{producer_port}")));
    assert!(published("consumer-service").contains(&format!("{consumer_port}:{consumer_port}")));
    assert!(published("consumer-service-retry").contains(&format!("8083:{consumer_port}")));
    assert!(published("schema-registry").contains(&format!("{registry_port}:{registry_port}")));
    assert!(published("kafka").contains(&format!("{kafka_port}:{kafka_port}")));

    let orders = default_of(&producer, "topic");
    assert_eq!(orders, default_of(&consumer, "topic"));
    let confirmations = default_of(&consumer, "output_topic");
    let mut retry_tiers = None;
    for (name, program, env) in kafkit_services(&compose) {
        let listen = if program == "producer-service" {
            "PRODUCER_LISTEN"
        } else {
            "CONSUMER_LISTEN"
        };
        let want = if program == "producer-service" {
            producer_port
        } else {
            consumer_port
        };
        assert_eq!(port_of(&env[listen]), want, "{name}");
        assert_eq!(env["ORDERS_TOPIC"], orders, "{name}");
        if program == "consumer-service" {
            assert_eq!(env["CONFIRMATIONS_TOPIC"], confirmations, "{name}");
            retry_tiers = Some(env["RETRY_DELAYS_MS"].split(',').count());
        }
    }
    let init = services["kafkit-init"]["command"][0].as_str().unwrap();
    assert!(
        init.contains(&format!(
            "topics create {orders} --partitions 3 --tiers {}",
            retry_tiers.unwrap()
        )),
        "the init job creates one tier per retry delay: {init}"
    );
    assert!(
        init.contains(&format!("topics create {confirmations} ")),
        "{init}"
    );

    // Prometheus scrapes the ports the services listen on.
    let prometheus = yaml(&std::fs::read_to_string(root("deploy/prometheus.yml")).unwrap());
    let targets: Vec<String> = prometheus["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|job| {
            job["static_configs"][0]["targets"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    for target in [
        format!("producer-service:{producer_port}"),
        format!("consumer-service:{consumer_port}"),
        format!("consumer-service-retry:{consumer_port}"),
    ] {
        assert!(targets.contains(&target), "{target} in {targets:?}");
    }

    // Kubernetes: container ports and listen addresses, topic names.
    let docs = rendered("deploy/k8s/base");
    for deployment in workloads(&docs) {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let port = container["ports"][0]["containerPort"].as_u64().unwrap();
        let want = if container["command"][0] == "producer-service" {
            producer_port
        } else {
            consumer_port
        };
        assert_eq!(port, u64::from(want));
    }
    let settings = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(settings["data"]["ORDERS_TOPIC"], orders.as_str());
    assert_eq!(
        settings["data"]["CONFIRMATIONS_TOPIC"],
        confirmations.as_str()
    );
}

#[test]
fn the_dockerfile_builds_like_the_tests() {
    let dockerfile = std::fs::read_to_string(root("deploy/Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    // The toolchain the tests ran with.
    let rustc = Command::new("rustc").arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&rustc.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        stages[0].starts_with(&format!("FROM rust:{version}-")),
        "build stage {} vs rustc {version}",
        stages[0]
    );
    // Locked, release, workspace default features, the three binaries.
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("cargo build"))
        .collect();
    assert_eq!(
        builds.len(),
        2,
        "a dependency layer, then the build: {builds:?}"
    );
    for build in &builds {
        assert!(
            build.contains("--locked") && build.contains("--release"),
            "{build}"
        );
        assert!(
            !build.contains("--features") && !build.contains("--no-default-features"),
            "{build}"
        );
        for bin in ["producer-service", "consumer-service", "kafkit"] {
            assert!(build.contains(&format!("--bin {bin}")), "{build}");
        }
    }
    // The dependency layer is built from the manifests alone, before any source.
    let manifests = dockerfile.find("COPY Cargo.toml Cargo.lock").unwrap();
    let sources = dockerfile.find("COPY messaging messaging").unwrap();
    let first_build = dockerfile.find("&& cargo build").unwrap();
    assert!(manifests < first_build && first_build < sources);
    // Every workspace member's manifest is copied for that layer.
    let workspace: toml_like::Members =
        toml_like::members(&std::fs::read_to_string(root("Cargo.toml")).unwrap());
    for member in workspace.0 {
        assert!(
            dockerfile.contains(&format!("COPY {member}/Cargo.toml {member}/")),
            "{member}"
        );
    }
    // A non-root runtime.
    let runtime = &dockerfile[dockerfile.rfind("FROM ").unwrap()..];
    assert!(runtime.contains("USER 10001"), "{runtime}");
    assert!(
        !runtime.contains("cargo"),
        "no toolchain in the runtime image"
    );
    // It installs every shared library the binary links that the slim
    // Debian base lacks (read from the binary the tests built).
    let ldd = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_kafkit"))
        .output()
        .unwrap();
    let in_base = [
        "linux-vdso",
        "ld-linux",
        "libc.so",
        "libm.so",
        "libgcc_s",
        "libz.so",
        "libpthread",
        "libdl.so",
        "librt.so",
    ];
    let packages = [("libssl.so.3", "libssl3"), ("libcrypto.so.3", "libssl3")];
    let linked = String::from_utf8_lossy(&ldd.stdout).into_owned();
    assert!(
        linked.contains("libssl.so.3"),
        "TLS is linked dynamically: {linked}"
    );
    for library in linked.lines().filter_map(|l| l.split_whitespace().next()) {
        if in_base.iter().any(|b| library.contains(b)) {
            continue;
        }
        let package = packages
            .iter()
            .find(|(lib, _)| library == *lib)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| {
                panic!("{library}: which Debian package? add it to deploy/Dockerfile")
            });
        assert!(
            runtime.contains(package),
            "the runtime stage lacks {package} for {library}"
        );
    }
}

/// The workspace members, read from `[workspace] members = [...]`.
mod toml_like {
    pub struct Members(pub Vec<String>);

    pub fn members(cargo_toml: &str) -> Members {
        let line = cargo_toml
            .lines()
            .find(|l| l.trim_start().starts_with("members"))
            .unwrap();
        let list = &line[line.find('[').unwrap() + 1..line.rfind(']').unwrap()];
        Members(
            list.split(',')
                .map(|m| m.trim().trim_matches('"').to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
        )
    }
}

#[test]
fn secrets_are_never_logged_even_at_trace_level() {
    const KAFKA_PASSWORD: &str = "kafka-pw-6f1d2b9a";
    const REGISTRY_PASSWORD: &str = "registry-pw-0c7e44d1";
    let closed = devstack::free_port().unwrap();
    let listen = devstack::free_port().unwrap();
    let log = std::env::temp_dir().join(format!("kafkit-secrets-{}.log", uuid::Uuid::new_v4()));
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafkit"))
        .arg("producer-service")
        .env("RUST_LOG", "trace")
        .env("PRODUCER_LISTEN", format!("127.0.0.1:{listen}"))
        .env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{closed}"))
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("KAFKA_SASL_MECHANISM", "PLAIN")
        .env("KAFKA_SASL_USERNAME", "kafkit")
        .env("KAFKA_SASL_PASSWORD", KAFKA_PASSWORD)
        .env("SCHEMA_REGISTRY_URL", format!("http://127.0.0.1:{closed}"))
        .env("SCHEMA_REGISTRY_BASIC_AUTH_USER", "kafkit")
        .env("SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD", REGISTRY_PASSWORD)
        // (Topic creation against a dead broker would hold start-up for its 30 s timeout.)
        .env("CREATE_TOPICS", "false")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    // Start-up, topic creation against a dead broker, a readiness check and
    // an order (the registry and broker calls fail), then a clean stop.
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{listen}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "producer-service did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = client.get(format!("{base}/readyz")).send();
    let _ = client
        .post(format!("{base}/v1/orders"))
        .header("content-type", "application/json")
        .body(r#"{"customer_id":"c","items":[{"sku":"A","quantity":1,"unit_price_cents":1}],"currency":"EUR"}"#)
        .send();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).ok();
    assert!(text.lines().count() > 20, "trace logging was on: {text}");
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "{text}");
    assert!(
        !text.contains(KAFKA_PASSWORD),
        "the Kafka password was logged"
    );
    assert!(
        !text.contains(REGISTRY_PASSWORD),
        "the registry password was logged"
    );
}

/// `check-jsonschema` of `file` against `schema`: (valid, output).
fn schema_check(schema: &Path, file: &Path) -> (bool, String) {
    run(
        &tool("check-jsonschema"),
        &[
            "--schemafile",
            &schema.to_string_lossy(),
            &file.to_string_lossy(),
        ],
        None,
    )
}

#[test]
fn the_asyncapi_document_follows_asyncapi_3() {
    let schema = root("deploy/schemas/asyncapi-3.0.0.json");
    let file = root("docs/contracts/asyncapi.json");
    let (ok, out) = schema_check(&schema, &file);
    assert!(ok, "{out}");
    // The schema checks the Avro payloads too: a type Avro lacks fails.
    let broken = std::fs::read_to_string(&file).unwrap().replacen(
        "\"type\": \"record\"",
        "\"type\": \"recordz\"",
        1,
    );
    let path = std::env::temp_dir().join(format!("asyncapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, broken).unwrap();
    let (ok, out) = schema_check(&schema, &path);
    std::fs::remove_file(&path).ok();
    assert!(!ok && out.contains("recordz"), "{out}");
}

#[test]
fn the_openapi_document_follows_openapi_3_1() {
    let file = root("docs/contracts/openapi.json");
    let (ok, out) = run(
        &tool("openapi-spec-validator"),
        &[&file.to_string_lossy()],
        None,
    );
    assert!(ok, "{out}");
    let broken = std::fs::read_to_string(&file).unwrap().replacen(
        "#/components/schemas/Accepted",
        "#/components/schemas/Nowhere",
        1,
    );
    let path = std::env::temp_dir().join(format!("openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, broken).unwrap();
    let (ok, out) = run(
        &tool("openapi-spec-validator"),
        &[&path.to_string_lossy()],
        None,
    );
    std::fs::remove_file(&path).ok();
    assert!(!ok && out.contains("Nowhere"), "{out}");
}
