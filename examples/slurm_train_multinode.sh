#!/usr/bin/env bash
# One training stage on several nodes: every node runs the same command; r1pipe starts
# `accelerate launch` with this node's rank, and only global rank 0 writes stage state.
#
#   mkdir -p logs      # Slurm opens --output=logs/... when the job starts; no folder, no log
#   sbatch --nodes=4 examples/slurm_train_multinode.sh configs/r1.yaml reasoning-rl
#SBATCH --job-name=r1pipe-train
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --time=48:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

CONFIG=${1:?usage: slurm_train_multinode.sh CONFIG STAGE}
STAGE=${2:?usage: slurm_train_multinode.sh CONFIG STAGE}
KEY=${STAGE//-/_}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

srun bash -c "r1pipe $STAGE $CONFIG \
  stages.$KEY.launch.num_machines=$SLURM_NNODES \
  stages.$KEY.launch.machine_rank=\$SLURM_NODEID \
  stages.$KEY.launch.main_process_ip=$HEAD \
  stages.$KEY.launch.main_process_port=29500"
