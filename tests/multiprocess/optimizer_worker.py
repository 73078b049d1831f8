"""One process of a multi-process optimizer run (launched by tests/test_multiprocess.py).

Every process builds the same parameters and gradients from a seed, places its
share on a global FSDP mesh over all processes' CPU devices, takes a few
jitted optimizer steps and process 0 writes the final parameters. Run alone
with ``--num_processes 1 --devices 4`` it is the single-process reference.
"""

import argparse


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--process_id", type=int, default=0)
  p.add_argument("--num_processes", type=int, default=1)
  p.add_argument("--devices", type=int, default=4, help="CPU devices per process")
  p.add_argument("--port", type=int, default=0)
  p.add_argument("--optimizer", default="muon")
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--out", required=True)
  args = p.parse_args()

  import jax
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", args.devices)
  if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{args.port}", args.num_processes, args.process_id)

  import numpy as np
  import optax
  from jax.experimental import multihost_utils
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

  import optax_muon as om

  n = len(jax.devices())
  mesh = jax.make_mesh((n,), ("fsdp",), axis_types=(AxisType.Auto,))
  rng = np.random.default_rng(0)
  shapes = {"embed": (32, 24), "q": (3, 24, 24), "up": (3, 24, 36), "down": (3, 36, 24),
            "w": (24, 40), "scale": (24,)}
  host = {k: (0.3 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}

  def spec(shape):
    if len(shape) >= 2 and shape[-2] % n == 0:
      return P(*([None] * (len(shape) - 2)), "fsdp", None)
    return P()

  shardings = {k: NamedSharding(mesh, spec(v.shape)) for k, v in host.items()}
  to_global = lambda tree: {k: jax.make_array_from_callback(v.shape, shardings[k],
                                                            lambda idx, v=v: v[idx])
                            for k, v in tree.items()}
  tx = {"muon": om.muon, "muon_plus_plus": om.muon_plus_plus, "muown": om.muown}[args.optimizer](0.02)
  params = to_global(host)
  with jax.set_mesh(mesh):
    state = om.init_sharded(tx, params, shardings)
    state_sh = jax.tree.map(lambda x: x.sharding, state)

    @jax.jit
    def step(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    step = jax.jit(step, in_shardings=(shardings, state_sh, shardings),
                   out_shardings=(shardings, state_sh), donate_argnums=(0, 1))
    for t in range(args.steps):
      g_rng = np.random.default_rng(100 + t)
      grads = to_global({k: g_rng.standard_normal(v.shape).astype(np.float32)
                         for k, v in host.items()})
      params, state = step(params, state, grads)
  final = multihost_utils.process_allgather(params, tiled=True)
  if jax.process_index() == 0:
    np.savez(args.out, **{k: np.asarray(v) for k, v in final.items()},
             **{f"initial_{k}": v for k, v in host.items()})


if __name__ == "__main__":
  main()
