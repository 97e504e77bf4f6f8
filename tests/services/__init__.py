"""Scripts and pytest fixtures that run real servers (Slurm, sshd, S3) for tests."""
