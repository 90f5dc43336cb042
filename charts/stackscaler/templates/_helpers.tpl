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

{{- define "stackscaler.peeringName" -}}
{{- default (include "stackscaler.fullname" .) .Values.peering.name }}
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

{{/* The operator runs as a StatefulSet with peering (ordinal priorities), else a Deployment. */}}
{{- define "stackscaler.workloadKind" -}}
{{- if .Values.peering.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/* Rules: read the four kinds (kopf lists and watches them). */}}
{{- define "stackscaler.rules.reader" -}}
- apiGroups: ["stackscaler.dev"]
  resources: ["webtiers", "workerpools", "readreplicapools", "cachepools"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* Rules: write their status (never the spec) and post Events. */}}
{{- define "stackscaler.rules.writer" -}}
- apiGroups: ["stackscaler.dev"]
  resources: ["webtiers/status", "workerpools/status", "readreplicapools/status", "cachepools/status"]
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

{{/* Rules: kopf's peering objects (cluster-scoped when watching every namespace). */}}
{{- define "stackscaler.rules.peering" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ if eq (include "stackscaler.scope" .) "cluster" }}"clusterkopfpeerings"{{ else }}"kopfpeerings"{{ end }}]
  verbs: ["get", "list", "watch", "patch"]
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

{{/* Checks that need more than the values schema. */}}
{{- define "stackscaler.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) }}
{{- fail (printf "replicaCount=%d needs peering.enabled=true: standalone operators do not coordinate and would all scale the same targets" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.peering.enabled .Values.peering.createPeeringObjects (eq (include "stackscaler.scope" .) "patterns") }}
{{- fail "peering with namespace patterns in watchNamespaces: the chart cannot create a KopfPeering in namespaces it does not know; set peering.createPeeringObjects=false and create one in each matching namespace" }}
{{- end }}
{{- end }}
