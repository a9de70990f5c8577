r"""The paper's recipe on Imagenette (10 ImageNet classes), for users with internet access.

  python -m alexnet_jax.main --workdir=/tmp/imagenette --config=experiments/imagenette.py

TFDS downloads imagenette/full-size-v2 (about 1.5 GB) on the first run.
Same network and preprocessing as experiments/paper.py with 10 output
classes; 9,469 training images, so a shorter schedule (60 epochs) and an
evaluation every epoch drive the plateau policy.

Result: not yet measured with this code.
"""

from alexnet_jax.config import base_config


def get_config():
  config = base_config()
  config.dataset = 'imagenette'
  config.num_epochs = 60
  config.checkpoint_every_steps = 500
  config.log_every_steps = 20
  return config
