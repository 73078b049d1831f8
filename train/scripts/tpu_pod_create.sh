#!/usr/bin/env bash
# Creates a TPU VM pod slice for training.
# Usage: TPU_NAME=muon-v4 ZONE=us-central2-b ACCELERATOR=v4-32 bash train/scripts/tpu_pod_create.sh
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
ACCELERATOR="${ACCELERATOR:-v4-32}"
RUNTIME="${RUNTIME:-tpu-ubuntu2204-base}"

gcloud compute tpus tpu-vm create "${TPU_NAME}" \
  --zone="${ZONE}" --accelerator-type="${ACCELERATOR}" --version="${RUNTIME}" \
  ${PROJECT:+--project="${PROJECT}"} ${SPOT:+--spot}
