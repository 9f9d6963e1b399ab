{{/* The chart's name, or nameOverride. */}}
{{- define "nereid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: fullnameOverride, or <release>-<name>, within the 63 characters of a DNS label. */}}
{{- define "nereid.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "nereid.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "nereid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nereid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server's pods only: the chart's Redis shares the release's labels with another component. */}}
{{- define "nereid.serverSelectorLabels" -}}
{{ include "nereid.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "nereid.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "nereid.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Redis the cache uses: cache.redis.host, else the chart's own (redis.deploy). */}}
{{- define "nereid.redisHost" -}}
{{- if .Values.cache.redis.host }}
{{- .Values.cache.redis.host }}
{{- else if .Values.redis.deploy }}
{{- include "nereid.fullname" . }}-redis
{{- else }}
{{- required "cache.type redis needs cache.redis.host, or redis.deploy true" .Values.cache.redis.host }}
{{- end }}
{{- end }}

{{/* --cache-config: Triton's syntax, plus Nereid's redis store; the password comes from NEREID_REDIS_PASSWORD. */}}
{{- define "nereid.cacheConfig" -}}
{{- if eq .Values.cache.type "local" }}
{{- printf "local,size=%d" (.Values.cache.localSizeBytes | int64) }}
{{- else if eq .Values.cache.type "redis" }}
{{- printf "redis,host=%s,port=%d" (include "nereid.redisHost" .) (.Values.cache.redis.port | int64) }}
{{- if .Values.cache.redis.prefix }},prefix={{ .Values.cache.redis.prefix }}{{ end }}
{{- else }}
{{- required (printf "cache.type must be none, local or redis, not %s" .Values.cache.type) nil }}
{{- end }}
{{- end }}

{{/* The probes' scheme: HTTPS whenever the server serves TLS. */}}
{{- define "nereid.probeScheme" -}}
{{- if .Values.tls.existingSecret }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}
