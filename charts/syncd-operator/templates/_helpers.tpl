{{/*
Names, labels and images shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "syncd-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name when it already contains the chart
name, else "<release>-<chart>". At most 63 characters (a DNS label).
*/}}
{{- define "syncd-operator.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "syncd-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the operator's pods; never change them (Deployment selectors are immutable). */}}
{{- define "syncd-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "syncd-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Every object's labels. */}}
{{- define "syncd-operator.labels" -}}
helm.sh/chart: {{ include "syncd-operator.chart" . }}
{{ include "syncd-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: syncd
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "syncd-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "syncd-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: the digest wins; an empty tag is the appVersion. */}}
{{- define "syncd-operator.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The operator image. */}}
{{- define "syncd-operator.image" -}}
{{- include "syncd-operator.imageRef" (list .Values.image .) }}
{{- end }}

{{/* The default syncd image of SyncClusters (--default-image). */}}
{{- define "syncd-operator.syncdImage" -}}
{{- include "syncd-operator.imageRef" (list .Values.syncdImage .) }}
{{- end }}

{{/*
The leader-election Lease. Fixed in the operator (crates/syncd-operator/src/election.rs, LEASE_NAME); the Role
grants get and patch on this name only.
*/}}
{{- define "syncd-operator.leaseName" -}}
syncd-operator-leader
{{- end }}
