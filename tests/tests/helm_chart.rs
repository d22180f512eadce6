//! The Helm chart in helm/docket against the real service binaries.
//!
//! The chart is rendered by Helm's own Go code (tests/chart/chart.py in the virtual
//! environment that `make chart-env` installs). Each rendered Deployment's container then
//! runs here as a process of the built binary, with the command's arguments and the
//! environment exactly as rendered. Only three things are remapped to this machine: cluster
//! addresses (Services, PostgreSQL, the OTLP collector) to 127.0.0.1, container ports to
//! free local ports, and volume mount paths to temporary directories that hold the rendered
//! Secrets' files. A renamed flag stops the binary with exit code 64, and a renamed
//! environment variable is missing from the binary's `--help`, so either fails this test.
//! The calls between the services (relayed events, the metrics service's records of the
//! calls it denied) and the Prometheus endpoints then show that the rendered addresses,
//! ports and keys fit together.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use docket_auth::{Role, Signer};
use docket_proto::audit::v1::ListRecordsRequest;
use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::metrics::v1::{GetResponseMetricsRequest, RecordEventsRequest};
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::{Category, CreateTicketRequest, Severity};
use docket_tests::otlp::OtlpReceiver;
use docket_tests::{AuthChannel, eventually};
use serde_json::{Value, json};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Namespace that tests/chart/chart.py renders the release into.
const NAMESPACE: &str = "soc";

/// Cluster addresses in the test values, which the test maps to 127.0.0.1.
const DATABASE_HOST: &str = "postgres.db.svc:5432";
const OTLP_COLLECTOR: &str = "otel-collector.observability.svc:4317";

/// Token settings that differ from the services' defaults, so a flag the binaries ignored
/// would make every call fail.
const ISSUER: &str = "https://idp.example.com/realms/soc";
const AUDIENCE: &str = "docket-chart-test";
const USERS_KEY_ID: &str = "chart-users";
const TICKET_KEY_ID: &str = "chart-ticket-2026";
const METRICS_KEY_ID: &str = "chart-metrics-2026";

const WAIT: Duration = Duration::from_secs(60);

fn repository_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// Returns the directory of the built binaries: the parent of the `deps` directory this test
/// runs from. NOTE: `cargo test` does not rebuild the service binaries, because their packages
/// have no integration tests, so after a change run `make test`, which builds them first.
fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    exe.parent().and_then(Path::parent).expect("tests run from <target>/<profile>/deps").to_path_buf()
}

/// Returns the user and the `host:port` of the test PostgreSQL server in DOCKET_TEST_POSTGRES.
fn postgres_authority() -> (String, String) {
    let server = std::env::var("DOCKET_TEST_POSTGRES").unwrap_or_else(|_| docket_tests::DEFAULT_POSTGRES.to_owned());
    let authority = server
        .strip_prefix("postgres://")
        .or_else(|| server.strip_prefix("postgresql://"))
        .unwrap_or_else(|| panic!("DOCKET_TEST_POSTGRES {server:?} is not a postgres:// URL"))
        .trim_end_matches('/');
    match authority.rsplit_once('@') {
        Some((user, host)) => (user.to_owned(), host.to_owned()),
        None => (String::new(), authority.to_owned()),
    }
}

/// Key pairs made for this test: one signs the test user's tokens, the others the ticket
/// and the metrics service's own calls.
struct ChartKeys {
    users: Signer,
    users_public: String,
    ticket: docket_auth::Ed25519KeyPair,
    metrics: docket_auth::Ed25519KeyPair,
}

fn chart_keys() -> ChartKeys {
    let users = docket_auth::generate_ed25519_keypair().expect("generate the users key pair");
    ChartKeys {
        users: Signer::from_pem(users.private_pem.as_bytes(), USERS_KEY_ID, ISSUER, AUDIENCE).expect("users signer"),
        users_public: users.public_pem.clone(),
        ticket: docket_auth::generate_ed25519_keypair().expect("generate the ticket service key pair"),
        metrics: docket_auth::generate_ed25519_keypair().expect("generate the metrics service key pair"),
    }
}

/// Values for the render: Secrets created by the chart from values, OTLP and the
/// ServiceMonitor on, JSON logs, and settings away from the binaries' defaults.
fn chart_values(keys: &ChartKeys, user: &str) -> Value {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let database_url = |component: &str| {
        let user = if user.is_empty() { String::new() } else { format!("{user}@") };
        format!("postgres://{user}{DATABASE_HOST}/{}chart_{component}_{}", docket_tests::DATABASE_PREFIX, &suffix[..12])
    };
    let service_settings = json!({"dbMaxConnections": 4, "dbAcquireTimeout": "3s", "shutdownGraceSeconds": 2,
        "grpcRequestTimeout": "20s", "grpcMaxConcurrentStreams": 128,
        "grpcMaxDecodingMessageSize": 4194304, "grpcMaxEncodingMessageSize": 8388608});
    let mut ticket_settings = service_settings.clone();
    ticket_settings["relayBatchSize"] = json!(50);
    ticket_settings["relayPollInterval"] = json!("200ms");
    ticket_settings["relayMaxBackoff"] = json!("2s");
    // The batch span processor exports every 100 ms instead of every 5 s, so spans arrive
    // before the test stops the processes.
    let extra_env = json!([{"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "100"}]);
    json!({
        "global": {
            "logFormat": "json",
            "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "leeway": "5s"},
            "otlp": {"endpoint": format!("http://{OTLP_COLLECTOR}"), "resourceAttributes": "deployment.environment=chart-test"},
        },
        "database": {"urls": {"ticket": database_url("ticket"), "audit": database_url("audit"), "metrics": database_url("metrics")}},
        "auth": {
            "verificationKeys": {"publicKeys": {
                USERS_KEY_ID: keys.users_public,
                TICKET_KEY_ID: keys.ticket.public_pem,
                METRICS_KEY_ID: keys.metrics.public_pem,
            }},
            "serviceSigningKeys": {
                "ticket": {"privateKey": keys.ticket.private_pem, "keyId": TICKET_KEY_ID, "secretKey": "relay-signing.pem"},
                "metrics": {"privateKey": keys.metrics.private_pem, "keyId": METRICS_KEY_ID, "secretKey": "denials-signing.pem"},
            },
        },
        "ticket": {"settings": ticket_settings, "extraEnv": extra_env, "terminationGracePeriodSeconds": 5},
        "audit": {"settings": service_settings, "extraEnv": extra_env, "terminationGracePeriodSeconds": 5},
        "metrics": {"settings": service_settings, "extraEnv": extra_env, "terminationGracePeriodSeconds": 5},
        "serviceMonitor": {"enabled": true},
    })
}

/// Renders the chart with `values` through Helm's Go SDK and returns the manifests.
fn render(values: &Value, dir: &Path) -> Vec<Value> {
    let python = repository_path("target/chart-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; run `make chart-env` (or `make test`, which runs it) to install helm-python-sdk",
        python.display()
    );
    let values_file = dir.join("values.json");
    std::fs::write(&values_file, values.to_string()).expect("write the values file");
    let output = Command::new(python)
        .arg(repository_path("tests/chart/chart.py"))
        .args(["render", "--values"])
        .arg(&values_file)
        .output()
        .expect("the Python interpreter starts");
    assert!(output.status.success(), "rendering the chart failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("chart.py render prints a JSON list")
}

fn of_kind<'a>(manifests: &'a [Value], kind: &str) -> Vec<&'a Value> {
    manifests.iter().filter(|manifest| manifest["kind"] == kind).collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("expected a string, found {value}"))
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().expect("a selector is a map").iter().all(|(key, value)| &labels[key] == value)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// One rendered Deployment's container, prepared to run on this machine.
struct Workload {
    deployment: String,
    component: String,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Local port for each container port, by container port number.
    ports: HashMap<u64, u16>,
    container: Value,
}

impl Workload {
    /// Returns the local port of the container port named `name`, or numbered `name`.
    fn local_port(&self, name_or_number: &Value) -> u16 {
        let number = match name_or_number {
            Value::Number(number) => number.as_u64().expect("a port number"),
            Value::String(name) => self.container["ports"]
                .as_array()
                .expect("the container declares ports")
                .iter()
                .find(|port| port["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{} has no container port named {name}", self.deployment))["containerPort"]
                .as_u64()
                .expect("containerPort is a number"),
            other => panic!("invalid port reference {other}"),
        };
        *self.ports.get(&number).unwrap_or_else(|| panic!("{} does not declare container port {number}", self.deployment))
    }
}

/// Turns the rendered manifests into processes' command lines: free local ports for every
/// container port, cluster addresses rewritten to them, and Secret volumes written to `dir`.
fn prepare_workloads(manifests: &[Value], dir: &Path, postgres_host: &str, otlp: SocketAddr) -> Vec<Workload> {
    let deployments = of_kind(manifests, "Deployment");
    assert_eq!(deployments.len(), 3, "the chart renders one Deployment per service");
    let secrets: HashMap<&str, &Value> = of_kind(manifests, "Secret")
        .into_iter()
        .map(|secret| (text(&secret["metadata"]["name"]), &secret["data"]))
        .collect();

    let mut workloads: Vec<Workload> = deployments
        .iter()
        .map(|deployment| {
            let name = text(&deployment["metadata"]["name"]).to_owned();
            let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
            assert_eq!(containers.len(), 1, "{name} runs one container");
            let container = containers[0].clone();
            let ports = container["ports"]
                .as_array()
                .expect("the container declares ports")
                .iter()
                .map(|port| (port["containerPort"].as_u64().expect("containerPort"), free_port()))
                .collect();
            Workload {
                component: text(&deployment["metadata"]["labels"]["app.kubernetes.io/component"]).to_owned(),
                deployment: name,
                binary: PathBuf::new(),
                args: Vec::new(),
                env: Vec::new(),
                ports,
                container,
            }
        })
        .collect();

    // Cluster addresses; `rewrite` tries longer ones first, so a Service name never matches
    // inside a longer host name.
    let mut replacements: Vec<(String, String)> = vec![
        (DATABASE_HOST.to_owned(), postgres_host.to_owned()),
        (OTLP_COLLECTOR.to_owned(), otlp.to_string()),
    ];
    for service in of_kind(manifests, "Service") {
        let service_name = text(&service["metadata"]["name"]);
        let targets: Vec<&Workload> = workloads
            .iter()
            .filter(|workload| {
                let deployment = deployments.iter().find(|d| d["metadata"]["name"] == workload.deployment.as_str()).unwrap();
                selects(&service["spec"]["selector"], &deployment["spec"]["template"]["metadata"]["labels"])
            })
            .collect();
        assert_eq!(targets.len(), 1, "Service {service_name} selects exactly one Deployment");
        for port in service["spec"]["ports"].as_array().expect("Service ports") {
            let local = format!("127.0.0.1:{}", targets[0].local_port(&port["targetPort"]));
            let port_number = &port["port"];
            for host in [
                format!("{service_name}.{NAMESPACE}.svc.cluster.local"),
                format!("{service_name}.{NAMESPACE}.svc"),
                format!("{service_name}.{NAMESPACE}"),
                service_name.to_owned(),
            ] {
                replacements.push((format!("{host}:{port_number}"), local.clone()));
            }
        }
    }

    for workload in &mut workloads {
        let pod_dir = dir.join(&workload.deployment);
        let mut local = replacements.clone();
        for (container_port, local_port) in &workload.ports {
            local.push((format!("0.0.0.0:{container_port}"), format!("127.0.0.1:{local_port}")));
        }
        let deployment = deployments.iter().find(|d| d["metadata"]["name"] == workload.deployment.as_str()).unwrap();
        let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes");
        local.extend(mount_volumes(&workload.container, volumes, &secrets, &pod_dir));

        let command = workload.container["command"].as_array().expect("the container sets a command");
        assert_eq!(command.len(), 1, "{} passes its settings as args, not in command", workload.deployment);
        let image_path = text(&command[0]);
        let binary_name = image_path.strip_prefix("/usr/local/bin/").unwrap_or_else(|| {
            panic!("{} runs {image_path}, but the Dockerfile installs the binaries in /usr/local/bin", workload.deployment)
        });
        workload.binary = binary_dir().join(binary_name);
        assert!(
            workload.binary.exists(),
            "{} is missing; build the service binaries with `cargo build -p docket-ticket -p docket-audit -p docket-metrics` (`make test` does)",
            workload.binary.display()
        );

        workload.env = resolve_env(workload, &secrets, &local);
        let variables = workload.env.clone();
        workload.args = workload.container["args"]
            .as_array()
            .expect("the container sets args")
            .iter()
            .map(|arg| rewrite(&expand(text(arg), &variables), &local))
            .collect();
        for value in workload.args.iter().chain(workload.env.iter().map(|(_, value)| value)) {
            assert!(
                !value.contains(".svc") && !value.contains("0.0.0.0"),
                "{} is configured with {value:?}, an address that is neither a rendered Service nor one of its container ports",
                workload.deployment
            );
        }
    }
    workloads
}

/// Writes each Secret volume that the container mounts into a directory under `pod_dir` and
/// returns the replacements from mount paths to those directories. Other volumes get an
/// empty directory.
fn mount_volumes(container: &Value, volumes: &[Value], secrets: &HashMap<&str, &Value>, pod_dir: &Path) -> Vec<(String, String)> {
    let mut replacements = Vec::new();
    for mount in container["volumeMounts"].as_array().expect("volume mounts") {
        let volume_name = text(&mount["name"]);
        let volume = volumes.iter().find(|volume| volume["name"] == volume_name).expect("a mounted volume is declared");
        let local = pod_dir.join(volume_name);
        std::fs::create_dir_all(&local).expect("create the volume directory");
        if let Some(secret) = volume.get("secret") {
            let secret_name = text(&secret["secretName"]);
            let data = secrets.get(secret_name).unwrap_or_else(|| panic!("Secret {secret_name} is mounted but not rendered"));
            let files: Vec<(String, String)> = match secret.get("items") {
                Some(items) => items
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|item| (text(&item["key"]).to_owned(), text(&item["path"]).to_owned()))
                    .collect(),
                None => data.as_object().expect("Secret data").keys().map(|key| (key.clone(), key.clone())).collect(),
            };
            for (key, path) in files {
                let encoded = data.get(&key).unwrap_or_else(|| panic!("Secret {secret_name} has no key {key}"));
                let bytes = base64::engine::general_purpose::STANDARD.decode(text(encoded)).expect("Secret data is base64");
                std::fs::write(local.join(path), bytes).expect("write a Secret file");
            }
        }
        replacements.push((text(&mount["mountPath"]).to_owned(), local.display().to_string()));
    }
    replacements
}

/// Resolves the container's environment as the kubelet does: plain values with `$(NAME)`
/// references to earlier variables, Secret keys and the pod's own name and namespace.
/// NOTE: `$$(NAME)`, which Kubernetes leaves as `$(NAME)`, is not handled; the chart uses none.
fn resolve_env(workload: &Workload, secrets: &HashMap<&str, &Value>, replacements: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for variable in workload.container["env"].as_array().expect("the container sets env") {
        let name = text(&variable["name"]).to_owned();
        let value = if let Some(value) = variable.get("value") {
            expand(text(value), &env)
        } else if let Some(reference) = variable["valueFrom"].get("secretKeyRef") {
            let secret_name = text(&reference["name"]);
            let key = text(&reference["key"]);
            let data = secrets.get(secret_name).unwrap_or_else(|| panic!("{name} reads Secret {secret_name}, which is not rendered"));
            let encoded = data.get(key).unwrap_or_else(|| panic!("{name} reads key {key}, which Secret {secret_name} lacks"));
            let bytes = base64::engine::general_purpose::STANDARD.decode(text(encoded)).expect("Secret data is base64");
            String::from_utf8(bytes).expect("the Secret value is text")
        } else if let Some(field) = variable["valueFrom"].get("fieldRef") {
            match text(&field["fieldPath"]) {
                "metadata.name" => format!("{}-7d9f8c6b5-x2x4q", workload.deployment),
                "metadata.namespace" => NAMESPACE.to_owned(),
                other => panic!("{name} reads the pod field {other}, which this test does not provide"),
            }
        } else {
            panic!("{name} has a value source this test does not resolve: {variable}");
        };
        env.push((name, rewrite(&value, replacements)));
    }
    env
}

fn expand(value: &str, env: &[(String, String)]) -> String {
    env.iter().fold(value.to_owned(), |value, (name, replacement)| value.replace(&format!("$({name})"), replacement))
}

/// Replaces each occurrence of a `from` text with its `to` text in one pass from the left,
/// trying longer texts first, so that a replacement's output is never replaced again.
fn rewrite(value: &str, replacements: &[(String, String)]) -> String {
    let mut ordered: Vec<&(String, String)> = replacements.iter().collect();
    ordered.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    let mut rewritten = String::new();
    let mut rest = value;
    while let Some(character) = rest.chars().next() {
        match ordered.iter().find(|(from, _)| rest.starts_with(from.as_str())) {
            Some((from, to)) => {
                rewritten.push_str(to);
                rest = &rest[from.len()..];
            }
            None => {
                rewritten.push(character);
                rest = &rest[character.len_utf8()..];
            }
        }
    }
    rewritten
}

/// A started service binary; it is killed when dropped.
struct Process {
    deployment: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Process {
    fn start(workload: &Workload, dir: &Path) -> Process {
        let stdout = dir.join(format!("{}.stdout", workload.deployment));
        let stderr = dir.join(format!("{}.stderr", workload.deployment));
        let child = Command::new(&workload.binary)
            .args(&workload.args)
            // The container's environment is only what the chart sets, so none of this
            // process's DOCKET_* or OTEL_* variables may leak in.
            .env_clear()
            .envs(workload.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create the stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("create the stderr file"))
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", workload.binary.display()));
        Process { deployment: workload.deployment.clone(), child, stdout, stderr }
    }

    /// Returns the exit status and output if the process has stopped.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().expect("query the process state")?;
        Some(format!("{} exited with {status}\nstdout:\n{}\nstderr:\n{}", self.deployment, self.output(), self.errors()))
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn health_status(port: u16, service: &str) -> Option<i32> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).ok()?.connect().await.ok()?;
    let request = HealthCheckRequest { service: service.to_owned() };
    Some(HealthClient::new(channel).check(request).await.ok()?.into_inner().status)
}

/// Waits until the probe's health name reports SERVING, failing early if the process exits.
async fn wait_until_serving(process: &mut Process, port: u16, service: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(exit) = process.exited() {
            panic!("{exit}");
        }
        if health_status(port, service).await == Some(ServingStatus::Serving as i32) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} did not report {service:?} SERVING on the probe's port within {WAIT:?}\nstdout:\n{}\nstderr:\n{}",
            process.deployment,
            process.output(),
            process.errors()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `GET path` over HTTP/1.1 to 127.0.0.1 and returns the whole response.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|error| panic!("connect to 127.0.0.1:{port}: {error}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set a read timeout");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    response
}

fn help_text(binary: &Path) -> String {
    let output = Command::new(binary).arg("--help").env_clear().output().expect("the binary starts");
    assert!(output.status.success(), "{} --help failed", binary.display());
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_starts_services_that_reach_each_other() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let receiver = OtlpReceiver::start().await;
    let keys = chart_keys();
    let (user, postgres_host) = postgres_authority();
    let manifests = render(&chart_values(&keys, &user), dir.path());
    let workloads = prepare_workloads(&manifests, dir.path(), &postgres_host, receiver.addr);

    for workload in &workloads {
        let help = help_text(&workload.binary);
        for (name, _) in workload.env.iter().filter(|(name, _)| name.starts_with("DOCKET_")) {
            assert!(
                help.contains(&format!("[env: {name}=")),
                "{} sets {name}, which {} does not read (its --help lists no such variable)",
                workload.deployment,
                workload.binary.display()
            );
        }
    }

    let mut processes: Vec<Process> = workloads.iter().map(|workload| Process::start(workload, dir.path())).collect();
    let services = of_kind(&manifests, "Service");
    for (workload, process) in workloads.iter().zip(processes.iter_mut()) {
        let container = &workload.container;
        let readiness = &container["readinessProbe"]["grpc"];
        let startup = &container["startupProbe"]["grpc"];
        let service = services
            .iter()
            .find(|service| service["metadata"]["name"] == workload.deployment.as_str())
            .unwrap_or_else(|| panic!("no Service named like Deployment {}", workload.deployment));
        let grpc_service_port = service["spec"]["ports"]
            .as_array()
            .expect("Service ports")
            .iter()
            .find(|port| port["name"] == "grpc")
            .expect("the Service names a grpc port");

        let port = workload.local_port(&readiness["port"]);
        assert_eq!(port, workload.local_port(&grpc_service_port["targetPort"]), "{}: readiness probe and Service name different ports", workload.deployment);
        assert_eq!(port, workload.local_port(&startup["port"]), "{}: startup probe and Service name different ports", workload.deployment);
        assert_eq!(port, workload.local_port(&container["livenessProbe"]["tcpSocket"]["port"]), "{}: liveness probe checks another port", workload.deployment);

        wait_until_serving(process, port, text(&readiness["service"])).await;
        assert_eq!(health_status(port, text(&startup["service"])).await, Some(ServingStatus::Serving as i32), "{} startup probe", workload.deployment);
        assert_eq!(health_status(port, "").await, Some(ServingStatus::Serving as i32), "{} overall health", workload.deployment);
        TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|error| panic!("{}: liveness TCP check fails: {error}", workload.deployment));
        println!("{}: {} SERVING on the probe port (container {}), liveness TCP check connects", workload.deployment, text(&readiness["service"]), readiness["port"]);
    }

    let ticket = workloads.iter().find(|workload| workload.component == "ticket").expect("a ticket workload");
    let audit = workloads.iter().find(|workload| workload.component == "audit").expect("an audit workload");
    let metrics = workloads.iter().find(|workload| workload.component == "metrics").expect("a metrics workload");
    let grpc = |workload: &Workload| SocketAddr::from(([127, 0, 0, 1], workload.local_port(&json!("grpc"))));
    let token = keys.users.mint("chart-admin", &[Role::Admin], Duration::from_secs(600)).expect("mint a token");

    let mut tickets = TicketServiceClient::new(AuthChannel::with_token(grpc(ticket), &token).await);
    let created = tickets
        .create_ticket(CreateTicketRequest {
            request_id: "chart-1".to_owned(),
            title: "Phishing mail with a credential harvesting link".to_owned(),
            severity: Severity::High as i32,
            category: Category::Phishing as i32,
            ..Default::default()
        })
        .await
        .expect("CreateTicket succeeds with a token of the chart's issuer and audience")
        .into_inner();

    let audit_client = AuditServiceClient::new(AuthChannel::with_token(grpc(audit), &token).await);
    let ledger = eventually(WAIT, || {
        let mut client = audit_client.clone();
        let resource = created.id.clone();
        async move {
            let request = ListRecordsRequest { resource, page_size: 10, ..Default::default() };
            let records = client.list_records(request).await.ok()?.into_inner().records;
            (!records.is_empty()).then_some(records)
        }
    })
    .await;
    let ledger = ledger.unwrap_or_else(|| panic!("the ticket's event never reached the audit ledger\n{}", logs(&processes)));
    println!("audit ledger holds {} record(s) for ticket {}, relayed by the ticket service", ledger.len(), created.key);

    let metrics_client = MetricsServiceClient::new(AuthChannel::with_token(grpc(metrics), &token).await);
    let projected = eventually(WAIT, || {
        let mut client = metrics_client.clone();
        async move {
            let groups = client.get_response_metrics(GetResponseMetricsRequest::default()).await.ok()?.into_inner().groups;
            let count: i64 = groups.iter().map(|group| group.tickets).sum();
            (count >= 1).then_some(count)
        }
    })
    .await;
    let projected = projected.unwrap_or_else(|| panic!("the ticket's event never reached the metrics projection\n{}", logs(&processes)));
    println!("metrics projection counts {projected} ticket(s)");

    // The metrics service signs the record of a call it denied with its own key and sends it
    // to the audit address the chart gave it, so a wrong address or key keeps it out of the
    // ledger.
    let analyst_token = keys.users.mint("chart-analyst", &[Role::Analyst], Duration::from_secs(600)).expect("mint a token");
    let mut analyst_metrics = MetricsServiceClient::new(AuthChannel::with_token(grpc(metrics), &analyst_token).await);
    let denied = analyst_metrics.record_events(RecordEventsRequest::default()).await.expect_err("only services may record events");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "RecordEvents by an analyst: {denied:?}");
    let denials = eventually(WAIT, || {
        let mut client = audit_client.clone();
        async move {
            let request = ListRecordsRequest { action: "metrics.access_denied".to_owned(), actor: "chart-analyst".to_owned(), page_size: 10, ..Default::default() };
            let records = client.list_records(request).await.ok()?.into_inner().records;
            (!records.is_empty()).then_some(records)
        }
    })
    .await;
    let denials = denials.unwrap_or_else(|| panic!("the metrics service's record of the denied call never reached the audit ledger\n{}", logs(&processes)));
    assert_eq!(denials.len(), 1, "one ledger record of the one denied call");
    assert_eq!(denials[0].resource_id, "/docket.metrics.v1.MetricsService/RecordEvents");
    let canonical: Value = serde_json::from_slice(&denials[0].canonical).expect("canonical bytes are JSON");
    assert_eq!(canonical["actor"]["relayed_by"], "docket-metrics", "the record names the metrics service as its sender");
    println!("audit ledger holds the record of the call the metrics service denied");

    prometheus_endpoints_serve_grpc_metrics(&manifests, &workloads);

    for service_name in ["docket-ticket", "docket-audit", "docket-metrics"] {
        let span = receiver.wait_for(|span| span.service_name == service_name, WAIT).await;
        assert!(span.is_some(), "no span from {service_name} reached the OTLP endpoint the chart configured\n{}", logs(&processes));
    }
    println!("spans from docket-ticket, docket-audit and docket-metrics reached the OTLP endpoint");

    for process in &mut processes {
        assert!(process.exited().is_none(), "a service stopped during the test");
        let lines: Vec<String> = process.output().lines().map(str::to_owned).collect();
        assert!(!lines.is_empty(), "{} wrote no log lines", process.deployment);
        for line in &lines {
            assert!(serde_json::from_str::<serde_json::Map<String, Value>>(line).is_ok(), "{} logs a line that is not JSON: {line}", process.deployment);
        }
    }
    println!("every log line of the three services is JSON");
}

/// Scrapes each Service that the ServiceMonitor selects, on the port and path of each of its
/// endpoints, as Prometheus would. It runs after the gRPC calls, so every service has
/// handled calls and reports `grpc_server_handled_total`.
fn prometheus_endpoints_serve_grpc_metrics(manifests: &[Value], workloads: &[Workload]) {
    let monitors = of_kind(manifests, "ServiceMonitor");
    assert_eq!(monitors.len(), 1, "serviceMonitor.enabled renders one ServiceMonitor");
    let monitor = monitors[0];
    let services: Vec<&Value> = of_kind(manifests, "Service")
        .into_iter()
        .filter(|service| selects(&monitor["spec"]["selector"]["matchLabels"], &service["metadata"]["labels"]))
        .collect();
    assert_eq!(services.len(), 3, "the ServiceMonitor selects the Service of each service");

    for endpoint in monitor["spec"]["endpoints"].as_array().expect("ServiceMonitor endpoints") {
        let port_name = text(&endpoint["port"]);
        let path = text(&endpoint["path"]);
        for service in &services {
            let service_name = text(&service["metadata"]["name"]);
            let workload = workloads
                .iter()
                .find(|workload| workload.deployment == service_name)
                .unwrap_or_else(|| panic!("no Deployment named like Service {service_name}"));
            let service_port = service["spec"]["ports"]
                .as_array()
                .expect("Service ports")
                .iter()
                .find(|port| port["name"] == port_name)
                .unwrap_or_else(|| panic!("Service {service_name} has no port named {port_name}, which the ServiceMonitor scrapes"));

            let response = http_get(workload.local_port(&service_port["targetPort"]), path);
            assert!(response.starts_with("HTTP/1.1 200"), "{service_name}: GET {path} on the {port_name} port answered {response}");
            assert!(
                response.contains("grpc_server_handled_total"),
                "{service_name}: GET {path} on the {port_name} port has no grpc_server_handled_total:\n{response}"
            );
            println!("{service_name}: GET {path} on the {port_name} port answers 200 with grpc_server_handled_total");
        }
    }
}

fn logs(processes: &[Process]) -> String {
    processes
        .iter()
        .map(|process| format!("--- {} stdout:\n{}\n--- stderr:\n{}", process.deployment, process.output(), process.errors()))
        .collect::<Vec<_>>()
        .join("\n")
}
