#!/usr/bin/env bash
#SBATCH --job-name=corral
#SBATCH --comment=corral:3:jobs/pkg.Learn/aa
#SBATCH --array=0-2%2
#SBATCH --output=/scratch/ws/.corral/arrays/%A_%a.out
#SBATCH --error=/scratch/ws/.corral/arrays/%A_%a.out
#SBATCH --cpus-per-task=4
#SBATCH --gres=gpu:1
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --partition=gpu
#SBATCH --account=lab
#SBATCH --exclusive
#SBATCH --mail-type=END
#SBATCH --dependency=afterok:101_0:101_3
#SBATCH --kill-on-invalid-dep=yes
dirs=(
  /scratch/ws/jobs/pkg.Learn/aa
  '/scratch/ws/jobs/pkg.Learn/b b'
  '/x/it'"'"'s'
)
exec bash "${dirs[$SLURM_ARRAY_TASK_ID]}/job.sh"
