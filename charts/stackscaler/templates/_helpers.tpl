{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "stackscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "stackscaler.fullname" -}}
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

{{- define "stackscaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stackscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stackscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stackscaler.labels" -}}
helm.sh/chart: {{ include "stackscaler.chart" . }}
{{ include "stackscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stackscaler
{{- end }}

{{/* The ServiceAccount the operator runs as (created or existing). */}}
{{- define "stackscaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stackscaler.fullname" .) .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- fail "serviceAccount.create=false needs serviceAccount.name: the existing ServiceAccount to run as" }}
{{- end }}
{{- end }}

{{- define "stackscaler.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The prefix of the Lease names (`--lease-group`): one group per release, so two
releases in one namespace never share (or split) each other's shards. */}}
{{- define "stackscaler.leaseGroup" -}}
{{- include "stackscaler.fullname" . }}
{{- end }}

{{/*
How the operator is scoped, from watchNamespaces:
  cluster     no namespaces: every namespace, cluster-wide grants
  namespaces  exact names: a Role and RoleBinding in each
  patterns    any kopf pattern (*, ?, !, a comma): cluster-wide grants, plus
              list/watch on namespaces so kopf can match them
*/}}
{{- define "stackscaler.scope" -}}
{{- if not .Values.watchNamespaces }}cluster
{{- else }}
{{- $patterns := false }}
{{- range .Values.watchNamespaces }}
{{- if regexMatch "[*?!,]" . }}{{ $patterns = true }}{{ end }}
{{- end }}
{{- if $patterns }}patterns{{ else }}namespaces{{ end }}
{{- end }}
{{- end }}

{{/* Rules: read the five kinds (kopf lists and watches them). */}}
{{- define "stackscaler.rules.reader" -}}
- apiGroups: ["stackscaler.dev"]
  resources: ["webtiers", "workerpools", "readreplicapools", "cachepools", "tablecapacities"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* Rules: write their status (never the spec) and post Events. */}}
{{- define "stackscaler.rules.writer" -}}
- apiGroups: ["stackscaler.dev"]
  resources: ["webtiers/status", "workerpools/status", "readreplicapools/status", "cachepools/status", "tablecapacities/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Rules: read Deployments and StatefulSets (spec.replicas and the ready replicas in
their status), scale them through /scale only. */}}
{{- define "stackscaler.rules.workloads" -}}
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get"]
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["patch"]
{{- end }}

{{/*
Rules: the replicas' Leases (stackscaler run --shards), in the release namespace
only: read them (get, list, and watch, to see a renewal or a release as it
happens), create the member and shard leases, renew and take them (update, with
their resourceVersion), delete the member lease on shutdown. No patch.
*/}}
{{- define "stackscaler.rules.leases" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
{{- end }}

{{/*
Rules: kopf's cluster observation. kopf lists and watches CRDs so its watches
start when the CRDs appear (also after the operator); without it kopf retries
the forbidden listing about a minute at start-up, logging errors, and never
notices CRDs created later.
*/}}
{{- define "stackscaler.rules.crds" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
Rules: kopf lists and watches namespaces whenever it is given namespaces, to
match patterns and to notice namespaces coming and going; without it kopf
retries the forbidden listing about a minute, serving no namespace meanwhile,
then treats the names as exact (patterns never match).
*/}}
{{- define "stackscaler.rules.namespaces" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
