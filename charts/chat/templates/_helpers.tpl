{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "chat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, prefixed to the chart name unless
the release name already contains it.
*/}}
{{- define "chat.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "chat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Image tag: image.tag, else the chart's appVersion. Never "latest".
*/}}
{{- define "chat.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Full image reference: repository:tag[@digest].
*/}}
{{- define "chat.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "chat.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Selector labels: stable for the lifetime of the release (immutable selectors).
*/}}
{{- define "chat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "chat.labels" -}}
helm.sh/chart: {{ include "chat.chart" . }}
{{ include "chat.selectorLabels" . }}
app.kubernetes.io/version: {{ include "chat.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: chat
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "chat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chat.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Workload kind and apiVersion (Deployment or Argo Rollouts Rollout).
*/}}
{{- define "chat.workloadApiVersion" -}}
{{- if .Values.rollout.enabled }}argoproj.io/v1alpha1{{ else }}apps/v1{{ end }}
{{- end }}

{{- define "chat.workloadKind" -}}
{{- if .Values.rollout.enabled }}Rollout{{ else }}Deployment{{ end }}
{{- end }}

{{/*
Name of the blueGreen preview Service.
*/}}
{{- define "chat.previewServiceName" -}}
{{- printf "%s-preview" (include "chat.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
True (non-empty) when the workload is a blueGreen Rollout.
*/}}
{{- define "chat.canaryServiceName" -}}
{{- printf "%s-canary" (include "chat.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chat.analysisTemplateName" -}}
{{- printf "%s-readyz" (include "chat.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chat.canary" -}}
{{- if and .Values.rollout.enabled (eq .Values.rollout.strategy "canary") }}true{{ end }}
{{- end }}

{{- define "chat.blueGreen" -}}
{{- if and .Values.rollout.enabled (eq .Values.rollout.strategy "blueGreen") }}true{{ end }}
{{- end }}

{{/*
Pod template shared by the Deployment and the Rollout.
*/}}
{{- define "chat.podTemplate" -}}
metadata:
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "chat.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "chat.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: {{ .Chart.Name }}
      image: {{ include "chat.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
      env:
        - name: PORT
          value: {{ .Values.containerPort | quote }}
      envFrom:
        - configMapRef:
            name: {{ include "chat.fullname" . }}
        {{- if .Values.sealedSecret.enabled }}
        - secretRef:
            name: {{ include "chat.fullname" . }}
        {{- end }}
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
