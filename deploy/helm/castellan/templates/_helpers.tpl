{{- define "castellan.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "castellan.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "castellan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "castellan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object: the standard ones, then commonLabels. */}}
{{- define "castellan.labels" -}}
{{ include "castellan.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.labels and metadata.annotations of an object. */}}
{{- define "castellan.metadata" -}}
labels:
  {{- include "castellan.labels" . | nindent 2 }}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Labels of a pod template: the object's, then podLabels. `component` names the pod's role. */}}
{{- define "castellan.podLabels" -}}
{{ include "castellan.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- with .ctx.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "castellan.podAnnotations" -}}
{{- $a := merge (deepCopy (default (dict) .Values.podAnnotations)) (default (dict) .Values.commonAnnotations) -}}
{{- with $a }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "castellan.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "castellan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "castellan.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard: pod level. */}}
{{- define "castellan.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .uid | default 10001 }}
fsGroup: {{ .uid | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The restricted Pod Security Standard: container level. */}}
{{- define "castellan.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment shared by the server and the init Job: the store URL and the master key file. */}}
{{- define "castellan.storeEnv" -}}
- name: CASTELLAN_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.key }}
- name: CASTELLAN_MASTER_KEY_FILE
  value: /etc/castellan/master-key/{{ .Values.masterKey.key }}
- name: CASTELLAN_DATA_DIR
  value: /var/lib/castellan/data
- name: CASTELLAN_PUBLIC_URL
  value: {{ .Values.publicUrl | quote }}
- name: CASTELLAN_LOG_FORMAT
  value: json
{{- end -}}

{{- define "castellan.masterKeyVolume" -}}
- name: master-key
  secret:
    secretName: {{ .Values.masterKey.existingSecret }}
    defaultMode: 0400
    items:
      - key: {{ .Values.masterKey.key }}
        path: {{ .Values.masterKey.key }}
{{- end -}}
