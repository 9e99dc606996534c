{{/* The generated registry (files/registry.yaml, `tradepulse chart export`). */}}
{{- define "tradepulse.registry" -}}
{{ .Files.Get "files/registry.yaml" }}
{{- end -}}

{{- define "tradepulse.labels" -}}
app.kubernetes.io/name: tradepulse
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The selector of one process: tradepulse.selector (dict "root" $ "name" "customs") */}}
{{- define "tradepulse.selector" -}}
app.kubernetes.io/name: tradepulse
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "tradepulse.image" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end -}}

{{/* Kafka and the process's own principal: tradepulse.kafkaEnv (dict "root" $ "user" "customs") */}}
{{- define "tradepulse.kafkaEnv" -}}
- {name: KAFKA_BOOTSTRAP_SERVERS, value: {{ .root.Values.kafka.bootstrapServers | quote }}}
- {name: KAFKA_SECURITY_PROTOCOL, value: {{ .root.Values.kafka.securityProtocol | quote }}}
- {name: KAFKA_SASL_MECHANISM, value: {{ .root.Values.kafka.saslMechanism | quote }}}
- {name: KAFKA_SASL_USERNAME, value: "tradepulse-{{ .user }}"}
- {name: KAFKA_SASL_PASSWORD_FILE, value: /run/secrets/kafka/password}
- {name: KAFKA_SSL_CAFILE, value: /run/secrets/kafka-ca/ca.crt}
- {name: TRADEPULSE_TOPIC_PARTITIONS, value: {{ .root.Values.kafka.partitions | quote }}}
- {name: TRADEPULSE_TOPIC_REPLICATION, value: {{ .root.Values.kafka.replication | quote }}}
- {name: TRADEPULSE_CREATE_TOPICS, value: "false"}
- {name: TRADEPULSE_STOP_TIMEOUT_S, value: {{ .root.Values.worker.stopTimeoutSeconds | quote }}}
- {name: TRADEPULSE_LOG_FORMAT, value: json}
{{- end -}}

{{- define "tradepulse.kafkaVolumes" -}}
- name: kafka-user
  secret: {secretName: "tradepulse-{{ .user }}", items: [{key: password, path: password}]}
- name: kafka-ca
  secret: {secretName: {{ .root.Values.kafka.caSecret | quote }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end -}}

{{- define "tradepulse.kafkaMounts" -}}
- {name: kafka-user, mountPath: /run/secrets/kafka, readOnly: true}
- {name: kafka-ca, mountPath: /run/secrets/kafka-ca, readOnly: true}
{{- end -}}

{{- define "tradepulse.probes" -}}
readinessProbe:
  httpGet: {path: /ready, port: web}
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet: {path: /health, port: web}
  periodSeconds: 15
  failureThreshold: 4
startupProbe:
  httpGet: {path: /health, port: web}
  periodSeconds: 5
  failureThreshold: 60
{{- end -}}

{{/* Replicas KEDA may use: never more than the partitions of the input (a worker without one idles). */}}
{{- define "tradepulse.maxReplicas" -}}
{{- min .Values.keda.maxReplicaCount .Values.kafka.partitions -}}
{{- end -}}

{{/* File name -> policy text: values.release.policies, else the shipped files/release/*.yaml. */}}
{{- define "tradepulse.policies" -}}
{{- if .Values.release.policies }}
{{- toYaml .Values.release.policies }}
{{- else }}
{{- range $path, $_ := .Files.Glob "files/release/*.yaml" }}
{{ base $path }}: |
{{ $.Files.Get $path | indent 2 }}
{{- end }}
{{- end }}
{{- end -}}
