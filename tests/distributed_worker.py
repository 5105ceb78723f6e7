"""One process of a multi-process CPU run: a few train steps on a global 8-device mesh.

    python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz

With NUM_PROCESSES = 1 the process has all 8 (simulated) devices itself.

Gloo sets up its CPU collectives at the first computation that needs them and gives the other
process 30 s to get there (not configurable). On a loaded machine one process can compile the step
far later than the other, so each process compiles the step ahead of time and both wait at a
barrier of the coordination service (its timeout is ours) before running it.
"""
import os
import sys

process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={8 // num_processes}'

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax._src import distributed  # noqa: E402  (its client holds the barrier; no public handle)

if num_processes > 1:
  jax.distributed.initialize(f'localhost:{port}', num_processes, process_id)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # The repo.
from synface_jax import sharding  # noqa: E402
from conftest import BATCH, real_batch, tiny_config, tiny_experiment  # noqa: E402



def barrier(name):
  if num_processes > 1:
    distributed.global_state.client.wait_at_barrier(name, timeout_in_ms=600_000)


def global_batch(i):
  batch = real_batch(i)  # This process feeds its own rows of the global batch.
  local = {k: v[process_id * per_process:(process_id + 1) * per_process] for k, v in batch.items()}
  return sharding.host_local_to_global(local, mesh)


assert jax.device_count() == 8, jax.devices()
exp = tiny_experiment(tiny_config(), (4, 2))
mesh, per_process = exp.mesh, BATCH // num_processes
barrier('built')
state = exp.init_state()
step = exp.step.lower(state, exp.gen_params, global_batch(0), exp.key('step')).compile()
barrier('compiled')
losses = []
for i in range(3):
  state, metrics = step(state, exp.gen_params, global_batch(i), exp.key('step'))
  losses.append(float(metrics.compute()['loss']))
# Every process reads back the whole (replicated) backbone and its own rows of the head.
head = {str(s.index): np.asarray(s.data) for s in state.params['head'].addressable_shards}
fc = np.asarray(jax.device_get(state.params['backbone']['fc']['kernel']))
np.savez(out, losses=np.array(losses), fc=fc, **{f'head{k}': v for k, v in head.items()})
print('done', losses)
