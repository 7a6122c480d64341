{{- define "cl.labels" -}}
app.kubernetes.io/name: continuous-learning
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "cl.env" -}}
{{- range $k, $v := .Values.rayCluster.env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{- define "cl.volumes" -}}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.rayCluster.workers.shmSize }}
{{- if .Values.fsx.enabled }}
- name: fsx
  persistentVolumeClaim:
    claimName: {{ .Values.fsx.claimName }}
{{- end }}
{{- end -}}

{{- define "cl.volumeMounts" -}}
- name: dshm
  mountPath: /dev/shm
{{- if .Values.fsx.enabled }}
- name: fsx
  mountPath: /fsx
{{- end }}
{{- end -}}

{{/* RayCluster spec shared by the RayCluster and an ephemeral RayJob. */}}
{{- define "cl.rayClusterSpec" -}}
rayVersion: {{ .Values.rayVersion | quote }}
enableInTreeAutoscaling: false
headGroupSpec:
  rayStartParams:
    dashboard-host: 0.0.0.0
    num-cpus: "0"
    num-gpus: "0"
  template:
    metadata:
      labels:
        {{- include "cl.labels" . | nindent 8 }}
    spec:
      serviceAccountName: {{ .Values.serviceAccounts.ray.name }}
      automountServiceAccountToken: true
      nodeSelector:
        {{- toYaml .Values.rayCluster.head.nodeSelector | nindent 8 }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: ray-head
          image: {{ .Values.image }}
          imagePullPolicy: IfNotPresent
          ports:
            - containerPort: 6379
              name: gcs
            - containerPort: 8265
              name: dashboard
            - containerPort: 10001
              name: client
          resources:
            requests:
              cpu: {{ .Values.rayCluster.head.cpu | quote }}
              memory: {{ .Values.rayCluster.head.memory }}
            limits:
              cpu: {{ .Values.rayCluster.head.cpu | quote }}
              memory: {{ .Values.rayCluster.head.memory }}
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: dshm
              mountPath: /dev/shm
      volumes:
        - name: dshm
          emptyDir:
            medium: Memory
            sizeLimit: 8Gi
workerGroupSpecs:
  - groupName: {{ .Values.rayCluster.workers.groupName }}
    replicas: {{ .Values.rayCluster.workers.replicas }}
    minReplicas: {{ .Values.rayCluster.workers.replicas }}
    maxReplicas: {{ .Values.rayCluster.workers.replicas }}
    rayStartParams:
      num-gpus: {{ .Values.rayCluster.workers.gpus | quote }}
      # only workers advertise it: the RayJob's entrypoint asks for a share, so drivers run where the GPUs are
      resources: '''{"cl_worker_node": 1}'''
    template:
      metadata:
        labels:
          {{- include "cl.labels" . | nindent 10 }}
      spec:
        serviceAccountName: {{ .Values.serviceAccounts.ray.name }}
        automountServiceAccountToken: true
        nodeSelector:
          sagemaker.amazonaws.com/instance-group-name: {{ .Values.hyperpod.instanceGroup }}
          sagemaker.amazonaws.com/node-health-status: Schedulable
        tolerations:
          - key: nvidia.com/gpu
            operator: Exists
            effect: NoSchedule
          - key: vpc.amazonaws.com/efa
            operator: Exists
            effect: NoSchedule
        containers:
          - name: ray-worker
            image: {{ .Values.image }}
            imagePullPolicy: IfNotPresent
            env:
              {{- include "cl.env" . | nindent 14 }}
            resources:
              requests:
                cpu: {{ .Values.rayCluster.workers.cpu | quote }}
                memory: {{ .Values.rayCluster.workers.memory }}
                nvidia.com/gpu: {{ .Values.rayCluster.workers.gpus }}
                vpc.amazonaws.com/efa: {{ .Values.rayCluster.workers.efa }}
              limits:
                cpu: {{ .Values.rayCluster.workers.cpu | quote }}
                memory: {{ .Values.rayCluster.workers.memory }}
                nvidia.com/gpu: {{ .Values.rayCluster.workers.gpus }}
                vpc.amazonaws.com/efa: {{ .Values.rayCluster.workers.efa }}
            securityContext:
              allowPrivilegeEscalation: false
              capabilities:
                drop: ["ALL"]
                add: ["IPC_LOCK"]   # EFA registers (pins) memory
            volumeMounts:
              {{- include "cl.volumeMounts" . | nindent 14 }}
        volumes:
          {{- include "cl.volumes" . | nindent 10 }}
{{- end -}}
