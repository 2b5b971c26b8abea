#!/usr/bin/env bash
# Rejection sampling across N nodes with Slurm, then training on one node.
#
#   mkdir -p logs      # Slurm opens --output=logs/... when the job starts; no folder, no log
#   sbatch --array=0-7 examples/slurm_reject_sample.sh configs/r1.yaml     # 8 generation shards
#   sbatch --dependency=afterok:<array job id> examples/slurm_reject_sample.sh configs/r1.yaml merge
#
# Every array task generates the prompt chunks it owns (`--shard i/N`) into the shared run
# directory; with the stage's `launch: {num_processes: 8}` all 8 GPUs of the task sample,
# each rank its own chunks of the part (chunk k: part k mod N, then rank (k // N) mod 8).
# The merge job checks that every chunk is present, then filters, mixes and runs the SFT
# (under the same `launch:` settings, e.g. 8 GPUs with DeepSpeed ZeRO-3).
#SBATCH --job-name=r1pipe-reject-sample
#SBATCH --nodes=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

CONFIG=${1:?usage: slurm_reject_sample.sh CONFIG [merge]}
MODE=${2:-generate}

if [[ "$MODE" == "merge" ]]; then
  exec r1pipe reject-sample "$CONFIG"
fi

SHARD="${SLURM_ARRAY_TASK_ID:?run as an array job}/${SLURM_ARRAY_TASK_COUNT:?}"
exec r1pipe reject-sample "$CONFIG" --shard "$SHARD"
