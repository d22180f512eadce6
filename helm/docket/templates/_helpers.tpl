{{/*
The three services the chart deploys, in the order their resources are rendered.
*/}}
{{- define "docket.components" -}}
ticket audit metrics
{{- end }}

{{/*
The services that sign their own calls to other services, each with its own key under
auth.serviceSigningKeys: ticket relays events to audit and metrics, and metrics sends audit
the records of the calls it denied.
*/}}
{{- define "docket.signers" -}}
ticket metrics
{{- end }}

{{/*
Chart name, or nameOverride, cut to 63 characters because label values allow no more.
*/}}
{{- define "docket.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: "<release>-<chart name>", or the release name alone when it
already contains the chart name. Cut to 50 characters so that "-metrics" and the suffixes
Kubernetes adds to pod names still fit in 63.
*/}}
{{- define "docket.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "docket.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of one service's resources: "<fullname>-<component>". Takes (dict "root" $ "component" NAME).
*/}}
{{- define "docket.componentName" -}}
{{- printf "%s-%s" (include "docket.fullname" .root) .component }}
{{- end }}

{{/*
Labels that select one service's pods. They never change after the first install, because
a Deployment's selector is immutable. Takes (dict "root" $ "component" NAME); without a
component they select every pod of the release.
*/}}
{{- define "docket.selectorLabels" -}}
app.kubernetes.io/name: {{ include "docket.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/*
Standard labels of every resource. Takes (dict "root" $ "component" NAME); the component
may be empty for resources that belong to the whole release.
*/}}
{{- define "docket.labels" -}}
helm.sh/chart: {{ include "docket.chart" .root }}
{{ include "docket.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: docket
{{- end }}

{{/*
Image reference of one service: "[registry/]repository:tag". The tag falls back to
global.image.tag and then to the chart's appVersion.
*/}}
{{- define "docket.image" -}}
{{- $values := index .root.Values .component }}
{{- $tag := $values.image.tag | default .root.Values.global.image.tag | default .root.Chart.AppVersion }}
{{- $repository := $values.image.repository }}
{{- with .root.Values.global.image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/*
ServiceAccount name of one service.
*/}}
{{- define "docket.serviceAccountName" -}}
{{- $values := index .root.Values .component }}
{{- if $values.serviceAccount.create }}
{{- default (include "docket.componentName" .) $values.serviceAccount.name }}
{{- else }}
{{- default "default" $values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Fully qualified gRPC service name that one service reports through grpc.health.v1.
*/}}
{{- define "docket.healthService" -}}
{{- get (dict "ticket" "docket.ticket.v1.TicketService" "audit" "docket.audit.v1.AuditService" "metrics" "docket.metrics.v1.MetricsService") .component }}
{{- end }}

{{/*
Name of the binary in the image that runs one service.
*/}}
{{- define "docket.binary" -}}
{{- printf "docket-%s" .component }}
{{- end }}

{{/*
host:port at which the other services reach one service's gRPC port, through its Service.
*/}}
{{- define "docket.grpcAddress" -}}
{{- $values := index .root.Values .component }}
{{- printf "%s.%s.svc:%d" (include "docket.componentName" .) .root.Release.Namespace (int $values.ports.grpc) }}
{{- end }}

{{/*
Secret names: the existing Secret when one is named, else the one the chart creates from
values (or that the operator creates under the chart's name).
*/}}
{{- define "docket.databaseSecretName" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "docket.fullname" .)) }}
{{- end }}

{{- define "docket.jwtKeysSecretName" -}}
{{- .Values.auth.verificationKeys.existingSecret | default (printf "%s-jwt-keys" (include "docket.fullname" .)) }}
{{- end }}

{{- /* Takes (dict "root" $ "component" NAME) for a component in docket.signers. */}}
{{- define "docket.signingKeySecretName" -}}
{{- $key := index .root.Values.auth.serviceSigningKeys .component }}
{{- $key.existingSecret | default (printf "%s-%s-signing-key" (include "docket.fullname" .root) .component) }}
{{- end }}

{{/*
Whether the chart creates each Secret: "true" or empty.
*/}}
{{- define "docket.createsDatabaseSecret" -}}
{{- $urls := .Values.database.urls }}
{{- if and (not .Values.database.existingSecret) (or $urls.ticket $urls.audit $urls.metrics) }}true{{ end }}
{{- end }}

{{- define "docket.createsJwtKeysSecret" -}}
{{- if and (not .Values.auth.verificationKeys.existingSecret) .Values.auth.verificationKeys.publicKeys }}true{{ end }}
{{- end }}

{{- /* Takes (dict "root" $ "component" NAME) for a component in docket.signers. */}}
{{- define "docket.createsSigningKeySecret" -}}
{{- $key := index .root.Values.auth.serviceSigningKeys .component }}
{{- if and (not $key.existingSecret) $key.privateKey }}true{{ end }}
{{- end }}

{{/*
Lowest number of pods one service runs: minReplicas with autoscaling, else replicas.
*/}}
{{- define "docket.minimumReplicas" -}}
{{- $values := index .root.Values .component }}
{{- if $values.autoscaling.enabled }}{{ $values.autoscaling.minReplicas }}{{ else }}{{ $values.replicas }}{{ end }}
{{- end }}

{{/*
Port of the OTLP endpoint URL, for the egress NetworkPolicy: the URL's port, else 4317
(the OTLP/gRPC default).
*/}}
{{- define "docket.otlpPort" -}}
{{- $host := (urlParse .Values.global.otlp.endpoint).host }}
{{- if regexMatch ":[0-9]+$" $host }}{{ regexFind "[0-9]+$" $host }}{{ else }}4317{{ end }}
{{- end }}

{{/*
Checks for settings that cannot work together and stops the render with a message that
names the values and the fix. The templates that create resources include it once.
*/}}
{{- define "docket.validate" -}}
{{- $database := .Values.database }}
{{- $urls := $database.urls }}
{{- if and $database.existingSecret (or $urls.ticket $urls.audit $urls.metrics) }}
{{- fail "database.existingSecret and database.urls are both set: set the URLs in the existing Secret and leave database.urls empty, or unset database.existingSecret" }}
{{- end }}
{{- if and (or $urls.ticket $urls.audit $urls.metrics) (not (and $urls.ticket $urls.audit $urls.metrics)) }}
{{- fail "database.urls sets only some of ticket, audit and metrics: each service needs its own database, so set all three URLs" }}
{{- end }}
{{- $keys := .Values.auth.verificationKeys }}
{{- if and $keys.existingSecret $keys.publicKeys }}
{{- fail "auth.verificationKeys.existingSecret and auth.verificationKeys.publicKeys are both set: put the keys in the existing Secret, or unset existingSecret" }}
{{- end }}
{{- $signing := .Values.auth.serviceSigningKeys }}
{{- range $signer := splitList " " (include "docket.signers" .) }}
{{- $key := index $signing $signer }}
{{- if and $key.existingSecret $key.privateKey }}
{{- fail (printf "auth.serviceSigningKeys.%s.existingSecret and auth.serviceSigningKeys.%s.privateKey are both set: put the key in the existing Secret, or unset existingSecret" $signer $signer) }}
{{- end }}
{{- end }}
{{- if and $keys.publicKeys (not (hasKey $keys.publicKeys $signing.ticket.keyId)) }}
{{- fail (printf "auth.verificationKeys.publicKeys has no key %q (auth.serviceSigningKeys.ticket.keyId): add the ticket service's public key under that key id, or the audit and metrics services reject every event the ticket service relays" $signing.ticket.keyId) }}
{{- end }}
{{- if and $keys.publicKeys (not (hasKey $keys.publicKeys $signing.metrics.keyId)) }}
{{- fail (printf "auth.verificationKeys.publicKeys has no key %q (auth.serviceSigningKeys.metrics.keyId): add the metrics service's public key under that key id, or the audit service rejects the records of the calls the metrics service denied" $signing.metrics.keyId) }}
{{- end }}
{{- if eq $signing.ticket.keyId $signing.metrics.keyId }}
{{- fail (printf "auth.serviceSigningKeys.ticket.keyId and auth.serviceSigningKeys.metrics.keyId are both %q, but a key directory holds one public key per key id: give each service its own key pair and key id" $signing.ticket.keyId) }}
{{- end }}
{{- range $component := splitList " " (include "docket.components" .) }}
{{- $values := index $.Values $component }}
{{- if le (int $values.terminationGracePeriodSeconds) (int $values.settings.shutdownGraceSeconds) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be longer than %s.settings.shutdownGraceSeconds (%d), or Kubernetes kills the container while calls still drain: raise the first or lower the second" $component (int $values.terminationGracePeriodSeconds) $component (int $values.settings.shutdownGraceSeconds)) }}
{{- end }}
{{- if and $values.autoscaling.enabled (gt (int $values.autoscaling.minReplicas) (int $values.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%d) is above maxReplicas (%d): lower minReplicas or raise maxReplicas" $component (int $values.autoscaling.minReplicas) (int $values.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and $values.autoscaling.enabled (not $values.autoscaling.targetCPUUtilizationPercentage) (not $values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail (printf "%s.autoscaling is enabled with no target: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage above 0" $component) }}
{{- end }}
{{- $requests := ($values.resources.requests | default dict) }}
{{- if and $values.autoscaling.enabled $values.autoscaling.targetCPUUtilizationPercentage (not $requests.cpu) }}
{{- fail (printf "%s.autoscaling targets CPU utilization, which is measured against the CPU request: set %s.resources.requests.cpu" $component $component) }}
{{- end }}
{{- if and $values.autoscaling.enabled $values.autoscaling.targetMemoryUtilizationPercentage (not $requests.memory) }}
{{- fail (printf "%s.autoscaling targets memory utilization, which is measured against the memory request: set %s.resources.requests.memory" $component $component) }}
{{- end }}
{{- $budget := $values.podDisruptionBudget }}
{{- if and $budget.enabled (ne (toString $budget.minAvailable) "") (ne (toString $budget.maxUnavailable) "") }}
{{- fail (printf "%s.podDisruptionBudget sets both minAvailable and maxUnavailable, which Kubernetes rejects: set one and leave the other empty" $component) }}
{{- end }}
{{- if and $budget.enabled (eq (toString $budget.minAvailable) "") (eq (toString $budget.maxUnavailable) "") }}
{{- fail (printf "%s.podDisruptionBudget sets neither minAvailable nor maxUnavailable: set one of them" $component) }}
{{- end }}
{{- if eq (int $values.ports.grpc) (int $values.ports.metrics) }}
{{- fail (printf "%s.ports.grpc and %s.ports.metrics are both %d: give the Prometheus port another number" $component $component (int $values.ports.grpc)) }}
{{- end }}
{{- end }}
{{- if and .Values.ticket.ingress.enabled (not .Values.ticket.ingress.hosts) }}
{{- fail "ticket.ingress is enabled with no hosts: add at least one entry to ticket.ingress.hosts" }}
{{- end }}
{{- end }}
