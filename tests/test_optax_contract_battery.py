"""optax's own contract battery for contributed optimizers, run on ours.

The battery (``optax/contrib/_common_test.py``) ships inside the installed optax
package. It is read from there at test time, with its list of optimizers
replaced by ours and its factory lookup pointed at ``optax_muon``; every test
in it then runs unchanged: convergence on a parabola, Rosenbrock, a matrix
target and a mixed target over 30k steps, extra arguments and no recompilation,
``inject_hyperparams``, dtype preservation, ``MultiSteps``, state dtype/shape
stability under ``lax.cond``, and learning-rate schedules.
"""

import ast
import importlib.util

import optax_muon

# optax's battery settings for our aliases: lr 1e-2 and no weight decay (the battery checks
# convergence to each target's optimum, which a decay moves: Muown at its default AdamW-leaves
# decay of 0.1 ends Rosenbrock at y = 0.940, on the edge of the battery's tolerance); Muon++
# with a weight radius the targets fit in.
OURS = (
    {"opt_name": "muon", "opt_kwargs": {"learning_rate": 1e-2, "weight_decay": 0.0}},
    {"opt_name": "muon_plus_plus", "opt_kwargs": {"learning_rate": 1e-2, "weight_radius": 10.0,
                                                  "adam_weight_decay": 0.0}},
    {"opt_name": "muown", "opt_kwargs": {"learning_rate": 1e-2, "adam_weight_decay": 0.0}},
    {"opt_name": "normuon", "opt_kwargs": {"learning_rate": 1e-2, "weight_decay": 0.0}},
)
_LISTS = ("_MAIN_OPTIMIZERS_UNDER_TEST", "_ALL_OPTIMIZERS_UNDER_TEST",
          "_OTHER_OPTIMIZERS_UNDER_TEST", "_BASE_OPTIMIZERS")


def _battery_with_our_optimizers() -> dict:
  origin = importlib.util.find_spec("optax.contrib._common_test").origin
  with open(origin) as f:
    tree = ast.parse(f.read(), origin)

  def names(node):
    targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
    return {t.id for t in targets if isinstance(t, ast.Name)}

  body = []
  for node in tree.body:
    if isinstance(node, (ast.Assign, ast.AugAssign)) and names(node) & set(_LISTS):
      continue  # optax's own optimizer lists
    if isinstance(node, ast.For) and isinstance(node.iter, ast.Name) and node.iter.id in _LISTS:
      continue
    if isinstance(node, ast.If):  # `if __name__ == '__main__': absltest.main()`
      continue
    if isinstance(node, ast.FunctionDef) and node.name == "_get_opt_factory":
      node = ast.parse("def _get_opt_factory(opt_name):\n"
                       "  return getattr(optax_muon, opt_name)\n").body[0]
    if isinstance(node, ast.ClassDef):
      body.extend(ast.parse(
          "_MAIN_OPTIMIZERS_UNDER_TEST = tuple(dict(o, wrapper_name=None, wrapper_kwargs=None)"
          " for o in OURS)\n"
          "_ALL_OPTIMIZERS_UNDER_TEST = _MAIN_OPTIMIZERS_UNDER_TEST\n").body)
    body.append(node)
  tree.body = body
  namespace = {"__name__": "optax_contract_battery", "OURS": OURS, "optax_muon": optax_muon}
  exec(compile(ast.fix_missing_locations(tree), origin, "exec"), namespace)  # pylint: disable=exec-used
  return namespace


_BATTERY = _battery_with_our_optimizers()
ContribTest = _BATTERY["ContribTest"]


def test_the_battery_runs_our_optimizers_only():
  listed = {o["opt_name"] for o in _BATTERY["_ALL_OPTIMIZERS_UNDER_TEST"]}
  assert listed == {"muon", "muon_plus_plus", "muown", "normuon"}
  assert _BATTERY["_get_opt_factory"]("muon") is optax_muon.muon
  tests = [n for n in dir(ContribTest) if n.startswith("test")]
  assert len(tests) >= 40, tests  # 11 per optimizer in optax 0.2.8
