#!/usr/bin/env bash
# Copies this repo to every worker of the pod and installs it with TPU JAX.
# Usage: TPU_NAME=muon-v4 ZONE=us-central2-b bash train/scripts/tpu_pod_setup.sh
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
REMOTE_DIR="${REMOTE_DIR:-optax_muon}"

tar -C "${REPO_ROOT}" --exclude=.venv --exclude=.git -czf /tmp/optax_muon.tgz .
gcloud compute tpus tpu-vm scp /tmp/optax_muon.tgz "${TPU_NAME}:~/" \
  --zone="${ZONE}" --worker=all ${PROJECT:+--project="${PROJECT}"}
gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all \
  ${PROJECT:+--project="${PROJECT}"} --command="
    set -e
    mkdir -p ~/${REMOTE_DIR} && tar -C ~/${REMOTE_DIR} -xzf ~/optax_muon.tgz
    python3 -m pip install -U pip
    python3 -m pip install -c ~/${REMOTE_DIR}/constraints.txt -e ~/${REMOTE_DIR}[train,tpu] gcsfs
  "
