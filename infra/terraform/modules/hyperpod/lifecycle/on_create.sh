#!/bin/bash
# HyperPod lifecycle script (EKS orchestrator): runs once on every new node, as root.
# Keep it small: HyperPod already installs the EKS node bootstrap, the NVIDIA driver and EFA.
set -euo pipefail
logger -t continuous-learning "on_create: start on $(hostname)"

# Put containerd's data on the large secondary volume HyperPod mounts at /opt/sagemaker, so
# multi-GB trainer images do not fill the root volume.
if mountpoint -q /opt/sagemaker; then
  mkdir -p /opt/sagemaker/containerd
  if [ -d /var/lib/containerd ] && [ ! -L /var/lib/containerd ]; then
    systemctl stop containerd || true
    rsync -a /var/lib/containerd/ /opt/sagemaker/containerd/
    rm -rf /var/lib/containerd
    ln -s /opt/sagemaker/containerd /var/lib/containerd
    systemctl start containerd || true
  fi
fi

logger -t continuous-learning "on_create: done"
