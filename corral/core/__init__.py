"""The config/task core: fields, configs, identity, tasks (no SSH or SLURM here)."""
