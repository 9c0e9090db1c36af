{{/*
The services this chart runs, in a fixed order.
*/}}
{{- define "switchboard.serviceNames" -}}
ingestion routing presence crm kpi
{{- end -}}

{{/*
Base name of every resource: the release name unless overridden. Truncated to
50 characters so "<fullname>-<service>" (longest suffix "-ingestion") stays a
63-character DNS label.
*/}}
{{- define "switchboard.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Common labels. Call with the root context.
*/}}
{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
app.kubernetes.io/name: switchboard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- end -}}

{{/*
Selector labels of one service. Call with (dict "root" $ "name" $name).
*/}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: switchboard
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/*
All labels of one service's resources. Call with (dict "root" $ "name" $name).
*/}}
{{- define "switchboard.componentLabels" -}}
{{ include "switchboard.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/*
Name of one service's Deployment, Service, PDB and HPA.
*/}}
{{- define "switchboard.componentName" -}}
{{- printf "%s-%s" (include "switchboard.fullname" .root) .name -}}
{{- end -}}

{{/*
The fully qualified gRPC service name a service's readiness probe asks for.
*/}}
{{- define "switchboard.grpcServiceName" -}}
{{- $services := dict "ingestion" "switchboard.ingestion.v1.IngestionService" "routing" "switchboard.routing.v1.RoutingService" "presence" "switchboard.presence.v1.PresenceService" "crm" "switchboard.crm.v1.CrmService" "kpi" "switchboard.kpi.v1.KpiService" -}}
{{- index $services . -}}
{{- end -}}

{{/*
The gRPC APIs each service serves, by fully qualified name (what a public
Ingress or GRPCRoute routes on): the *Server each services/<name>/src/lib.rs
mounts. Health and reflection are left out: every pod answers them for its
own services only. tests/python/test_charts.py checks this against the code.
*/}}
{{- define "switchboard.grpcApis" -}}
ingestion:
  - switchboard.ingestion.v1.IngestionService
  - switchboard.ingestion.v1.ChannelService
  - switchboard.ingestion.v1.CallService
  - switchboard.ingestion.v1.ConversationService
routing:
  - switchboard.routing.v1.RoutingService
presence:
  - switchboard.presence.v1.PresenceService
  - switchboard.access.v1.AccessService
crm:
  - switchboard.crm.v1.CrmService
kpi:
  - switchboard.kpi.v1.KpiService
{{- end -}}

{{/*
"true" when the chart's Ingress or GRPCRoute brings outside callers to the
gRPC ports, else empty.
*/}}
{{- define "switchboard.grpcExposed" -}}
{{- if or .Values.ingress.enabled .Values.gatewayApi.grpcRoute.enabled -}}
true
{{- end -}}
{{- end -}}

{{/*
"true" when the chart's Ingress or HTTPRoute brings providers and web chat
visitors to ingestion's HTTP port, else empty.
*/}}
{{- define "switchboard.httpExposed" -}}
{{- if and .Values.services.ingestion.enabled (or (and .Values.ingress.enabled .Values.ingress.http.enabled) .Values.gatewayApi.httpRoute.enabled) -}}
true
{{- end -}}
{{- end -}}

{{/*
"true" when one of the ingress.tls entries covers a host, else empty. An
entry without hosts covers every ingress.hosts; "*.example.com" covers one
label below example.com, as a certificate's wildcard does. Call with
(dict "host" $host "ingress" .Values.ingress).
*/}}
{{- define "switchboard.tlsCovers" -}}
{{- $host := .host -}}
{{- $wildcard := regexReplaceAll "^[^.]+" $host "*" -}}
{{- $covered := false -}}
{{- range .ingress.tls -}}
{{- $hosts := .hosts | default $.ingress.hosts -}}
{{- if or (has $host $hosts) (has $wildcard $hosts) -}}
{{- $covered = true -}}
{{- end -}}
{{- end -}}
{{- if $covered -}}
true
{{- end -}}
{{- end -}}

{{/*
"true" when two Gateway API hostnames can match one request: equal, or one
a wildcard ("*.example.com", a suffix match) the other falls under. Call
with (dict "a" $a "b" $b).
*/}}
{{- define "switchboard.hostnamesIntersect" -}}
{{- if or (eq .a .b) (and (hasPrefix "*." .a) (hasSuffix (trimPrefix "*" .a) .b)) (and (hasPrefix "*." .b) (hasSuffix (trimPrefix "*" .b) .a)) -}}
true
{{- end -}}
{{- end -}}

{{/*
ingestion.public_base_url: config.ingestion.publicBaseUrl, else, while the
chart's Ingress serves the webhooks, https:// and its first host that TLS
covers (and is no wildcard), else, while the HTTPRoute does and attaches to
named listeners only (TLS ends there), https:// and its first hostname.
Channels show their webhook URLs on it and Twilio signs it, so it must be
the address the chart actually serves them at.
*/}}
{{- define "switchboard.publicBaseUrl" -}}
{{- $url := .Values.config.ingestion.publicBaseUrl -}}
{{- if and (not $url) .Values.services.ingestion.enabled -}}
{{- $ingress := .Values.ingress -}}
{{- if and $ingress.enabled $ingress.http.enabled -}}
{{- range $ingress.hosts -}}
{{- if and (not $url) (not (hasPrefix "*" .)) (include "switchboard.tlsCovers" (dict "host" . "ingress" $ingress)) -}}
{{- $url = printf "https://%s" . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $route := .Values.gatewayApi.httpRoute -}}
{{- if and (not $url) $route.enabled (not .Values.gatewayApi.allowPlaintext) -}}
{{- range $route.hostnames -}}
{{- if and (not $url) (not (hasPrefix "*" .)) -}}
{{- $url = printf "https://%s" . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "switchboard.configMapName" -}}
{{- printf "%s-config" (include "switchboard.fullname" .) -}}
{{- end -}}

{{- define "switchboard.authSecretName" -}}
{{- default (printf "%s-auth" (include "switchboard.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "switchboard.serviceKeySecretName" -}}
{{- default (printf "%s-service-key" (include "switchboard.fullname" .)) .Values.auth.serviceKey.existingSecret -}}
{{- end -}}

{{- define "switchboard.serviceKeySecretKey" -}}
{{- if .Values.auth.serviceKey.existingSecret -}}
{{- .Values.auth.serviceKey.existingSecretKey -}}
{{- else -}}
key
{{- end -}}
{{- end -}}

{{- define "switchboard.postgresSecretName" -}}
{{- default (printf "%s-postgres" (include "switchboard.fullname" .)) .Values.postgres.existingSecret -}}
{{- end -}}

{{- define "switchboard.postgresSecretKey" -}}
{{- if .Values.postgres.existingSecret -}}
{{- .Values.postgres.existingSecretKey -}}
{{- else -}}
url
{{- end -}}
{{- end -}}

{{/*
The [auth] section of switchboard.toml, validated here so a typo fails the
install instead of crash-looping the pods.
*/}}
{{- define "switchboard.authToml" -}}
{{- $tenants := .Values.auth.tenants | default list -}}
{{- range $tenants }}
{{- if not (regexMatch "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$" .) }}
{{- fail (printf "auth.tenants: %q must be 1-63 of [a-z0-9-], starting with a letter and not ending with '-'" .) }}
{{- end }}
{{- end -}}
[auth]
tenants = [{{ range $i, $t := $tenants }}{{ if $i }}, {{ end }}{{ $t | quote }}{{ end }}]
{{- range $i, $key := .Values.auth.apiKeys | default list }}
{{- $where := printf "auth.apiKeys[%d]" $i }}
{{- if not $key.name }}{{ fail (printf "%s.name is required" $where) }}{{ end }}
{{- if not (regexMatch "^[0-9a-f]{64}$" (toString $key.sha256)) }}
{{- fail (printf "%s.sha256 must be 64 lowercase hex digits (printf %%s \"$KEY\" | sha256sum)" $where) }}
{{- end }}
{{- if not (has $key.role (list "operator_admin" "tenant_admin" "tenant_reader" "integration" "supervisor" "agent")) }}
{{- fail (printf "%s.role must be operator_admin, tenant_admin, tenant_reader, integration, supervisor or agent" $where) }}
{{- end }}
{{- if and (has $key.role (list "tenant_admin" "tenant_reader" "integration" "supervisor")) (not (has $key.tenant $tenants)) }}
{{- fail (printf "%s.tenant must name one of auth.tenants for role %s" $where $key.role) }}
{{- end }}
{{- if and (eq $key.role "agent") (not (regexMatch "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$" (toString (default "" $key.agent)))) }}
{{- fail (printf "%s.agent (an agent id: 1-63 of [a-z0-9-], starting with a letter) is required for role agent" $where) }}
{{- end }}

[[auth.api_keys]]
name = {{ $key.name | quote }}
sha256 = {{ $key.sha256 | quote }}
role = {{ $key.role | quote }}
{{- with $key.tenant }}
tenant = {{ . | quote }}
{{- end }}
{{- with $key.agent }}
agent = {{ . | quote }}
{{- end }}
{{- end }}
{{ end -}}

{{/*
switchboard.toml without [auth] (which lives in the auth Secret) and without
postgres.url (which comes from the postgres Secret through the environment).
*/}}
{{- define "switchboard.configToml" -}}
{{- $c := .Values.config -}}
{{- $fullname := include "switchboard.fullname" . -}}
{{- if eq (int64 .Values.metricsPort) (int64 .Values.port) }}
{{- fail (printf "metricsPort (%d) must differ from port (%d): gRPC and HTTP each need their own" (int64 .Values.metricsPort) (int64 .Values.port)) }}
{{- end -}}
# Rendered by the Switchboard Helm chart. The [auth] section is appended from
# the Secret {{ include "switchboard.authSecretName" . }} at pod start;
# postgres.url comes from SWITCHBOARD_POSTGRES__URL.

[telemetry]
log_format = {{ $c.telemetry.logFormat | quote }}
log_filter = {{ $c.telemetry.logFilter | quote }}
{{- with $c.telemetry.otlpEndpoint }}
otlp_endpoint = {{ . | quote }}
{{- end }}

[grpc]
max_message_bytes = {{ int64 $c.grpc.maxMessageBytes }}
request_timeout_ms = {{ int64 $c.grpc.requestTimeoutMs }}
concurrency_limit = {{ int64 $c.grpc.concurrencyLimit }}

[kafka]
brokers = {{ $c.kafka.brokers | quote }}
partitions = {{ int64 $c.kafka.partitions }}
{{- if $c.kafka.replicationFactor }}
replication_factor = {{ int64 $c.kafka.replicationFactor }}
{{- end }}
group_prefix = {{ $c.kafka.groupPrefix | quote }}
topic_prefix = {{ $c.kafka.topicPrefix | quote }}

[redis]
url = {{ $c.redis.url | quote }}
pool = {{ $c.redis.pool | quote }}

[postgres]
pool_size = {{ int64 $c.postgres.poolSize }}

[routing]
offer_sweep_interval_ms = {{ int64 $c.routing.offerSweepIntervalMs }}

[presence]
session_grace_ms = {{ int64 $c.presence.sessionGraceMs }}
missed_offers_threshold = {{ int64 $c.presence.missedOffersThreshold }}

[ingestion]
public_base_url = {{ include "switchboard.publicBaseUrl" . | quote }}
{{- range $name := splitList " " (include "switchboard.serviceNames" .) }}

[services.{{ $name }}]
listen = {{ printf "0.0.0.0:%d" (int64 $.Values.port) | quote }}
url = {{ printf "http://%s-%s:%d" $fullname $name (int64 $.Values.port) | quote }}
http_listen = {{ printf "0.0.0.0:%d" (int64 $.Values.metricsPort) | quote }}
{{- end }}
{{ end -}}
