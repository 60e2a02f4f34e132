{{/* The chart's name, or nameOverride. */}}
{{- define "condense-cluster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else "<release>-<name>" (just the release when it already holds
the name). Cut to 40 characters: "<prefix>-coordinator-headless" must stay a DNS label (63), and a StatefulSet's name
at most 52 (its pods' controller-revision-hash label appends 11).
*/}}
{{- define "condense-cluster.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "condense-cluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource; pass (dict "ctx" $ "component" "coordinator"|"worker"|""). */}}
{{- define "condense-cluster.labels" -}}
helm.sh/chart: {{ include "condense-cluster.chart" .ctx }}
{{ include "condense-cluster.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: condense-cluster
{{- end }}

{{/* Labels that select a component's pods (immutable in a StatefulSet's selector). */}}
{{- define "condense-cluster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "condense-cluster.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Names of the workloads and services. */}}
{{- define "condense-cluster.coordinator" -}}
{{- printf "%s-coordinator" (include "condense-cluster.fullname" .) }}
{{- end }}
{{- define "condense-cluster.coordinatorHeadless" -}}
{{- printf "%s-coordinator-headless" (include "condense-cluster.fullname" .) }}
{{- end }}
{{- define "condense-cluster.worker" -}}
{{- printf "%s-worker" (include "condense-cluster.fullname" .) }}
{{- end }}
{{- define "condense-cluster.workerHeadless" -}}
{{- printf "%s-worker-headless" (include "condense-cluster.fullname" .) }}
{{- end }}

{{/*
The coordinator's stable DNS name (pod 0 of its StatefulSet through its headless service): its Akka --host, and with
the Akka port the --seed of every worker. Akka.Management's Kubernetes discovery is not used: a static seed.
*/}}
{{- define "condense-cluster.coordinatorHost" -}}
{{- printf "%s-0.%s.%s.svc.%s" (include "condense-cluster.coordinator" .) (include "condense-cluster.coordinatorHeadless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* A worker's stable DNS name; $(POD_NAME) is expanded by Kubernetes from the downward-API variable. */}}
{{- define "condense-cluster.workerHost" -}}
{{- printf "$(POD_NAME).%s.%s.svc.%s" (include "condense-cluster.workerHeadless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "condense-cluster.image" -}}
{{- printf "%s:%s%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) .Values.image.tagSuffix }}
{{- end }}

{{/* Workers a job waits for: coordinator.workers, else worker.replicas. */}}
{{- define "condense-cluster.expectedWorkers" -}}
{{- if gt (int .Values.coordinator.workers) 0 }}{{ int .Values.coordinator.workers }}{{ else }}{{ int .Values.worker.replicas }}{{ end }}
{{- end }}

{{- define "condense-cluster.tokenSecret" -}}
{{- default (printf "%s-control-token" (include "condense-cluster.fullname" .)) .Values.controlToken.existingSecret }}
{{- end }}
{{- define "condense-cluster.tokenKey" -}}
{{- if .Values.controlToken.existingSecret }}{{ .Values.controlToken.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "condense-cluster.configMap" -}}
{{- printf "%s-config" (include "condense-cluster.fullname" .) }}
{{- end }}

{{/*
The job configuration rendered into job.json (serve mode), as a dict: job.configuration with DataDir (/data when a
dataset volume is configured) and MicroBatches (the workers a job waits for) filled in when left out. Empty when the
configuration is empty or the coordinator runs in train mode. Fails when BatchSize is smaller than MicroBatches.
*/}}
{{- define "condense-cluster.jobConfiguration" -}}
{{- $configuration := deepCopy (default dict .Values.job.configuration) }}
{{- if and (eq .Values.coordinator.mode "serve") (gt (len $configuration) 0) }}
{{- if and (include "condense-cluster.hasDataset" .) (not (get $configuration "DataDir")) }}
{{- $_ := set $configuration "DataDir" "/data" }}
{{- end }}
{{- if not (get $configuration "MicroBatches") }}
{{- $_ := set $configuration "MicroBatches" (int (include "condense-cluster.expectedWorkers" .)) }}
{{- end }}
{{- $batch := int (default 64 (get $configuration "BatchSize")) }}
{{- $micro := int (get $configuration "MicroBatches") }}
{{- if lt $batch $micro }}
{{- fail (printf "job.configuration: BatchSize %d is smaller than MicroBatches %d (by default one micro-batch per worker): every micro-batch needs a sample; raise job.configuration.BatchSize or set job.configuration.MicroBatches" $batch $micro) }}
{{- end }}
{{- toPrettyJson $configuration }}
{{- end }}
{{- end }}

{{/* "true" when a dataset volume is configured (fails when both kinds are given). */}}
{{- define "condense-cluster.hasDataset" -}}
{{- if and .Values.dataset.hostPath .Values.dataset.existingClaim }}
{{- fail "dataset: give either dataset.hostPath or dataset.existingClaim, not both" }}
{{- end }}
{{- if or .Values.dataset.hostPath .Values.dataset.existingClaim }}true{{ end }}
{{- end }}

{{/* The pod-level security context of every pod. */}}
{{- define "condense-cluster.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The security context of every container. */}}
{{- define "condense-cluster.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: false
capabilities:
  drop:
    - ALL
{{- end }}

{{/* The ConfigMap exists when it holds something: job.json (serve mode) or cluster.conf. */}}
{{- define "condense-cluster.hasConfigMap" -}}
{{- if or (include "condense-cluster.jobConfiguration" .) .Values.clusterConfig }}true{{ end }}
{{- end }}

{{/* The dataset volume (hostPath or claim), when one is configured. */}}
{{- define "condense-cluster.datasetVolume" -}}
{{- if include "condense-cluster.hasDataset" . }}
- name: dataset
  {{- if .Values.dataset.hostPath }}
  hostPath:
    path: {{ .Values.dataset.hostPath }}
    type: Directory
  {{- else }}
  persistentVolumeClaim:
    claimName: {{ .Values.dataset.existingClaim }}
    readOnly: true
  {{- end }}
{{- end }}
{{- end }}
