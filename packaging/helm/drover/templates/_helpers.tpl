{{/* The chart's name, or nameOverride. */}}
{{- define "drover.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or the release alone when it already holds the chart's name. */}}
{{- define "drover.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "drover.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drover.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "drover.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "drover.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "drover.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "drover.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest. Takes (dict "image" .Values.image "default" tag). */}}
{{- define "drover.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .default .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The drover configuration file, drover.yaml: its sections in the order drover runs them. */}}
{{- define "drover.config" -}}
{{- $conf := include "drover.configData" . | fromYaml -}}
{{- if hasKey $conf "Error" }}{{ fail (printf "the rendered configuration is not YAML: %s" $conf.Error) }}{{ end -}}
{{- range $section := list "agent" "inputs" "filters" "outputs" -}}
{{- if hasKey $conf $section }}
{{ dict $section (get $conf $section) | toYaml }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The configuration as a map, built from the values and rendered with toYaml
so that no value can break the YAML. Secrets never appear in it: they reach
drover as environment variables (${NAME}, substituted by drover at load),
set from secretKeyRef in the DaemonSet.
*/}}
{{- define "drover.configData" -}}
{{- $c := .Values.config -}}
{{- $agent := dict "data_dir" "/var/lib/drover" "node_name" "${NODE_NAME}" "log_level" $c.logLevel "grace_period" $c.gracePeriod "http" (dict "listen" (printf "0.0.0.0:%d" (int .Values.http.port))) -}}
{{- $inputs := list -}}
{{- $tail := dict "name" "pods" "type" "tail" "paths" $c.tail.paths "read_from" $c.tail.readFrom -}}
{{- with $c.tail.exclude }}{{ $_ := set $tail "exclude" . }}{{ end -}}
{{- $inputs = append $inputs $tail -}}
{{- $metricInputs := list -}}
{{- if $c.kubelet.enabled -}}
{{- $inputs = append $inputs (dict "name" "kubelet" "type" "kubelet" "scrape_interval" $c.kubelet.scrapeInterval "stats_summary" $c.kubelet.statsSummary "insecure_skip_verify" $c.kubelet.insecureSkipVerify) -}}
{{- $metricInputs = append $metricInputs "kubelet" -}}
{{- end -}}
{{- if $c.scrape.scrapeConfigs -}}
{{- $inputs = append $inputs (dict "name" "metrics" "type" "prometheus_scrape" "scrape_interval" $c.scrape.scrapeInterval "scrape_configs" $c.scrape.scrapeConfigs) -}}
{{- $metricInputs = append $metricInputs "metrics" -}}
{{- end -}}
{{- range $c.extraInputs }}{{ $inputs = append $inputs . }}{{ end -}}

{{- $filters := list -}}
{{- if $c.kubernetes.enabled -}}
{{- $k := dict "name" "metadata" "type" "kubernetes" "match" "pods" "source" $c.kubernetes.source "labels" $c.kubernetes.labels -}}
{{- if eq $c.kubernetes.source "kubelet" -}}
{{- /* the node's address from the downward API: no hostNetwork needed */ -}}
{{- $_ := set $k "kubelet" (dict "url" "https://${NODE_IP}:10250" "insecure_skip_verify" $c.kubernetes.kubeletInsecureSkipVerify) -}}
{{- else -}}
{{- $_ := set $k "namespace_labels" $c.kubernetes.namespaceLabels -}}
{{- end -}}
{{- with $c.kubernetes.annotations }}{{ $_ := set $k "annotations" . }}{{ end -}}
{{- $filters = append $filters $k -}}
{{- end -}}
{{- range $c.filters }}{{ $filters = append $filters (merge (deepCopy .) (dict "match" "pods")) }}{{ end -}}
{{- $nf := $c.namespaceFilters -}}
{{- if $nf.enabled -}}
{{- $filters = append $filters (dict "name" "namespace-rules" "type" "namespaces" "match" "pods" "configmap" $nf.configMapName "key" $nf.key "allowed" $nf.allowed "max_filters" $nf.maxFilters "max_rules_bytes" $nf.maxRulesBytes "records_per_second" $nf.recordsPerSecond "bytes_per_second" $nf.bytesPerSecond "cpu_budget" $nf.cpuBudget "events" $nf.events) -}}
{{- end -}}
{{- range $c.extraFilters }}{{ $filters = append $filters . }}{{ end -}}

{{- $outputs := list -}}
{{- if $c.loki.enabled -}}
{{- $l := dict "name" "loki" "type" "loki" "match" "pods" "url" (required "config.loki.url is required when config.loki.enabled" $c.loki.url) -}}
{{- with $c.loki.tenant }}{{ $_ := set $l "tenant" . }}{{ end -}}
{{- with $c.loki.labels }}{{ $_ := set $l "labels" . }}{{ end -}}
{{- $static := $c.loki.staticLabels -}}
{{- with $c.clusterName }}{{ $static = prepend $static (printf "cluster=%s" .) }}{{ end -}}
{{- with $static }}{{ $_ := set $l "static_labels" . }}{{ end -}}
{{- include "drover.outputAuth" (dict "out" $l "auth" $c.loki "prefix" "LOKI") -}}
{{- $outputs = append $outputs $l -}}
{{- end -}}
{{- if $nf.enabled -}}
{{- range $nf.offers -}}
{{- $outputs = append $outputs (merge (dict "match" "none" "offer_to_namespaces" true) (omit . "match" "offer_to_namespaces")) -}}
{{- end -}}
{{- end -}}
{{- $rw := $c.remoteWrite -}}
{{- if $rw.enabled -}}
{{- $url := required "config.remoteWrite.url is required when config.remoteWrite.enabled" $rw.url -}}
{{- $match := $rw.match | default $metricInputs -}}
{{- if not $match -}}
{{- fail "config.remoteWrite.enabled: no metrics to send; enable config.kubelet, give config.scrape.scrapeConfigs, or name inputs in config.remoteWrite.match" -}}
{{- end -}}
{{- $r := dict "name" "remote-write" "type" "remote_write" "match" $match "url" $url "protobuf_message" $rw.protobufMessage "spill_max_bytes" $rw.spillMaxBytes -}}
{{- $ext := deepCopy $rw.externalLabels -}}
{{- with $c.clusterName }}{{ $_ := set $ext "cluster" . }}{{ end -}}
{{- with $ext }}{{ $_ := set $r "external_labels" . }}{{ end -}}
{{- if $rw.sigv4.enabled -}}
{{- $s := dict "region" (required "config.remoteWrite.sigv4.region is required with sigv4" $rw.sigv4.region) -}}
{{- with $rw.sigv4.roleArn }}{{ $_ := set $s "role_arn" . }}{{ end -}}
{{- with $rw.sigv4.externalId }}{{ $_ := set $s "external_id" . }}{{ end -}}
{{- $_ := set $r "sigv4" $s -}}
{{- end -}}
{{- include "drover.outputAuth" (dict "out" $r "auth" $rw "prefix" "REMOTE_WRITE") -}}
{{- $outputs = append $outputs $r -}}
{{- end -}}
{{- range $c.extraOutputs }}{{ $outputs = append $outputs . }}{{ end -}}
{{- if not $outputs -}}
{{- fail "no output: enable config.loki or config.remoteWrite, or give config.extraOutputs" -}}
{{- end -}}
{{- $conf := dict "agent" $agent "inputs" $inputs "outputs" $outputs -}}
{{- with $filters }}{{ $_ := set $conf "filters" . }}{{ end -}}
{{- toYaml $conf -}}
{{- end -}}

{{/*
Basic auth or a bearer token from a Secret, and the CA file, set on the
output map `out` from the values `auth`; the secret values are ${PREFIX_...}
environment variables (see drover.authEnv).
*/}}
{{- define "drover.outputAuth" -}}
{{- $n := 0 -}}
{{- if .auth.basicAuth.secretName -}}
{{- $n = add1 $n -}}
{{- $_ := set .out "basic_auth" (dict "username" (printf "${%s_USERNAME}" .prefix) "password" (printf "${%s_PASSWORD}" .prefix)) -}}
{{- end -}}
{{- if .auth.bearerToken.secretName -}}
{{- $n = add1 $n -}}
{{- $_ := set .out "bearer_token" (printf "${%s_BEARER_TOKEN}" .prefix) -}}
{{- end -}}
{{- if and .auth.sigv4 .auth.sigv4.enabled -}}{{ $n = add1 $n }}{{- end -}}
{{- if gt $n 1 -}}
{{- fail (printf "%s output: set only one of basicAuth.secretName, bearerToken.secretName and sigv4" (lower .prefix)) -}}
{{- end -}}
{{- with .auth.caFile }}{{ $_ := set $.out "tls" (dict "ca_file" .) }}{{ end -}}
{{- end -}}

{{/* The environment variables drover.outputAuth refers to. */}}
{{- define "drover.authEnv" -}}
{{- if .auth.basicAuth.secretName }}
- name: {{ .prefix }}_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .auth.basicAuth.secretName }}
      key: {{ .auth.basicAuth.usernameKey }}
- name: {{ .prefix }}_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .auth.basicAuth.secretName }}
      key: {{ .auth.basicAuth.passwordKey }}
{{- end }}
{{- if .auth.bearerToken.secretName }}
- name: {{ .prefix }}_BEARER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .auth.bearerToken.secretName }}
      key: {{ .auth.bearerToken.key }}
{{- end }}
{{- end -}}
