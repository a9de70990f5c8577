"""The two-tower AlexNet in PyTorch, for `python -m alexnet_jax.tools.benchmark --compare_torch`.

Not part of the package and never imported by it: `alexnet_jax.timing.TorchRunner`
starts this file in a process of its own. The network is the one of
`alexnet_jax.model.AlexNet` (grouped convolutions for conv2, conv4, conv5;
LRN per tower; conv1 padded on the bottom/right edges as cuda-convnet), in
NCHW, float32, trained by SGD with momentum 0.9 and weight decay 5e-4 on a
fixed synthetic batch.

Protocol: after --warmup steps (with --mode=compile the first one compiles)
it prints one JSON line {"compile_s": seconds of the warm-up}; then, for
every number n read from stdin, it times n steps and prints {"step_s":
median seconds per step, "peak_rss": peak resident set in bytes}.
"""

import argparse
import json
import resource
import statistics
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F


class TowerLRN(nn.Module):
  """LRN over each tower's maps: `towers` groups of channels normalized separately."""

  def __init__(self, towers, k, alpha_per_term):
    super().__init__()
    # nn.LocalResponseNorm multiplies the sum by alpha / size (cuda-convnet's
    # convention); the paper's formula multiplies it by alpha.
    self.towers = towers
    self.norm = nn.LocalResponseNorm(5, alpha=1e-4 if alpha_per_term else 5e-4, beta=0.75, k=k)

  def forward(self, x):
    return torch.cat([self.norm(t) for t in x.chunk(self.towers, dim=1)], dim=1)


class AlexNet(nn.Module):

  def __init__(self, num_classes, image_size, conv, fc, lrn, lrn_k, lrn_convention, pool):
    super().__init__()
    c1, c2, c3, c4, c5 = conv
    outputs = 1 + -(-(image_size - 11) // 4)
    self.pad1 = (outputs - 1) * 4 + 11 - image_size
    self.conv1 = nn.Conv2d(3, c1, 11, stride=4)
    self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=2)
    self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
    self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=2)
    self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=2)
    self.lrn = TowerLRN(2, lrn_k, lrn_convention == 'cuda_convnet') if lrn else nn.Identity()
    self.pool = nn.MaxPool2d(pool[0], pool[1])
    with torch.no_grad():
      side = self.features(torch.zeros(1, 3, image_size, image_size)).shape[-1]
    self.fc6 = nn.Linear(c5 * side * side, fc)
    self.fc7 = nn.Linear(fc, fc)
    self.fc8 = nn.Linear(fc, num_classes)

  def features(self, x):
    x = self.pool(self.lrn(F.relu(self.conv1(F.pad(x, (0, self.pad1, 0, self.pad1))))))
    x = self.pool(self.lrn(F.relu(self.conv2(x))))
    x = F.relu(self.conv4(F.relu(self.conv3(x))))
    return self.pool(F.relu(self.conv5(x)))

  def forward(self, x):
    x = torch.flatten(self.features(x), 1)
    x = F.dropout(F.relu(self.fc6(x)), 0.5, self.training)
    x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
    return self.fc8(x)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--mode', choices=['eager', 'compile'], default='eager')
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--num_classes', type=int, default=1000)
  parser.add_argument('--conv_features', default='96,256,384,384,256')
  parser.add_argument('--fc_features', type=int, default=4096)
  parser.add_argument('--lrn', type=int, default=1)
  parser.add_argument('--lrn_k', type=float, default=2.0)
  parser.add_argument('--lrn_convention', default='paper')
  parser.add_argument('--pool', default='3,2')
  parser.add_argument('--warmup', type=int, default=2)
  args = parser.parse_args()
  torch.manual_seed(0)
  model = AlexNet(args.num_classes, args.image_size,
                  [int(c) for c in args.conv_features.split(',')], args.fc_features,
                  bool(args.lrn), args.lrn_k, args.lrn_convention,
                  [int(p) for p in args.pool.split(',')])
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  images = torch.randn(args.batch_size, 3, args.image_size, args.image_size) * 50
  labels = torch.randint(0, args.num_classes, (args.batch_size,))

  def step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    opt.step()
    return loss

  if args.mode == 'compile':
    step = torch.compile(step)
  start = time.perf_counter()
  for _ in range(args.warmup):
    step()
  print(json.dumps({'compile_s': time.perf_counter() - start}), flush=True)
  for line in sys.stdin:
    times = []
    for _ in range(int(line)):
      start = time.perf_counter()
      step()
      times.append(time.perf_counter() - start)
    print(json.dumps({'step_s': statistics.median(times),
                      'peak_rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}),
          flush=True)


if __name__ == '__main__':
  main()
