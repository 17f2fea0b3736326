{{/* Names: the release name, unless it already holds the chart's; 63 characters at most. */}}
{{- define "kcp-tmc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kcp-tmc.webhookName" -}}{{ include "kcp-tmc.fullname" . | trunc 55 | trimSuffix "-" }}-webhook{{- end -}}
{{- define "kcp-tmc.reconcilerName" -}}{{ include "kcp-tmc.fullname" . | trunc 52 | trimSuffix "-" }}-reconciler{{- end -}}
{{- define "kcp-tmc.certsName" -}}{{ include "kcp-tmc.fullname" . | trunc 57 | trimSuffix "-" }}-certs{{- end -}}

{{/* The Secret the webhook pods mount: the user's, cert-manager's or the certificate Job's. */}}
{{- define "kcp-tmc.tlsSecret" -}}
{{- if .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else -}}
{{- include "kcp-tmc.webhookName" . }}-tls
{{- end -}}
{{- end -}}

{{/* The CA Secret of the certificate Job (ca.crt and ca.key): only the Job may read it. */}}
{{- define "kcp-tmc.caSecret" -}}{{ include "kcp-tmc.webhookName" . }}-ca{{- end -}}

{{/* True when the chart's own Job makes and renews the certificates. */}}
{{- define "kcp-tmc.certsByJob" -}}
{{- if and (not .Values.certManager.enabled) (not .Values.tls.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "kcp-tmc.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kcp-tmc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kcp-tmc.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Namespaces the webhooks never see: the cluster's own, the release's (the webhook must never
guard its own restart) and those labelled tmc.kcp.io/ignore.  Always rendered; values only add.
*/}}
{{- define "kcp-tmc.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
    {{- range (concat (list "kube-system" "kube-node-lease" .Release.Namespace) .Values.webhook.excludedNamespaces | uniq) }}
    - {{ . | quote }}
    {{- end }}
  - key: tmc.kcp.io/ignore
    operator: DoesNotExist
{{- end -}}

{{/* The TMC kinds our policies judge; never leases, events or any built-in kind. */}}
{{- define "kcp-tmc.tmcRules" -}}
- apiGroups: ["workload.kcp.io"]
  apiVersions: ["v1alpha1"]
  operations: ["CREATE", "UPDATE", "DELETE"]
  resources: ["synctargets", "synctargets/status"]
  scope: "*"
- apiGroups: ["tmc.kcp.io"]
  apiVersions: ["v1alpha1"]
  operations: ["CREATE", "UPDATE", "DELETE"]
  resources: ["clusters", "clusters/status"]
  scope: "*"
- apiGroups: ["scheduling.kcp.io"]
  apiVersions: ["v1alpha1"]
  operations: ["CREATE", "UPDATE", "DELETE"]
  resources: ["locations"]
  scope: "*"
{{- end -}}

{{/* clientConfig of a webhook: the Service, and the caBundle where the chart knows it. */}}
{{- define "kcp-tmc.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "kcp-tmc.webhookName" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- if .root.Values.tls.existingSecret }}
  caBundle: {{ required "tls.caBundle is required with tls.existingSecret: the base64 PEM of the CA that signed the Secret's certificate" .root.Values.tls.caBundle }}
  {{- else if include "kcp-tmc.certsByJob" .root }}
  {{- /* On upgrade keep the bundle the certificate Job injected; on install the Job injects it. */}}
  {{- $ca := lookup "v1" "Secret" .root.Release.Namespace (include "kcp-tmc.caSecret" .root) }}
  {{- if and $ca $ca.data (index $ca.data "ca.crt") }}
  caBundle: {{ index $ca.data "ca.crt" }}
  {{- end }}
  {{- end }}
{{- end -}}

{{- define "kcp-tmc.certManagerAnnotation" -}}
{{- if .Values.certManager.enabled -}}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "kcp-tmc.webhookName" . }}
{{- end -}}
{{- end -}}

{{/* Pod-level hardening shared by every pod of the chart. */}}
{{- define "kcp-tmc.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* The pod of the certificate Jobs: pull or generate, rotate, write the Secrets (and caBundle). */}}
{{- define "kcp-tmc.certsPod" -}}
{{- $root := .root -}}
{{- $ns := $root.Release.Namespace -}}
{{- $tls := printf "%s/%s" $ns (include "kcp-tmc.tlsSecret" $root) -}}
{{- $ca := printf "%s/%s" $ns (include "kcp-tmc.caSecret" $root) -}}
serviceAccountName: {{ .serviceAccount }}
restartPolicy: OnFailure
{{ include "kcp-tmc.podSecurity" $root }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
- name: certs
  image: {{ include "kcp-tmc.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: ["/bin/sh", "-ec"]
  args:
  - |
    dir=/tmp/certs
    tmc-certs pull "$dir" --secret {{ $tls }} --ca-secret {{ $ca }}
    if [ -f "$dir/ca.key" ]; then
      tmc-certs rotate "$dir"
    else
      tmc-certs generate --service {{ include "kcp-tmc.webhookName" $root }} --namespace {{ $ns }} --out "$dir" \
        {{- range (include "kcp-tmc.vwDNSNames" $root | fromJsonArray) }}
        --dns {{ . }} \
        {{- end }}
        --ca-days {{ $root.Values.certs.caDays }} --serving-days {{ $root.Values.certs.servingDays }}
    fi
    tmc-certs inject "$dir" --secret {{ $tls }} --ca-secret {{ $ca }}{{ if .inject }} --webhook-configuration {{ include "kcp-tmc.fullname" $root }}{{ end }}
    tmc-certs check "$dir" || true
  resources:
    {{- toYaml $root.Values.certs.jobResources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
  - name: tmp
    mountPath: /tmp
volumes:
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end -}}

{{/* The virtual workspaces' Service, and the names its serving certificate must hold. */}}
{{- define "kcp-tmc.vwName" -}}{{ include "kcp-tmc.fullname" . | trunc 45 | trimSuffix "-" }}-virtual-workspace{{- end -}}

{{- define "kcp-tmc.vwDNSNames" -}}
{{- if .Values.virtualWorkspace.enabled -}}
{{- $svc := include "kcp-tmc.vwName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- toJson (concat $names .Values.virtualWorkspace.dnsNames | uniq) -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* The base URL a SyncTarget's status.virtualWorkspaces points syncers at. */}}
{{- define "kcp-tmc.vwURL" -}}
{{- .Values.virtualWorkspace.url | default (printf "https://%s.%s.svc:%d" (include "kcp-tmc.vwName" .) .Release.Namespace (int .Values.virtualWorkspace.service.port)) -}}
{{- end -}}

{{/* The webhook pods need API access (a token and a ClusterRole): quota, or rules of the user's. */}}
{{- define "kcp-tmc.webhookNeedsAPI" -}}
{{- if or .Values.quota.webhook.enabled .Values.webhook.rbac.rules -}}true{{- end -}}
{{- end -}}
