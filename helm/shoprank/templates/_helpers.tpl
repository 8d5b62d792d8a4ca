{{/* Names and labels. */}}
{{- define "shoprank.name" -}}{{ .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "shoprank.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- define "shoprank.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoprank.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "shoprank.labels" -}}
{{ include "shoprank.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "shoprank.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "shoprank.fullname" .) .Values.serviceAccount.name }}
{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}
{{/* Where Triton reads the repository from. */}}
{{- define "shoprank.modelRepositoryPath" -}}
{{- if eq .Values.modelRepository.source "cloud" -}}{{ .Values.modelRepository.cloud.uri }}
{{- else -}}/models{{- end -}}
{{- end -}}
{{/* The claim's folder the pods serve: the configured subPath, or with the retrain CronJob its release link
(a subPath mount resolves the link when the container starts: a pod keeps the release it started with). */}}
{{- define "shoprank.modelsSubPath" -}}
{{- $sub := trimSuffix "/" .Values.modelRepository.pvc.subPath -}}
{{- if .Values.retrain.enabled -}}{{ trimPrefix "/" (printf "%s/current" $sub) }}{{- else -}}{{ $sub }}{{- end -}}
{{- end -}}
{{/* terminationGracePeriodSeconds = preStop sleep + Triton's exit timeout + margin. */}}
{{- define "shoprank.gracePeriod" -}}
{{ add .Values.drain.preStopSleepSeconds .Values.server.exitTimeoutSeconds .Values.drain.marginSeconds }}
{{- end -}}

{{/* The Secret holding the online store's URL: the user's own, or the one this chart writes. */}}
{{- define "shoprank.onlineSecret" -}}
{{- .Values.online.existingSecret | default (printf "%s-online" (include "shoprank.fullname" .)) -}}
{{- end -}}
{{/* The python backend's shared-memory regions of this chart's servers: /dev/shm/<prefix><uuid> (deployment.yaml) */}}
{{- define "shoprank.shmRegionPrefix" -}}shoprank_pod_{{- end -}}
