{{/* The chart's name. */}}
{{- define "runbookbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: objects are named after it. */}}
{{- define "runbookbot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "runbookbot.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "runbookbot.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "runbookbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runbookbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "runbookbot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "runbookbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "runbookbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "runbookbot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when executions are kept in Redis (the chart's or yours). */}}
{{- define "runbookbot.redis" -}}
{{- if or .Values.redis.enabled .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Replicas: replicaCount, else 2 with Redis and 1 with the embedded store. */}}
{{- define "runbookbot.replicas" -}}
{{- $redis := include "runbookbot.redis" . -}}
{{- $n := .Values.replicaCount -}}
{{- if kindIs "invalid" $n -}}{{- $n = ternary 2 1 (eq $redis "true") -}}{{- end -}}
{{- if and (ne $redis "true") (gt (int $n) 1) -}}
{{- fail "replicaCount > 1 needs Redis (redis.enabled, redis.url or redis.existingSecret): the embedded store belongs to one process" -}}
{{- end -}}
{{- int $n -}}
{{- end -}}

{{/* The Secret with the Slack tokens. */}}
{{- define "runbookbot.slackSecret" -}}
{{- default (printf "%s-slack" (include "runbookbot.fullname" .)) .Values.slack.existingSecret -}}
{{- end -}}

{{/* The Secret and key holding the Redis URL. */}}
{{- define "runbookbot.storeSecret" -}}
{{- if .Values.redis.existingSecret -}}{{ .Values.redis.existingSecret }}{{- else -}}{{ include "runbookbot.fullname" . }}-store{{- end -}}
{{- end -}}
{{- define "runbookbot.storeSecretKey" -}}
{{- if .Values.redis.existingSecret -}}{{ .Values.redis.existingSecretKey }}{{- else -}}RUNBOOKBOT_STORE{{- end -}}
{{- end -}}

{{/* The ConfigMap with the runbooks folder. */}}
{{- define "runbookbot.runbooksConfigMap" -}}
{{- default (printf "%s-runbooks" (include "runbookbot.fullname" .)) .Values.runbooks.existingConfigMap -}}
{{- end -}}
