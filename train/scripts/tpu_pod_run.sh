#!/usr/bin/env bash
# Runs `python -m train` on every worker of the pod (one JAX process per host), after checking
# here, on this machine's CPU, that the exact config fits the slice: `python -m train.aot`
# compiles the train step for ACCELERATOR (the slice tpu_pod_create.sh made) and the launch is
# refused (exit 1) when it does not fit. Needs libtpu here: pip install -c constraints.txt -e '.[tpu]'.
#
# The dataset must already be prepared in a gs:// data_dir readable by all hosts, e.g. once from
# any machine:  python -c "from train.data import pipeline; from train.configs import default; \
#   c = default.get_config(); c.data.data_dir = 'gs://BUCKET/tfds'; pipeline.prepare(c)"
# (process 0 also builds the default stdlib corpus there on first use).
#
# Default: the llama-1b preset (Llama-3.2-1B shapes; vocab 256 with the byte tokenizer), 4
# sequences of 2048 per chip, FSDP over the v4-32's 16 chips (docs/pod_scale.md: it fits).
# Usage: TPU_NAME=muon-v4 ZONE=us-central2-b DATA_DIR=gs://BUCKET/tfds \
#        WORKDIR=gs://BUCKET/runs/muon-1b [ACCELERATOR=v4-32] \
#        bash train/scripts/tpu_pod_run.sh [--config.field=value ...]
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${DATA_DIR:?set DATA_DIR (gs://...)}"
: "${WORKDIR:?set WORKDIR (gs://...)}"
ACCELERATOR="${ACCELERATOR:-v4-32}"
REMOTE_DIR="${REMOTE_DIR:-optax_muon}"
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CONFIG_ARGS="--config.model.preset=llama-1b --config.batch_size=64 --config.seq_len=2048 \
--config.mesh.data=1 --config.mesh.fsdp=-1 --config.mesh.tensor=1 $*"

# shellcheck disable=SC2086  # CONFIG_ARGS are words, as on the remote command line.
if ! (cd "${REPO_ROOT}" && "${AOT_PYTHON:-python3}" -m train.aot --topology="${ACCELERATOR}" \
      ${CONFIG_ARGS}); then
  echo "tpu_pod_run.sh: refusing to launch: the config above does not compile or fit on" \
       "${ACCELERATOR} (python -m train.aot)" >&2
  exit 1
fi

gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all \
  ${PROJECT:+--project="${PROJECT}"} --command="
    cd ~/${REMOTE_DIR} && python3 -m train \
      --workdir='${WORKDIR}' \
      --config.distributed.initialize=True \
      --config.data.data_dir='${DATA_DIR}' \
      ${CONFIG_ARGS} 2>&1 | tee -a ~/train.log
  "
