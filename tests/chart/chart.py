#!/usr/bin/env python3
"""Render, lint and validate the Helm chart in helm/docket with Helm's own Go SDK.

`check` lints the chart and renders it with its default values and with each
helm/docket/ci/*-values.yaml file. It validates every rendered manifest against the
Kubernetes 1.29 and 1.33 schemas (kubernetes-validate, strict), checks how the resources
refer to each other, and checks that bad values fail the schema or the chart's own checks.
`render` prints the manifests for one values file as a JSON list, for the test that starts
the real binaries with them (tests/tests/helm_chart.rs).

Helm runs in-process through helm-python-sdk, which wraps the Helm v4 Go SDK, so no helm
binary is needed. `make chart-env` installs the pinned packages into target/chart-venv.

Examples:
    target/chart-venv/bin/python tests/chart/chart.py check
    target/chart-venv/bin/python tests/chart/chart.py render --values values.json
"""

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "docket"
DOCKERFILE = ROOT / "Dockerfile"
CARGO_MANIFEST = ROOT / "Cargo.toml"
RELEASE = "docket"
NAMESPACE = "soc"
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
COMPONENTS = ("ticket", "audit", "metrics")
# Services that sign their own calls, each with a key under auth.serviceSigningKeys.
SIGNERS = ("ticket", "metrics")
# Calls between the services: caller, callee and the caller's flag with the callee's address.
SERVICE_CALLS = (
    ("ticket", "audit", "--audit-addr"),
    ("ticket", "metrics", "--metrics-addr"),
    ("metrics", "audit", "--audit-addr"),
)
HEALTH_NAMES = {
    "ticket": "docket.ticket.v1.TicketService",
    "audit": "docket.audit.v1.AuditService",
    "metrics": "docket.metrics.v1.MetricsService",
}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
SELECTOR_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
# Resources of the Prometheus Operator's CRDs, which kubernetes-validate has no schema for.
# check_references checks how they point at the chart's Services instead.
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}


class CheckFailed(Exception):
    """A check failed; the message names the values file, the resource and the problem."""


def render(chart, values):
    """Render the chart as an install of release `docket` in namespace `soc` and return the
    manifests as a list of dicts, in template order."""
    rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests = []
    for template in sorted(rendered):
        if not template.endswith((".yaml", ".yml")):
            continue
        manifests.extend(document for document in yaml.safe_load_all(rendered[template]) if document)
    return manifests


def resource_name(manifest):
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def find(manifests, kind, name=None):
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def validate_schemas(case, manifests):
    """Validate each manifest against the Kubernetes OpenAPI schemas, rejecting unknown fields."""
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_RESOURCES:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                raise CheckFailed(f"{case}: {resource_name(manifest)} is invalid for Kubernetes {version} at {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                raise CheckFailed(f"{case}: {resource_name(manifest)}: {error.message}")


def check_labels(case, manifests):
    for manifest in manifests:
        labels = manifest["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        if missing:
            raise CheckFailed(f"{case}: {resource_name(manifest)} lacks the labels {missing}")


def container_of(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        raise CheckFailed(f"{resource_name(deployment)} has {len(containers)} containers, expected 1")
    return containers[0]


def named_port(container, name):
    for port in container.get("ports", []):
        if port["name"] == name:
            return port["containerPort"]
    raise CheckFailed(f"container {container['name']} has no port named {name}")


def selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


def peer_selects(peer, labels):
    """Whether a NetworkPolicyPeer with a podSelector of matchLabels selects pods with `labels`
    in the release's namespace. Peers of other forms select nothing here."""
    if "podSelector" not in peer or "namespaceSelector" in peer:
        return False
    return selects(peer["podSelector"].get("matchLabels", {}), labels)


def check_deployment(case, deployment, values):
    """Check one Deployment's selector, probes, security context and grace period."""
    name = resource_name(deployment)
    component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = container_of(deployment)

    selector = spec["selector"]["matchLabels"]
    if set(selector) != SELECTOR_LABELS:
        raise CheckFailed(f"{case}: {name} selects on {sorted(selector)}, expected exactly {sorted(SELECTOR_LABELS)}")
    if not selects(selector, spec["template"]["metadata"]["labels"]):
        raise CheckFailed(f"{case}: {name}'s selector does not match its pod labels")

    grpc_port = named_port(container, "grpc")
    metrics_port = named_port(container, "metrics")
    args = container["args"]
    if f"--prometheus-listen-addr=0.0.0.0:{metrics_port}" not in args:
        raise CheckFailed(f"{case}: {name} does not serve Prometheus metrics on its metrics port {metrics_port}: {args}")
    mounts = {mount["name"]: mount["mountPath"] for mount in container.get("volumeMounts", [])}
    if component in SIGNERS:
        key = values["auth"]["serviceSigningKeys"][component]
        expected = [f"--service-signing-key={mounts.get('signing-key')}/{key['secretKey']}", f"--service-key-id={key['keyId']}"]
        if any(flag not in args for flag in expected):
            raise CheckFailed(f"{case}: {name} lacks {expected}: {args}")
    elif "signing-key" in mounts:
        raise CheckFailed(f"{case}: {name} mounts a signing key, but only {SIGNERS} sign their calls")
    if component == "audit" and f"--database-role={values['audit']['settings']['databaseRole']}" not in args:
        raise CheckFailed(f"{case}: {name} does not pass audit.settings.databaseRole as --database-role: {args}")
    for probe in ("startupProbe", "readinessProbe"):
        check = container[probe].get("grpc")
        if check is None:
            raise CheckFailed(f"{case}: {name}'s {probe} is not a gRPC probe")
        if check["port"] != grpc_port or check.get("service") != HEALTH_NAMES[component]:
            raise CheckFailed(f"{case}: {name}'s {probe} asks {check} instead of port {grpc_port}, service {HEALTH_NAMES[component]}")
    liveness = container["livenessProbe"]
    if "grpc" in liveness or liveness.get("tcpSocket", {}).get("port") not in ("grpc", grpc_port):
        raise CheckFailed(f"{case}: {name}'s livenessProbe must be a TCP check of the gRPC port, so it does not follow the database")

    security = container["securityContext"]
    pod_security = pod["securityContext"]
    restricted = (
        security.get("allowPrivilegeEscalation") is False
        and security.get("readOnlyRootFilesystem") is True
        and security.get("capabilities", {}).get("drop") == ["ALL"]
        and (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")) is True
        and pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    )
    if not restricted:
        raise CheckFailed(f"{case}: {name}'s security context is not restricted: pod {pod_security}, container {security}")

    grace = pod["terminationGracePeriodSeconds"]
    drain = values[component]["settings"]["shutdownGraceSeconds"]
    if f"--shutdown-grace={drain}s" not in container["args"] or grace <= drain:
        raise CheckFailed(f"{case}: {name} drains for {drain}s but Kubernetes kills it after {grace}s")
    if values[component]["autoscaling"]["enabled"] == ("replicas" in spec):
        raise CheckFailed(f"{case}: {name} must set replicas exactly when autoscaling is off")
    if "checksum/config" not in spec["template"]["metadata"].get("annotations", {}):
        raise CheckFailed(f"{case}: {name} has no checksum/config annotation")


def check_references(case, manifests, values):
    """Check that Services, autoscalers, budgets, monitors, ingresses and Secret references
    point at resources and ports that exist."""
    deployments = find(manifests, "Deployment")
    services = find(manifests, "Service")
    for service in services:
        targets = [d for d in deployments if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        if len(targets) != 1:
            raise CheckFailed(f"{case}: {resource_name(service)} selects {len(targets)} Deployments, expected 1")
        container = container_of(targets[0])
        for port in service["spec"]["ports"]:
            if named_port(container, port["targetPort"]) != port["port"]:
                raise CheckFailed(f"{case}: {resource_name(service)} port {port['name']} differs from the container port")

    for caller, callee, flag in SERVICE_CALLS:
        args = container_of(find(manifests, "Deployment", f"{RELEASE}-{caller}")[0])["args"]
        callee_service = find(manifests, "Service", f"{RELEASE}-{callee}")[0]
        grpc_port = next(port["port"] for port in callee_service["spec"]["ports"] if port["name"] == "grpc")
        expected = f"{flag}={RELEASE}-{callee}.{NAMESPACE}.svc:{grpc_port}"
        if expected not in args:
            raise CheckFailed(f"{case}: {caller} must call {callee} with {expected}: {args}")

    for autoscaler in find(manifests, "HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]["name"]
        if not find(manifests, "Deployment", target):
            raise CheckFailed(f"{case}: {resource_name(autoscaler)} scales the missing Deployment {target}")

    for component in COMPONENTS:
        budget = values[component]["podDisruptionBudget"]
        autoscaling = values[component]["autoscaling"]
        minimum = autoscaling["minReplicas"] if autoscaling["enabled"] else values[component]["replicas"]
        rendered = find(manifests, "PodDisruptionBudget", f"{RELEASE}-{component}")
        if bool(rendered) != (budget["enabled"] and minimum > 1):
            raise CheckFailed(f"{case}: the PodDisruptionBudget of {component} must exist exactly when enabled with more than one pod")

    for monitor in find(manifests, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        watched = [s for s in services if selects(selector, s["metadata"]["labels"])]
        ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
        if len(watched) != 3 or any(port not in {p["name"] for p in s["spec"]["ports"]} for s in watched for port in ports):
            raise CheckFailed(f"{case}: {resource_name(monitor)} must select the three Services by a port they all name")

    for ingress in find(manifests, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                if not find(manifests, "Service", backend["name"]):
                    raise CheckFailed(f"{case}: {resource_name(ingress)} routes to the missing Service {backend['name']}")

    secrets = {s["metadata"]["name"]: s for s in find(manifests, "Secret")}
    expected_external = {
        values["database"]["existingSecret"] or f"{RELEASE}-database",
        values["auth"]["verificationKeys"]["existingSecret"] or f"{RELEASE}-jwt-keys",
    } | {values["auth"]["serviceSigningKeys"][signer]["existingSecret"] or f"{RELEASE}-{signer}-signing-key" for signer in SIGNERS}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        references = [
            (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
            for env in container_of(deployment)["env"]
            if "secretKeyRef" in env.get("valueFrom", {})
        ]
        for volume in pod["volumes"]:
            if "secret" in volume:
                items = volume["secret"].get("items", [])
                references.extend((volume["secret"]["secretName"], item["key"]) for item in items)
                references.append((volume["secret"]["secretName"], None))
        for secret_name, key in references:
            if secret_name in secrets:
                data = secrets[secret_name].get("data", {})
                if key is not None and key not in data:
                    raise CheckFailed(f"{case}: {resource_name(deployment)} reads key {key} that Secret {secret_name} lacks")
            elif secret_name not in expected_external:
                raise CheckFailed(f"{case}: {resource_name(deployment)} reads Secret {secret_name}, which is neither rendered nor named in the values")


def check_network_policies(case, manifests, values):
    policies = find(manifests, "NetworkPolicy")
    if not values["networkPolicy"]["enabled"]:
        if policies:
            raise CheckFailed(f"{case}: NetworkPolicies are rendered although networkPolicy.enabled is false")
        return
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    if len(deny) != 1 or set(deny[0]["spec"]["policyTypes"]) != {"Ingress", "Egress"}:
        raise CheckFailed(f"{case}: expected one NetworkPolicy that denies all ingress and egress")
    specs = {}
    for component in COMPONENTS:
        policy = find(manifests, "NetworkPolicy", f"{RELEASE}-{component}")
        if not policy:
            raise CheckFailed(f"{case}: no NetworkPolicy allows the traffic of {component}")
        specs[component] = policy[0]["spec"]
        if component != "ticket":
            grpc_rule = specs[component]["ingress"][0]
            if not grpc_rule.get("from"):
                raise CheckFailed(f"{case}: the {component} API must accept calls only from named peers")
    pod_labels = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["metadata"]["labels"]
        for d in find(manifests, "Deployment")
    }
    for caller, callee, _flag in SERVICE_CALLS:
        grpc_port = values[callee]["ports"]["grpc"]
        egress = any(
            any(port.get("port") == grpc_port for port in rule.get("ports", []))
            and any(peer_selects(peer, pod_labels[callee]) for peer in rule.get("to", []))
            for rule in specs[caller]["egress"]
        )
        if not egress:
            raise CheckFailed(f"{case}: the NetworkPolicy of {caller} allows no egress to the {callee} pods on port {grpc_port}")
        # A gRPC ingress rule without `from` admits any source.
        sources = specs[callee]["ingress"][0].get("from")
        if sources and not any(peer_selects(peer, pod_labels[caller]) for peer in sources):
            raise CheckFailed(f"{case}: the NetworkPolicy of {callee} does not admit the {caller} pods to its gRPC port")


def check_dockerfile(case, manifests, values):
    """Check that the image built by the Dockerfile has the binaries, user and ports the
    chart's Deployments use."""
    dockerfile = DOCKERFILE.read_text()
    copied = re.findall(r"^COPY --from=\S+ (.+) (\S+)$", dockerfile, re.MULTILINE)
    installed = {f"{target.rstrip('/')}/{Path(source).name}" for sources, target in copied for source in sources.split()}
    user = re.search(r"^USER (\d+)(?::(\d+))?$", dockerfile, re.MULTILINE)
    exposed = {int(port) for line in re.findall(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE) for port in line.split()}
    for deployment in find(manifests, "Deployment"):
        container = container_of(deployment)
        if container["command"][0] not in installed:
            raise CheckFailed(f"{case}: {resource_name(deployment)} runs {container['command'][0]}, which the Dockerfile does not install ({sorted(installed)})")
        for port in container["ports"]:
            if port["containerPort"] not in exposed:
                raise CheckFailed(f"{case}: port {port['containerPort']} of {resource_name(deployment)} is missing from the Dockerfile's EXPOSE")
    if user is None or int(user.group(1)) != values["podSecurityContext"]["runAsUser"]:
        raise CheckFailed(f"{case}: the Dockerfile's USER differs from podSecurityContext.runAsUser")

    minimum = tomllib.loads(CARGO_MANIFEST.read_text())["workspace"]["package"]["rust-version"]
    toolchain = re.search(r"^FROM rust:(\d+)\.(\d+)", dockerfile, re.MULTILINE)
    if toolchain is None:
        raise CheckFailed("the Dockerfile's build stage is not FROM rust:MAJOR.MINOR-...")
    if (int(toolchain.group(1)), int(toolchain.group(2))) < tuple(int(part) for part in minimum.split(".")[:2]):
        raise CheckFailed(f"the Dockerfile builds with Rust {toolchain.group(1)}.{toolchain.group(2)}, older than the rust-version {minimum} in Cargo.toml")


def value_paths(values, prefix=""):
    """Yield the dotted path of every leaf and of every empty map or list in the values."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not path.endswith(("securityContext", "SecurityContext", "resources")):
            yield from value_paths(value, f"{path}.")
        else:
            yield path


def check_documentation():
    """Check that helm/docket/README.md names every value of values.yaml. A value that all
    three services have is documented once, by its path below the service."""
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    paths = set(value_paths(values))
    missing = []
    for path in sorted(paths):
        component, _, below = path.partition(".")
        shared = component in COMPONENTS and all(f"{other}.{below}" in paths for other in COMPONENTS)
        if f"`{below if shared else path}`" not in readme:
            missing.append(path)
    if missing:
        raise CheckFailed(f"helm/docket/README.md does not document the values {missing}")


# Values that must fail, with a fragment of the message each must produce. The schema
# rejects the first group and the chart's `fail` checks reject the second.
BAD_VALUES = [
    ("unknown top-level key", {"replicaCount": 2}, "additional properties 'replicaCount' not allowed"),
    ("unknown key in a service", {"ticket": {"replica": 2}}, "additional properties 'replica' not allowed"),
    ("unknown service setting", {"audit": {"settings": {"dbMaxConnection": 8}}}, "additional properties 'dbMaxConnection' not allowed"),
    ("replicas as a string", {"ticket": {"replicas": "3"}}, "got string, want integer"),
    ("autoscaling flag as a string", {"metrics": {"autoscaling": {"enabled": "yes"}}}, "got string, want boolean"),
    ("unknown log format", {"global": {"logFormat": "xml"}}, "logFormat"),
    ("duration without a unit", {"ticket": {"settings": {"relayMaxBackoff": "30"}}}, "relayMaxBackoff"),
    ("port out of range", {"audit": {"ports": {"grpc": 70000}}}, "maximum"),
    ("database URL of another scheme", {"database": {"urls": {"ticket": "mysql://db/x"}}}, "urls/ticket"),
    ("database role that is no plain identifier", {"audit": {"settings": {"databaseRole": "Writer; DROP"}}}, "databaseRole"),
    ("signing key of a service that signs nothing", {"auth": {"serviceSigningKeys": {"audit": {}}}}, "additional properties 'audit' not allowed"),
    ("grace period shorter than the drain", {"ticket": {"terminationGracePeriodSeconds": 20}}, "must be longer than ticket.settings.shutdownGraceSeconds"),
    ("existing and inline database Secret", {"database": {"existingSecret": "db", "urls": {"ticket": "postgres://h/t", "audit": "postgres://h/a", "metrics": "postgres://h/m"}}}, "database.existingSecret and database.urls are both set"),
    ("only some database URLs", {"database": {"urls": {"ticket": "postgres://h/t"}}}, "set all three URLs"),
    ("public keys without the ticket service's key", {"auth": {"verificationKeys": {"publicKeys": {"users": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n"}}}}, 'has no key "docket-ticket"'),
    ("public keys without the metrics service's key", {"auth": {"verificationKeys": {"publicKeys": {"docket-ticket": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n"}}}}, 'has no key "docket-metrics"'),
    ("existing and inline metrics signing key", {"auth": {"serviceSigningKeys": {"metrics": {"existingSecret": "key", "privateKey": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"}}}}, "auth.serviceSigningKeys.metrics.existingSecret and auth.serviceSigningKeys.metrics.privateKey are both set"),
    ("one key id for both signing keys", {"auth": {"serviceSigningKeys": {"metrics": {"keyId": "docket-ticket"}}}}, "give each service its own key pair and key id"),
    ("autoscaling minimum above maximum", {"audit": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}}, "minReplicas (5) is above maxReplicas (3)"),
    ("CPU autoscaling without a CPU request", {"metrics": {"resources": {"requests": {"cpu": None}}, "autoscaling": {"enabled": True}}}, "set metrics.resources.requests.cpu"),
    ("disruption budget with both bounds", {"ticket": {"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}}, "sets both minAvailable and maxUnavailable"),
    ("ingress without hosts", {"ticket": {"ingress": {"enabled": True}}}, "add at least one entry to ticket.ingress.hosts"),
]


def check_bad_values(chart):
    for label, values, expected in BAD_VALUES:
        try:
            render(chart, values)
        except (helm.HelmValuesError, helm.HelmRenderError) as error:
            if expected not in str(error):
                raise CheckFailed(f"bad values ({label}) failed with {str(error)!r}, expected a message containing {expected!r}")
            print(f"ok   rejects {label}: {str(error).strip().splitlines()[-1].strip()}")
            continue
        raise CheckFailed(f"bad values ({label}) rendered without error: {values}")


def lint(values, case):
    for version in KUBERNETES_VERSIONS:
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{version}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
        if problems:
            raise CheckFailed(f"{case}: helm lint for Kubernetes {version} reports {problems}")


def check(_args):
    cases = [("default values", None)] + [
        (f"ci/{path.name}", yaml.safe_load(path.read_text())) for path in sorted((CHART / "ci").glob("*-values.yaml"))
    ]
    print(f"helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), kubernetes-validate for Kubernetes {', '.join(KUBERNETES_VERSIONS)}")
    passed = 0
    with helm.Chart.load(CHART) as chart:
        for case, overrides in cases:
            lint(overrides, case)
            merged = chart.merge_values(overrides)
            manifests = render(chart, overrides)
            validate_schemas(case, manifests)
            check_labels(case, manifests)
            for deployment in find(manifests, "Deployment"):
                check_deployment(case, deployment, merged)
            check_references(case, manifests, merged)
            check_network_policies(case, manifests, merged)
            check_dockerfile(case, manifests, merged)
            print(f"ok   {case}: {len(manifests)} resources: {', '.join(resource_name(m) for m in manifests)}")
            passed += 1
        check_bad_values(chart)
        passed += len(BAD_VALUES)
    check_documentation()
    print("ok   helm/docket/README.md documents every value")
    passed += 1
    print(f"chart: {passed} passed, 0 failed")


def render_command(args):
    values = json.loads(Path(args.values).read_text()) if args.values else None
    with helm.Chart.load(CHART) as chart:
        json.dump(render(chart, values), sys.stdout)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="lint, render and validate the chart with every values file")
    render_parser = commands.add_parser("render", help="print the manifests for one values file as JSON")
    render_parser.add_argument("--values", help="JSON file of values that override values.yaml")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            check(args)
        else:
            render_command(args)
    except (CheckFailed, helm.HelmError) as error:
        print(f"FAIL {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
