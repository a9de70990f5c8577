"""alexnet_jax: the two-tower AlexNet of Krizhevsky, Sutskever & Hinton (2012) in JAX/Flax.

model (the network), layers (its pieces), optim (the paper's update),
parallel (towers and data over devices), data (the tf.data pipeline),
train (`train_and_evaluate`), main (the command line). See README.md.
"""

# The release; setup.cfg, CITATION.cff and CHANGELOG.md name the same one.
__version__ = '0.1.0'
