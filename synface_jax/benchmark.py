"""Throughput of the train step, of the mixups and of face generation.

    python -m synface_jax.benchmark step --arch r18 --batch 32
    python -m synface_jax.benchmark step --arch r50 --batch 256 --dtype bfloat16 --classes 100000 \
        --peak-tflops 989
    python -m synface_jax.benchmark mixup --batch 512
    python -m synface_jax.benchmark generate --batch 64
    python -m synface_jax.benchmark head --classes 100000,1000000 --devices 8
    python -m synface_jax.benchmark input --data /data/casia-webface --batch 512
    python -m synface_jax.benchmark search --gallery 100000 --probes 10000

Each prints readable lines and, last, one JSON line with every figure. Measured after compilation,
blocking on the results; the machine's noise is yours to average out (use --steps).
Nothing here imports TensorFlow.
"""
import argparse
import contextlib
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from synface_jax import cli


def _time(fn, args, steps: int):
  """Compile time, then mean seconds per call over `steps` calls (after one warm-up call)."""
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  out = compiled(*args)
  jax.block_until_ready(out)
  t0 = time.perf_counter()
  for _ in range(steps):
    out = compiled(*args)
  jax.block_until_ready(out)
  return compiled, compile_s, (time.perf_counter() - t0) / steps


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get('flops', 0.0))


def _config(args, classes):
  from synface_jax import config as config_lib
  c = config_lib.base_config()
  c.regime = args.regime
  c.model.arch = args.arch
  c.model.width = args.width
  c.model.dtype = args.dtype
  c.model.input_size = tuple(args.size)
  c.optim.batch_size = args.batch
  c.real.path = '<random images>'
  c.mesh.head_on_data = getattr(args, 'head_on_data', False)
  if args.regime != 'real':
    c.synthetic.num_identities = classes
    c.generator = _generator_config(args)
    c.im.enabled = args.im
    c.dm.enabled = args.dm and args.regime == 'mixed'
    c.synthetic.augment.update(_render_augment(args).__dict__)
  return c


def _render_augment(args):
  """--augment-renders: every render augmentation on (each op costs the same at any probability:
  under vmap an op is computed for the whole batch and selected per example)."""
  from synface_jax.generators import augment
  if not args.augment_renders:
    return augment.Augment()
  return augment.Augment(flip=0.5, align=0.5, low_res=0.5, blur=0.5, colour=0.5, grayscale=0.5,
                         occlude=0.5, noise=0.5, jpeg=0.5)


def _generator_config(args) -> dict:
  config = {'name': args.generator, 'image_size': tuple(args.size)}
  if args.generator_checkpoint:
    config['checkpoint'] = args.generator_checkpoint
  elif args.generator == 'discofacegan':
    config['preset'] = 'small'  # Random weights of the reduced network: timing only.
  return ml_collections.ConfigDict(config)


def _step_runner(args, classes: int):
  """Builds and compiles the train step; returns (run(steps) -> s/step, first run's result, info).

  run chains the donated state through the calls and blocks on the last one.
  """
  from synface_jax import experiment, sharding
  config = _config(args, classes)
  mesh = sharding.make_mesh(-1, args.model_axis)
  # Random real images of `classes` identities, 10 each.
  exp = experiment.Experiment.from_config(config, mesh,
                                          real=experiment.RealCounts(classes, classes * 10))
  state, gen_params, key = exp.init_state(), exp.gen_params, exp.key('step')
  real = None
  if args.regime != 'synthetic':
    rng = np.random.default_rng(0)
    real = sharding.host_local_to_global({
        'image': rng.uniform(-1, 1, (args.batch, *args.size, 3)).astype(np.float32),
        'label': rng.integers(0, classes, args.batch).astype(np.int32)}, mesh)
  t0 = time.perf_counter()
  compiled = exp.step.lower(state, gen_params, real, key).compile()
  compile_s = time.perf_counter() - t0
  holder = {'state': state, 'metrics': None}

  def run(steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):  # The state is donated, so each call takes the previous one's.
      holder['state'], holder['metrics'] = compiled(holder['state'], gen_params, real, key)
    jax.block_until_ready(holder)
    return (time.perf_counter() - t0) / steps

  run(1)  # The first step: warm-up, and the end of "time to first step".
  info = {'compiled': compiled, 'compile_s': compile_s, 'mesh': mesh,
          'num_classes': exp.num_classes, 'holder': holder, 'model': exp.model, 'real': real,
          'args': (gen_params, real, key)}
  return run, info


def _median_spread(values) -> tuple:
  """(median, (max - min) / median) of a list of timings."""
  values = np.asarray(values, np.float64)
  median = float(np.median(values))
  return median, float((values.max() - values.min()) / median) if median else 0.0


def bench_step(args, classes: int | None = None) -> dict:
  """One full train step (backbone + head + loss + SGD) on random data; donated state.

  --repeats N times `--steps` steps; with --peer torch, the torch peer (in a process of its own,
  idle while ours runs) runs the same number of steps right after each of ours (alternating), and
  the ratio of the medians is printed.
  """
  from synface_jax import startup
  classes = classes or args.classes[0]
  peer = None
  if getattr(args, 'peer', '') == 'torch':
    from synface_jax import peer_process  # The child needs torch: the [bench] extra.
    peer = peer_process.TorchPeer(args.arch, args.batch, args.size, classes, args.width)
  try:
    run, info = _step_runner(args, classes)
    first_step_s = startup.seconds_since_process_start()
    ours, theirs = [], []
    for _ in range(max(1, getattr(args, 'repeats', 1))):
      ours.append(run(args.steps))
      if peer is not None:
        theirs.append(peer.run(args.steps))
  finally:
    if peer is not None:
      peer.close()
  compiled, holder = info['compiled'], info['holder']
  step_s, spread = _median_spread(ours)
  flops = _flops(compiled)
  state, metrics = holder['state'], holder['metrics']
  head_shard = state.params['head'].addressable_shards[0]
  device0 = head_shard.device
  state_bytes = sum(s.data.nbytes for leaf in jax.tree.leaves(state)
                    for s in leaf.addressable_shards if s.device == device0)
  memory = compiled.memory_analysis()
  mesh = info['mesh']
  result = {
      'benchmark': 'step', 'device': str(jax.devices()[0].device_kind), 'devices': jax.device_count(),
      'arch': args.arch, 'width': args.width, 'dtype': args.dtype, 'regime': args.regime,
      'augment_renders': args.augment_renders,
      'batch': args.batch, 'classes': info['num_classes'], 'input_size': list(args.size),
      'compile_s': round(info['compile_s'], 3),
      'time_to_first_step_s': None if first_step_s is None else round(first_step_s, 3),
      'ms_per_step': round(step_s * 1e3, 3), 'images_per_s': round(args.batch / step_s, 2),
      'repeats': len(ours), 'spread': round(spread, 3),
      'ms_per_step_each': [round(v * 1e3, 1) for v in ours],
      'flops_per_step': flops,
      'tflops_per_s': round(flops / step_s / 1e12, 3), 'mesh': dict(mesh.shape),
      'head_shape': list(state.params['head'].shape),
      'head_bytes_per_device': head_shard.data.nbytes, 'state_bytes_per_device': state_bytes,
      'temp_bytes_per_device': getattr(memory, 'temp_size_in_bytes', None),
      'conv_kernel': _conv_kernel_name(), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'loss': float(metrics.compute()['loss'])}
  if peer is not None:
    peer_info = peer.info
    peer_s, peer_spread = _median_spread(theirs)
    result.update({
        'peer': f'torch {peer_info["torch"]} ({peer_info["threads"]} threads)',
        'peer_ms_per_step': round(peer_s * 1e3, 3), 'peer_images_per_s': round(args.batch / peer_s, 2),
        'peer_spread': round(peer_spread, 3), 'peer_ms_per_step_each': [round(v * 1e3, 1) for v in theirs],
        'peer_loss': round(peer_info['loss']['loss'], 4),
        'speed_ratio': round(peer_s / step_s, 3)})  # > 1: ours is faster.
  if args.peak_tflops:
    result['mfu'] = round(flops / step_s / (args.peak_tflops * 1e12 * jax.device_count()), 4)
  if getattr(args, 'profile', ''):  # Last: the traced call consumes the (donated) state.
    from synface_jax import op_profile
    result['op_seconds'] = op_profile.profile(compiled, (holder['state'], *info['args']),
                                              args.profile)
  return result


def _conv_kernel_name() -> str:
  from synface_jax.models import conv
  return conv.active_kernel()


def bench_head(args) -> list:
  """The train step with the head split over all devices, for each class count, and its memory.

  By default the batch is split over all devices ('data') and so is the head (its classes over
  'data' too: mesh.head_on_data), so no device holds more than its share of the head, of its
  momentum, or of the backbone's activations. --model-axis N puts the head on an N-device 'model'
  axis instead (the backbone then runs on each of them, on the whole share of the batch).
  Memory: the process's peak resident size against what the step has to hold -- parameters,
  optimizer state and one batch of the backbone's activations (its saved residuals).
  """
  n = jax.device_count()
  if args.model_axis:
    args.head_on_data = False
  else:
    args.model_axis, args.head_on_data = 1, args.batch % n == 0
    if not args.head_on_data:
      args.model_axis = n
  results = []
  for classes in args.classes:
    result = dict(bench_step(args, classes), benchmark='head')
    result.update(_memory_figures(args, result))
    results.append(result)
  return results


def _activation_bytes(args) -> int:
  """Bytes of the backbone's saved residuals (what the backward pass keeps) for one batch."""
  from synface_jax import experiment
  model = experiment.create_model(_config(args, 1))
  x = jax.ShapeDtypeStruct((args.batch, *args.size, 3), jnp.dtype(args.dtype))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape[1:])[None],
                                                train=False))

  def residuals(params, batch_stats, x):
    apply = lambda p: model.apply({'params': p, 'batch_stats': batch_stats}, x, train=True,
                                  mutable=['batch_stats'])[0]
    return jax.vjp(apply, params)[1]
  shapes = jax.eval_shape(residuals, variables['params'], variables['batch_stats'], x)
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))


def _memory_figures(args, result) -> dict:
  import resource
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == 'darwin' else 1024)
  state = result['state_bytes_per_device'] * jax.device_count()
  activations = _activation_bytes(args)
  return {'peak_rss_bytes': peak, 'state_bytes': state, 'activation_bytes': activations,
          'peak_over_state_and_activations': round(peak / (state + activations), 3)}


def bench_mixup(args) -> dict:
  """Identity mixup (coefficients + soft labels) and domain mixup (images) on their own."""
  from synface_jax import mixup
  from synface_jax.types import SoftLabel
  b, (h, w) = args.batch, args.size
  phi_sampler = mixup.make_sampler('synface')
  psi_sampler = mixup.make_sampler('synface')

  @jax.jit
  def both(key, coeffs, x_syn, x_real):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    ids = jax.random.randint(k1, (b,), 0, coeffs.shape[0])
    partners = mixup.sample_partners(k2, ids, coeffs.shape[0])
    mixed, label = mixup.identity_mixup(coeffs[ids], coeffs[partners], ids, partners,
                                        phi_sampler(k3, (b,)))
    real_label = SoftLabel.one_hot(jnp.zeros((b,), jnp.int32))
    x, label = mixup.domain_mixup(x_syn, label, x_real, real_label, psi_sampler(k4, ()))
    return mixed, x, label

  rng = np.random.default_rng(0)
  coeffs = jnp.asarray(rng.normal(size=(10_000, 160)), jnp.float32)
  x_syn = jnp.asarray(rng.uniform(-1, 1, (b, h, w, 3)), jnp.float32)
  x_real = jnp.asarray(rng.uniform(-1, 1, (b, h, w, 3)), jnp.float32)
  _, compile_s, step_s = _time(both, (jax.random.key(0), coeffs, x_syn, x_real), args.steps)
  return {'benchmark': 'mixup', 'device': str(jax.devices()[0].device_kind), 'batch': b,
          'input_size': [h, w], 'compile_s': round(compile_s, 3),
          'ms_per_batch': round(step_s * 1e3, 3), 'images_per_s': round(b / step_s, 1)}


def bench_generate(args) -> dict:
  """Identity sampling + rendering of aligned faces, as the train step does it."""
  from synface_jax import generators, mixup
  from synface_jax.generators import sampling
  generator = generators.get_generator(_generator_config(args))
  params = generator.init(jax.random.key(0))
  phi = mixup.make_sampler('synface') if args.im else None
  options = _render_augment(args)
  fn = jax.jit(lambda key: sampling.synthetic_batch(generator, params, key, args.batch,
                                                 args.classes[0], 0, phi, draw_seed=0,
                                                 augment_options=options))
  _, compile_s, step_s = _time(fn, (jax.random.key(1),), args.steps)
  return {'benchmark': 'generate', 'generator': args.generator,
          'device': str(jax.devices()[0].device_kind), 'batch': args.batch,
          'input_size': list(args.size), 'identity_mixup': args.im,
          'augment_renders': args.augment_renders, 'compile_s': round(compile_s, 3),
          'ms_per_batch': round(step_s * 1e3, 3), 'images_per_s': round(args.batch / step_s, 1)}


def bench_input(args) -> dict:
  """The real-data pipeline alone: decoded + augmented images per second on this host.

  Prepares --data as the training loop does (the first run builds the TFDS dataset; that time is
  not counted), then times --batches batches of --batch images with SynFace's augmentations.
  """
  from synface_jax import config as config_lib, data, sharding
  c = config_lib.base_config()
  c.real.path = args.data
  c.real.data_dir = args.data_dir
  c.model.input_size = tuple(args.size)
  c.optim.batch_size = args.batch
  c.real.zoom_crop = c.real.random_erasing = 0.5 if args.augment else 0.0
  c.real.flip = args.augment
  t0 = time.perf_counter()
  real = data.real_dataset(c, sharding.make_mesh(-1, 1))
  prepare_s = time.perf_counter() - t0
  batches = real.iterator(0)
  t0 = time.perf_counter()
  jax.block_until_ready(next(batches))
  first_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(args.batches):
    batch = next(batches)
  jax.block_until_ready(batch)
  run_s = time.perf_counter() - t0
  batches.close()
  per_host = args.batch // jax.process_count()
  return {'benchmark': 'input', 'data': args.data, 'kind': real.kind,
          'images': real.num_images, 'classes': real.num_classes, 'batch': args.batch,
          'input_size': list(args.size), 'augment': args.augment, 'hosts': jax.process_count(),
          'cpus': os.cpu_count(), 'prepare_s': round(prepare_s, 3),
          'first_batch_s': round(first_s, 3), 'ms_per_batch': round(run_s / args.batches * 1e3, 3),
          'images_per_s_per_host': round(per_host * args.batches / run_s, 1)}


def bench_search(args):
  """Exact 1:N search (top 5) of --probes random unit embeddings against a --gallery of them."""
  from synface_jax.eval import identification
  rng = np.random.default_rng(0)
  gallery = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
  probes = rng.standard_normal((args.probes, args.dim), dtype=np.float32)
  kwargs = dict(probe_chunk=args.probe_chunk, gallery_chunk=args.gallery_chunk)
  t0 = time.perf_counter()  # Compiles, on a gallery of the same shape and one probe chunk.
  identification.search(probes[:args.probe_chunk], gallery, 5, **kwargs)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  scores, _ = identification.search(probes, gallery, 5, **kwargs)
  run_s = time.perf_counter() - t0
  return {'benchmark': 'search', 'gallery': args.gallery, 'probes': args.probes, 'dim': args.dim,
          'k': 5, 'probe_chunk': args.probe_chunk, 'gallery_chunk': args.gallery_chunk,
          'backend': jax.default_backend(), 'devices': 1, 'first_call_s': round(compile_s, 3),
          'search_s': round(run_s, 3), 'probes_per_s': round(args.probes / run_s, 1),
          'tflops': round(2 * args.probes * args.gallery * args.dim / run_s / 1e12, 3),
          'mean_top1': round(float(scores[:, 0].mean()), 4)}


def _ints(text: str):
  return [int(v) for v in text.split(',')]


def _simulate_devices(n: int, argv) -> None:
  """On CPU, re-runs this command with n simulated devices when fewer are visible."""
  if n and jax.default_backend() == 'cpu' and jax.device_count() < n:
    flags = os.environ.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={n}'
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    args = [sys.executable, '-m', 'synface_jax.benchmark', *(sys.argv[1:] if argv is None else argv)]
    os.execve(sys.executable, args, env)


def main(argv=None):
  parser = cli.parser('synface_jax.benchmark', __doc__)
  parser.add_argument('what', choices=('step', 'mixup', 'generate', 'head', 'input', 'search'))
  parser.add_argument('--arch', default='r18')
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--size', type=cli.size, default=(112, 112), help='HxW, e.g. 112x96')
  parser.add_argument('--classes', type=_ints, default=[10_000],
                      help='identities per domain; head: a comma list, e.g. 100000,1000000')
  parser.add_argument('--regime', default='real', choices=('real', 'synthetic', 'mixed'))
  parser.add_argument('--generator', default='procedural')
  parser.add_argument('--generator-checkpoint', default='',
                      help='converted DiscoFaceGAN weights (default: random small network)')
  parser.add_argument('--im', action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument('--augment-renders', action=argparse.BooleanOptionalAction, default=False,
                      help='step, generate: every augmentation of the renders on (as configs/demo.py)')
  parser.add_argument('--dm', action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument('--model-axis', type=int, default=0,
                      help="devices on the mesh's 'model' axis (head: default all, else 1)")
  parser.add_argument('--devices', type=int, default=0,
                      help='on CPU, simulate this many devices (re-runs the command)')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=3,
                      help='step: timed runs of --steps steps each; median and spread are printed')
  parser.add_argument('--profile', default='',
                      help='step: trace one more step into this folder and print the op time by '
                           'kind (convolutions forward / input / kernel gradient, elementwise, ...)')
  parser.add_argument('--peer', default='', choices=('', 'torch'),
                      help='step: also time the same step in PyTorch (insightface layout), '
                           'alternating with ours, and print the ratio (needs the [bench] extra)')
  parser.add_argument('--peak-tflops', type=float, default=0.0,
                      help='per-device peak, for MFU (H100 SXM bf16 dense: 989)')
  parser.add_argument('--data', default='', help='input: a real data path (see synface_jax.data)')
  parser.add_argument('--data-dir', default='', help="input: TFDS data dir (default TFDS's)")
  parser.add_argument('--batches', type=int, default=50, help='input: batches timed')
  parser.add_argument('--augment', action=argparse.BooleanOptionalAction, default=True,
                      help="input: SynFace's flip, zoom-crop (p 0.5) and random erasing (p 0.5)")
  parser.add_argument('--gallery', type=int, default=100_000, help='search: gallery size')
  parser.add_argument('--probes', type=int, default=10_000, help='search: probes')
  parser.add_argument('--dim', type=int, default=512, help='search: embedding size')
  parser.add_argument('--probe-chunk', type=int, default=1024, help='search: probes per call')
  parser.add_argument('--gallery-chunk', type=int, default=8192, help='search: gallery rows per step')
  args = parser.parse_args(argv)
  if args.what == 'input' and not args.data:
    parser.error('input needs --data PATH')
  _simulate_devices(args.devices, argv)
  if args.what != 'head':
    args.model_axis = args.model_axis or 1
  run = {'step': bench_step, 'mixup': bench_mixup, 'generate': bench_generate, 'head': bench_head,
         'input': bench_input, 'search': bench_search}
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  files = ' and '.join(f for f in (args.data if args.what == 'input' else '',
                                   args.generator_checkpoint) if f)
  try:
    with file_errors.reading(files) if files else contextlib.nullcontext():
      results = run[args.what](args)
  except (OSError, ValueError) as e:  # Bad --data or --generator-checkpoint, a wrong option.
    cli.fail(str(e))
  for result in results if isinstance(results, list) else [results]:
    for k, v in result.items():
      print(f'{k:>24}: {v}')
    print(json.dumps(result), flush=True)
  if args.what == 'head':
    for r in results:
      print(f"head {r['classes']:,} classes on {r['devices']} devices: peak resident "
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB = {r['peak_over_state_and_activations']}x "
            f"(parameters + optimizer state {r['state_bytes'] / 2**30:.2f} GiB + one batch of "
            f"activations {r['activation_bytes'] / 2**30:.2f} GiB)", flush=True)
  return results


if __name__ == '__main__':
  main()
