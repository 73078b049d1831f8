#!/usr/bin/env bash
# Runs `python -m train` on every worker of the pod (one JAX process per host).
#
# The dataset must already be prepared in a gs:// data_dir readable by all hosts, e.g. once from
# any machine:  python -c "from train.data import pipeline; from train.configs import default; \
#   c = default.get_config(); c.data.data_dir = 'gs://BUCKET/tfds'; pipeline.prepare(c)"
# (process 0 also builds the default stdlib corpus there on first use).
#
# Usage: TPU_NAME=muon-v4 ZONE=us-central2-b DATA_DIR=gs://BUCKET/tfds \
#        WORKDIR=gs://BUCKET/runs/muon-1b bash train/scripts/tpu_pod_run.sh [--config.field=value ...]
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${DATA_DIR:?set DATA_DIR (gs://...)}"
: "${WORKDIR:?set WORKDIR (gs://...)}"
REMOTE_DIR="${REMOTE_DIR:-optax_muon}"
EXTRA_ARGS="$*"

gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all \
  ${PROJECT:+--project="${PROJECT}"} --command="
    cd ~/${REMOTE_DIR} && python3 -m train \
      --workdir='${WORKDIR}' \
      --config.distributed.initialize=True \
      --config.data.data_dir='${DATA_DIR}' \
      --config.model.preset=1b \
      --config.batch_size=256 --config.seq_len=2048 \
      --config.mesh.data=1 --config.mesh.fsdp=-1 --config.mesh.tensor=1 \
      ${EXTRA_ARGS} 2>&1 | tee -a ~/train.log
  "
