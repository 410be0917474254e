{{- define "custos.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "custos.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every resource; part-of=custos keeps Custos' own pods out of the webhook's objectSelector. */}}
{{- define "custos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "custos.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: custos
{{- end }}

{{- define "custos.selectorLabels" -}}
app.kubernetes.io/name: {{ include "custos.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "custos.operatorName" -}}{{ include "custos.fullname" . }}-operator{{- end }}
{{- define "custos.webhookServiceName" -}}{{ include "custos.fullname" . }}-webhook{{- end }}
{{- define "custos.webhookConfigName" -}}{{ include "custos.fullname" . }}-sidecar-injector{{- end }}
{{- define "custos.webhookCertSecret" -}}{{ include "custos.fullname" . }}-webhook-tls{{- end }}
{{- define "custos.webhookCaSecret" -}}{{ include "custos.fullname" . }}-webhook-ca{{- end }}
{{- define "custos.reviewSigningKeySecret" -}}{{ include "custos.fullname" . }}-review-signing-key{{- end }}
{{- define "custos.reviewerRoleName" -}}{{ include "custos.fullname" . }}-reviewer{{- end }}
{{- define "custos.leaseName" -}}{{ include "custos.fullname" . }}-operator-leader{{- end }}
{{- define "custos.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end }}
{{- define "custos.initImage" -}}{{ .Values.initImage.repository }}:{{ .Values.initImage.tag | default .Chart.AppVersion }}{{- end }}
