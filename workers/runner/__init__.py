"""Runs placed jobs on the pool's Ray cluster as Ray Train TorchTrainer runs."""
