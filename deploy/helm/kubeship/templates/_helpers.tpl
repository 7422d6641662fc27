{{/* The chart's name, cut to a DNS label. */}}
{{- define "kubeship.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name when it holds the chart's name ("kubeship" installs
objects named kubeship, as deploy/kustomize does), else <release>-kubeship. */}}
{{- define "kubeship.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kubeship.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubeship.labels" -}}
{{ include "kubeship.selectorLabels" . }}
app.kubernetes.io/part-of: kubeship
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "kubeship.serviceAccountName" -}}
{{- default (include "kubeship.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "kubeship.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A DNS-1123 name for an object made from a file: <fullname>-<file name without
extension>, lower case, other characters as "-". */}}
{{- define "kubeship.fileObjectName" -}}
{{- $stem := regexReplaceAll "\\.[^.]*$" (base .path) "" | lower }}
{{- printf "%s-%s" (include "kubeship.fullname" .root) (regexReplaceAll "[^a-z0-9-]+" $stem "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The agent's config file (every key: examples/kubeship.yaml in the repository):
what the values set, then .Values.config merged over it. */}}
{{- define "kubeship.config" -}}
{{- $output := dict "group" .Values.output.group "stream" .Values.output.stream }}
{{- with .Values.output.event }}
{{- $_ := set $output "event" . }}
{{- end }}
{{- if eq .Values.output.sink "cloudwatch" }}
{{- $_ := set $output "cloudwatch" (deepCopy .Values.output.cloudwatch) }}
{{- else }}
{{- $_ := set $output "local" (deepCopy .Values.output.local) }}
{{- end }}
{{- $telemetry := dict "listen_addr" (printf "0.0.0.0:%d" (int .Values.telemetry.port)) "log_format" .Values.telemetry.logFormat "log_level" .Values.telemetry.logLevel }}
{{- $config := dict "cluster" "${CLUSTER_NAME}" "state_dir" "/var/lib/kubeship" "shutdown_timeout_secs" .Values.shutdownTimeoutSecs "output" $output "telemetry" $telemetry }}
{{- with (include "kubeship.metricsConfig" . | fromYaml) }}
{{- $_ := set $config "metrics" . }}
{{- end }}
{{- $config = mergeOverwrite $config (deepCopy .Values.config) }}
{{- toYaml $config }}
{{- end }}

{{/* The agent's `metrics` section from .Values.metrics (nothing when it is off): the
scrape settings, cluster=<CLUSTER_NAME> on every forwarded series (external_labels'
default; clusterLabel false turns it off), and one remote-write
endpoint (SigV4 for AMP), else the local sink. The kustomize overlay amp writes the same. */}}
{{- define "kubeship.metricsConfig" -}}
{{- $m := .Values.metrics }}
{{- if and (hasKey .Values.config "metrics") (not $m.enabled) }}
{{- fail "config.metrics needs metrics.enabled: true (the section turns the metrics pipeline on)" }}
{{- end }}
{{- if $m.enabled }}
{{- $kubelet := dict "enabled" $m.scrape.kubelet.enabled "insecure_skip_verify" $m.scrape.kubelet.insecureSkipVerify }}
{{- $scrape := dict "interval_secs" (int $m.scrape.intervalSecs) "pods" (dict "enabled" $m.scrape.pods.enabled) "kubelet" $kubelet "self_metrics" true }}
{{- $metrics := dict "scrape" $scrape }}
{{- if not $m.clusterLabel }}
{{- $_ := set $metrics "external_labels" (dict) }}
{{- end }}
{{- with $m.remoteWrite.url }}
{{- $endpoint := dict "url" . }}
{{- if $m.remoteWrite.sigv4 }}
{{- $region := default $.Values.region $m.remoteWrite.region }}
{{- $_ := set $endpoint "sigv4" (ternary (dict "region" $region) (dict) (ne $region "")) }}
{{- end }}
{{- $_ := set $metrics "remote_write" (list $endpoint) }}
{{- end }}
{{- toYaml $metrics }}
{{- end }}
{{- end }}
