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
The Secret with the services' certificate (tls.crt, tls.key, ca.crt):
tls.secretName, else the one the chart's cert-manager Certificate fills.
*/}}
{{- define "switchboard.tlsSecretName" -}}
{{- if .Values.tls.secretName -}}
{{- .Values.tls.secretName -}}
{{- else if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "switchboard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Where the pods see the services' certificate Secret: a directory (never a
subPath mount, which a renewal would not reach), beside /etc/switchboard
rather than in it because that mount is read-only.
*/}}
{{- define "switchboard.tlsDir" -}}
/etc/switchboard-tls
{{- end -}}

{{/*
The CA Secrets of the backends, by the name of their volume: the Secret, the
key holding the CA, and where it is mounted. Only those configured.
*/}}
{{- define "switchboard.backendCas" -}}
{{- $cas := dict -}}
{{- range $volume, $ref := dict "postgres-ca" .Values.postgres "redis-ca" .Values.redis "kafka-ca" .Values.kafka -}}
{{- if $ref.caSecret -}}
{{- $_ := set $cas $volume (dict "secret" $ref.caSecret "key" $ref.caSecretKey "dir" (printf "/etc/switchboard-ca/%s" (trimSuffix "-ca" $volume))) -}}
{{- end -}}
{{- end -}}
{{- with .Values.telemetry.otlpCaSecret -}}
{{- $_ := set $cas "otlp-ca" (dict "secret" . "key" $.Values.telemetry.otlpCaSecretKey "dir" "/etc/switchboard-ca/otlp") -}}
{{- end -}}
{{- toYaml $cas -}}
{{- end -}}

{{/*
The DNS names of every enabled service's Service, which the one certificate
of tls.secretName must carry: the short name the service URLs use, and the
namespace-qualified forms other clients (Prometheus' serverName) use.
*/}}
{{- define "switchboard.tlsDnsNames" -}}
{{- $names := list -}}
{{- range $name := splitList " " (include "switchboard.serviceNames" .) -}}
{{- if (index $.Values.services $name).enabled -}}
{{- $service := include "switchboard.componentName" (dict "root" $ "name" $name) -}}
{{- $names = concat $names (list $service (printf "%s.%s" $service $.Release.Namespace) (printf "%s.%s.svc" $service $.Release.Namespace) (printf "%s.%s.svc.%s" $service $.Release.Namespace $.Values.tls.clusterDomain)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $names -}}
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
postgres.url (which comes from the postgres Secret through the environment),
nor kafka.sasl_password (SWITCHBOARD_KAFKA__SASL_PASSWORD, from a Secret).
*/}}
{{- define "switchboard.configToml" -}}
{{- $c := .Values.config -}}
{{- $fullname := include "switchboard.fullname" . -}}
{{- $cas := include "switchboard.backendCas" . | fromYaml -}}
{{- $tls := .Values.tls -}}
{{- $scheme := "http" -}}
{{- if $tls.enabled -}}
{{- $scheme = "https" -}}
{{- end -}}
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
{{- with (index $cas "otlp-ca") }}
otlp_ca_file = {{ printf "%s/ca.crt" .dir | quote }}
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
{{- with $c.kafka.interactiveFetchWaitMs }}
interactive_fetch_wait_ms = {{ int64 . }}
{{- end }}
hints = {{ if eq (toString $c.kafka.hints) "false" }}false{{ else }}true{{ end }}
group_prefix = {{ $c.kafka.groupPrefix | quote }}
topic_prefix = {{ $c.kafka.topicPrefix | quote }}
security_protocol = {{ $c.kafka.securityProtocol | quote }}
{{- with $c.kafka.saslMechanism }}
sasl_mechanism = {{ . | quote }}
{{- end }}
{{- with $c.kafka.saslUsername }}
sasl_username = {{ . | quote }}
{{- end }}
{{- with (index $cas "kafka-ca") }}
ssl_ca_location = {{ printf "%s/ca.crt" .dir | quote }}
{{- end }}
{{- with $c.kafka.properties }}

[kafka.properties]
{{- range $key, $value := . }}
{{ $key | quote }} = {{ $value | quote }}
{{- end }}
{{- end }}

[redis]
url = {{ $c.redis.url | quote }}
pool = {{ $c.redis.pool | quote }}
{{- with (index $cas "redis-ca") }}
ca_file = {{ printf "%s/ca.crt" .dir | quote }}
{{- end }}

[postgres]
pool_size = {{ int64 $c.postgres.poolSize }}
{{- with (index $cas "postgres-ca") }}
ca_file = {{ printf "%s/ca.crt" .dir | quote }}
{{- end }}

[routing]
offer_sweep_interval_ms = {{ int64 $c.routing.offerSweepIntervalMs }}
relay_interval_ms = {{ int64 $c.routing.relayIntervalMs }}

[presence]
session_grace_ms = {{ int64 $c.presence.sessionGraceMs }}
missed_offers_threshold = {{ int64 $c.presence.missedOffersThreshold }}

[ingestion]
public_base_url = {{ include "switchboard.publicBaseUrl" . | quote }}
allow_private_destinations = {{ $c.ingestion.allowPrivateDestinations | default false }}
{{- if $tls.enabled }}

# Every server speaks TLS only; the services reach each other over https://
# at the Services' names, which the certificate carries.
[tls]
cert_file = {{ printf "%s/tls.crt" (include "switchboard.tlsDir" .) | quote }}
key_file = {{ printf "%s/tls.key" (include "switchboard.tlsDir" .) | quote }}
ca_file = {{ printf "%s/ca.crt" (include "switchboard.tlsDir" .) | quote }}
client_auth = {{ $tls.clientAuth | quote }}
reload_interval_secs = {{ int64 $tls.reloadIntervalSecs }}
{{- end }}
{{- range $name := splitList " " (include "switchboard.serviceNames" .) }}

[services.{{ $name }}]
listen = {{ printf "0.0.0.0:%d" (int64 $.Values.port) | quote }}
url = {{ printf "%s://%s-%s:%d" $scheme $fullname $name (int64 $.Values.port) | quote }}
http_listen = {{ printf "0.0.0.0:%d" (int64 $.Values.metricsPort) | quote }}
{{- end }}
{{ end -}}
