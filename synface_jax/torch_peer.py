"""The PyTorch peer of `benchmark step --peer torch`: insightface's IResNet layout, ArcFace, SGD.

Written from the layout facts (docs: BN -> conv3x3 -> BN -> PReLU -> conv3x3 (strided) -> BN plus a
conv1x1 + BN shortcut in the first block of each stage; stem conv3x3 + BN + PReLU; head BN2d ->
flatten -> dropout -> Linear -> BatchNorm1d with its scale frozen at 1), the combined margin loss of
arcface_torch with (s, m1, m2, m3) = (64, 1, 0.5, 0), cross-entropy and SGD with momentum 0.9 and
weight decay 5e-4 -- the same step the JAX benchmark times, on the same batch shape.

Needs torch (the optional `[bench]` extra); nothing else in the package imports this module.
"""
import math
import os
import sys
import time

import numpy as np

# The CPU peer never compiles kernels, so it needs no triton, which PyPI's CUDA build of torch
# imports lazily (torch.optim -> torch._dynamo): imported after TensorFlow, triton crashes the
# process (SIGSEGV). A None entry makes torch see it as absent.
if 'triton' not in sys.modules:
  sys.modules['triton'] = None
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

STAGES = {'r18': (2, 2, 2, 2), 'r34': (3, 4, 6, 3), 'r50': (3, 4, 14, 3), 'r100': (3, 13, 30, 3)}
CHANNELS = (64, 128, 256, 512)


def _conv3x3(cin, cout, stride=1):
  return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class Block(nn.Module):
  def __init__(self, cin, cout, stride, downsample):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
    self.conv1 = _conv3x3(cin, cout)
    self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
    self.prelu = nn.PReLU(cout)
    self.conv2 = _conv3x3(cout, cout, stride)
    self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
    self.downsample = nn.Sequential(
        nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
    ) if downsample else None

  def forward(self, x):
    y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
    return y + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
  """Module names follow insightface's state_dict keys (layer1.0.bn1, downsample.0, features)."""

  def __init__(self, stages, input_size=(112, 112), num_features=512, width=1.0):
    super().__init__()
    ch = lambda c: max(1, int(round(c * width)))
    self.conv1 = _conv3x3(3, ch(64))
    self.bn1 = nn.BatchNorm2d(ch(64), eps=1e-5)
    self.prelu = nn.PReLU(ch(64))
    cin = ch(64)
    for stage, (blocks, cout) in enumerate(zip(stages, CHANNELS)):
      cout = ch(cout)
      self.add_module(f'layer{stage + 1}', nn.Sequential(*[
          Block(cin if i == 0 else cout, cout, 2 if i == 0 else 1, i == 0) for i in range(blocks)]))
      cin = cout
    self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
    h, w = input_size[0] // 16, input_size[1] // 16
    self.dropout = nn.Dropout(0.0)
    self.fc = nn.Linear(cin * h * w, num_features)
    self.features = nn.BatchNorm1d(num_features, eps=1e-5)
    nn.init.constant_(self.features.weight, 1.0)
    self.features.weight.requires_grad = False
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0, 0.1)

  def forward(self, x):
    x = self.prelu(self.bn1(self.conv1(x)))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    x = torch.flatten(self.bn2(x), 1)
    return self.features(self.fc(self.dropout(x)))


class ArcFaceHead(nn.Module):
  """Normalised class centres; cos(theta + m) on the target, scale s, cross-entropy."""

  def __init__(self, num_classes, num_features=512, s=64.0, m=0.5):
    super().__init__()
    self.weight = nn.Parameter(0.01 * torch.randn(num_classes, num_features))
    self.s, self.cos_m, self.sin_m = s, math.cos(m), math.sin(m)

  def forward(self, embeddings, labels):
    cos = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1, 1)
    target = cos.gather(1, labels[:, None])
    sin = torch.sqrt((1.0 - target * target).clamp_min(0.0))
    logits = cos.scatter(1, labels[:, None], target * self.cos_m - sin * self.sin_m)
    return F.cross_entropy(self.s * logits, labels)


def make_runner(arch: str, batch: int, size, classes: int, width: float = 1.0, seed: int = 0):
  """Builds the torch step; returns (run(steps) -> seconds per step, info), after one step."""
  torch.manual_seed(seed)
  torch.set_num_threads(os.cpu_count() or 1)
  model = IResNet(STAGES[arch], tuple(size), width=width)
  head = ArcFaceHead(classes)
  params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
  opt = torch.optim.SGD(params, lr=0.1 * batch / 512, momentum=0.9, weight_decay=5e-4)
  rng = np.random.default_rng(seed)
  x = torch.from_numpy(rng.uniform(-1, 1, (batch, 3, *size)).astype(np.float32))
  y = torch.from_numpy(rng.integers(0, classes, batch).astype(np.int64))
  model.train()
  last = {}

  def step():
    opt.zero_grad(set_to_none=True)
    loss = head(model(x), y)
    loss.backward()
    opt.step()
    last['loss'] = float(loss.detach())

  def run(steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
      step()
    return (time.perf_counter() - t0) / steps

  t0 = time.perf_counter()
  step()
  first_s = time.perf_counter() - t0
  return run, {'torch': torch.__version__, 'threads': torch.get_num_threads(),
               'first_step_s': round(first_s, 3), 'loss': last}


def _serve(spec: str) -> None:
  """The child of `peer_process.TorchPeer`: builds the runner, prints its info, then answers each
  line `N` on stdin with the seconds per step of N steps (one JSON line each) until stdin closes."""
  import json
  args = json.loads(spec)
  run, info = make_runner(args['arch'], args['batch'], tuple(args['size']), args['classes'],
                          args['width'])
  print(json.dumps(info), flush=True)
  for line in sys.stdin:
    seconds = run(int(line))
    print(json.dumps({'seconds': seconds, 'loss': info['loss']}), flush=True)


if __name__ == '__main__':
  _serve(sys.argv[1])
