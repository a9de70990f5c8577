"""The command-line programs besides training (`python -m alexnet_jax.tools.<name>`).

Each is a thin absl program over a library module; see README.md for the list.
"""
