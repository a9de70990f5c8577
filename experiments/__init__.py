"""The experiment configs, importable as alexnet_jax.experiments once installed."""
