{{- define "meshfed.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{ else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "meshfed.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* selector labels of one component: agent, egress or ingress */}}
{{- define "meshfed.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "meshfed.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "meshfed.tokenSecret" -}}
{{ .Values.adminToken.existingSecret | default (printf "%s-admin-token" (include "meshfed.fullname" .)) }}
{{- end }}

{{/* The restricted Pod Security Standard, and a read-only root. */}}
{{- define "meshfed.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "meshfed.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Where things are mounted, in every pod. */}}
{{- define "meshfed.configDir" }}/etc/meshfed{{ end }}
{{- define "meshfed.certsDir" }}/var/run/meshfed{{ end }}

{{- define "meshfed.bundleFile" -}}
{{ include "meshfed.certsDir" . }}/bundles/{{ .td }}.pem
{{- end }}

{{/* The projected source of one trust bundle, at bundles/<td>.pem. */}}
{{- define "meshfed.bundleSource" -}}
{{- $path := printf "bundles/%s.pem" .trustDomain }}
{{- if .secret }}
- secret:
    name: {{ .secret }}
    items: [{key: {{ .key | default "bundle.pem" }}, path: {{ $path }}}]
{{- else }}
- configMap:
    name: {{ required "trustBundles[].configMap or .secret" .configMap }}
    items: [{key: {{ .key | default "bundle.pem" }}, path: {{ $path }}}]
{{- end }}
{{- end }}

{{/* The agent's configuration: .Values.config, with what the chart decides
     (listeners, the mounted files, the store) over it. */}}
{{- define "meshfed.config" -}}
{{- $certs := include "meshfed.certsDir" . }}
{{- $svid := dict }}
{{- range $role := list "agent" "egress" "ingress" }}
{{- $_ := set $svid $role (dict "cert" (printf "%s/%s/tls.crt" $certs $role) "key" (printf "%s/%s/tls.key" $certs $role)) }}
{{- end }}
{{- $bundles := dict }}
{{- range .Values.trustBundles }}
{{- $_ := set $bundles .trustDomain (dict "file" (printf "%s/bundles/%s.pem" $certs .trustDomain)) }}
{{- end }}
{{- $managed := dict
  "trustDomain" (required "trustDomain is required" .Values.trustDomain)
  "identity" $svid
  "trustBundles" $bundles
  "federation" (dict "listen" (printf "0.0.0.0:%d" 15443))
  "xds" (dict "listen" "0.0.0.0:18000" "tls" (dict))
  "admin" (dict "listen" "0.0.0.0:19100" "allowNonLoopback" true "tokenFile" (printf "%s/admin/token" $certs))
  "store" (dict "path" "/var/lib/meshfed/meshfed.db")
  "gateways" (dict
    "egress" (dict "listen" (dict "address" "0.0.0.0"))
    "ingress" (dict "listen" (dict "address" "0.0.0.0" "port" 15444)))
}}
{{- if not (dig "consul" "export" "" .Values.config) }}
{{- $_ := set $managed "exports" (dict "file" "services.yaml") }}
{{- end }}
{{- $cfg := mergeOverwrite (deepCopy .Values.config) $managed }}
{{- if not (dig "gateways" "egress" "advertise" "" .Values.config) }}
{{- $_ := set $cfg.gateways.egress "advertise" (printf "%s-egress.%s.svc.cluster.local" (include "meshfed.fullname" .) .Release.Namespace) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
