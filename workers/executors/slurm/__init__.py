"""The two Slurm targets, ``slurm`` (sbatch and squeue: :mod:`.cli`) and ``slurm_rest``
(slurmrestd: :mod:`.rest`), and what they share, one job per module:

- ``base``: the executor both targets are (the submit and poll rules);
- ``states``: the one table of Slurm states, and Slurm's exit codes;
- ``handle``: the handle the control plane keeps (job id, our job name, submit time);
- ``batch_script``: the #SBATCH script, what Slurm is told of a job, its environment and
  secrets file;
- ``run_dirs``: the run dir on the shared file system, handed to the jobs' user;
- ``job_user``: who jobs run as (never root);
- ``settings``: how a pool setting is read; ``rest_token``: slurmrestd's JWT.

Only ``cli`` and ``rest`` are named by the registry (``workers.executors.EXECUTORS``); the
sbatch target never imports ``requests``.
"""
