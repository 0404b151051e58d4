{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "registry-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: the release name, followed by the chart name unless the
release name already contains it. Truncated to 63 characters.
*/}}
{{- define "registry-operator.fullname" -}}
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

{{- define "registry-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "registry-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "registry-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "registry-operator.labels" -}}
helm.sh/chart: {{ include "registry-operator.chart" . }}
{{ include "registry-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "registry-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "registry-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
OMNINODE_DEPLOYMENT_ID: the deploymentId value, or the release name when it is empty.
*/}}
{{- define "registry-operator.deploymentId" -}}
{{- default .Release.Name .Values.deploymentId }}
{{- end }}

{{- define "registry-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Directory of the mounted API token Secret key.
*/}}
{{- define "registry-operator.apiTokenDir" -}}
/var/run/secrets/registry-operator/api-token
{{- end }}
