"""Writes the notebooks (without outputs): `python notebooks/_build.py`.

Each notebook opens with a Colab badge and an install cell that pip-installs the
package from GitHub only when `optax_muon` cannot be imported (locally: no-op).
"""

import os

import nbformat

ORG = "optax-muon"
HERE = os.path.dirname(os.path.abspath(__file__))


def badge(name: str) -> str:
  url = f"https://colab.research.google.com/github/{ORG}/optax_muon/blob/main/notebooks/{name}"
  return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})")


INSTALL = f"""\
# Colab: clone the repository (the library plus its `models` and `train` code) and install
# the library with the trainer's extras. From a checkout (run.sh, CI) this does nothing.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("models") is None:
  if not os.path.isdir("optax_muon"):
    subprocess.check_call(["git", "clone", "-q", "https://github.com/{ORG}/optax_muon"])
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", "optax_muon[train]"])
  sys.path.insert(0, os.path.abspath("optax_muon"))"""

SETUP = """\
import flax
flax.config.update("flax_always_shard_variable", False)  # no mesh needed for this demo
import glob, os, sysconfig, time
import jax, jax.numpy as jnp, numpy as np, optax
import matplotlib.pyplot as plt
from flax import nnx
import optax_muon, models
print("jax", jax.__version__, "| devices", jax.devices())"""

DATA = """\
# The built-in corpus: bytes of the Python standard library's source (offline, any machine).
files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
corpus = np.frombuffer(b"".join(open(f, "rb").read() for f in files), np.uint8)
split = int(0.98 * len(corpus))
train_bytes, eval_bytes = corpus[:split], corpus[split:]
print(f"{len(files)} files, {len(corpus) / 1e6:.1f} MB")

def batches(data, batch_size, length, seed):
  \"\"\"Random windows of `length + 1` bytes (inputs and next-byte targets).\"\"\"
  rng = np.random.default_rng(seed)
  while True:
    idx = rng.integers(0, len(data) - length - 1, batch_size)
    yield jnp.asarray(np.stack([data[i:i + length + 1] for i in idx]).astype(np.int32))

EVAL = [next(batches(eval_bytes, 16, 64, seed=123)) for _ in range(4)]  # fixed eval set"""

LOSS = """\
def loss_fn(model, tokens):
  logits, _ = model(tokens[:, :-1])  # the model returns (logits, aux)
  return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

@nnx.jit
def train_step(model, optimizer, tokens):
  loss, grads = nnx.value_and_grad(loss_fn)(model, tokens)
  optimizer.update(model, grads)
  return loss

@nnx.jit
def eval_loss(model, tokens):
  return loss_fn(model, tokens)"""


def md(s):
  return nbformat.v4.new_markdown_cell(s)


def code(s):
  return nbformat.v4.new_code_cell(s)


def quickstart():
  name = "01_quickstart.ipynb"
  return name, [
      md(f"""{badge(name)}

# optax_muon quickstart: Muon on a Flax NNX transformer

Train the repo's byte-level decoder-only transformer (`models.Transformer`) with
`optax_muon.muon` through `nnx.Optimizer`, in a few cells, on CPU in about a minute. Then:
which optimizer to pick and what its learning rate means (the *scale convention*)."""),
      code(INSTALL),
      code(SETUP),
      md("## Data\nBytes of the Python standard library's source: a corpus every Python install "
         "has, so nothing is downloaded."),
      code(DATA),
      md("""## Model and optimizer

`optax_muon.muon` applies Muon (momentum → Newton–Schulz orthogonalization → scale) to the
hidden matrices and AdamW to everything else. Which leaves are matrices: every rank ≥ 2 leaf
whose path does not name an embedding, the LM head, a norm or a bias
(`optax_muon.default_matrix_rule`, which reads paths with `optax_muon.path_kind`), over its
last two axes `(fan_in, fan_out)`."""),
      code("""\
cfg = models.get_config("tiny", d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=192)
model = models.Transformer(cfg, rngs=nnx.Rngs(0))
tx = optax_muon.muon(learning_rate=6e-3)
optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

for path, x in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(model, nnx.Param))):
  name = optax_muon.path_to_str(path)
  d = optax_muon.default_matrix_rule(name, x)
  print(f"{name:32s} {optax_muon.path_kind(name):9s} -> "
        f"{'AdamW' if d is None else f'Muon, fan_in axis {d.reduction_axis}'}")"""),
      md("## Train"),
      code(LOSS),
      code("""\
STEPS = 120
data = batches(train_bytes, 16, 64, seed=0)
losses, t0 = [], time.perf_counter()
for step in range(1, STEPS + 1):
  losses.append(float(train_step(model, optimizer, next(data))))
  if step % 30 == 0:
    ev = np.mean([float(eval_loss(model, b)) for b in EVAL])
    print(f"step {step:4d}  train {losses[-1]:.3f}  eval {ev:.3f}  ({time.perf_counter() - t0:.0f}s)")
plt.figure(figsize=(6, 3)); plt.plot(losses); plt.xlabel("step"); plt.ylabel("loss (nats/byte)")
plt.grid(alpha=0.3); plt.show()"""),
      md("""## Which optimizer, which learning rate

| optimizer | use it when | learning rate means |
|---|---|---|
| `optax_muon.muon(lr)` | the default: Moonlight's recipe (Nesterov, NS×5, weight decay 0.1) | AdamW-like: update RMS is `0.2·lr` per matrix (`scale="moonlight"`), so an AdamW lr (3e-4…1e-2) transfers |
| `optax_muon.muon(lr, scale="jordan")` | matching Keller Jordan's / PyTorch's Muon | spectral-ish: `‖ΔW‖₂ ≈ lr·sqrt(max(1, fan_out/fan_in))`, lr ≈ 0.02 |
| `optax_muon.muon_plus_plus(lr)` | long runs where weight norms drift; μP width transfer | μP units: `‖ΔW‖₂ = lr·sqrt(fan_out/fan_in)` exactly; `‖W‖₂` kept ≤ `weight_radius·sqrt(fan_out/fan_in)` |
| `optax_muon.muown(lr)` | Muon with per-neuron magnitudes learned by Adam | as `muon` (direction step RMS `0.2·lr`); magnitudes move ≤ lr per step |

Non-matrix leaves always get AdamW at the same lr (override with `adam_learning_rate=`).
The cell below measures the update of one step on one matrix under each convention."""),
      code("""\
w = {"layer": {"kernel": jnp.zeros((64, 256))}}  # [fan_in, fan_out]
g = {"layer": {"kernel": jax.random.normal(jax.random.key(0), (64, 256))}}
cases = {
    "muon (moonlight, lr 6e-3)": optax_muon.muon(6e-3, weight_decay=0.0),
    "muon scale='jordan' (lr 0.02)": optax_muon.muon(0.02, scale="jordan", weight_decay=0.0),
    "muon_plus_plus (lr 0.02)": optax_muon.muon_plus_plus(0.02),
    "muown (lr 6e-3)": optax_muon.muown(6e-3),
}
for name, t in cases.items():
  u, _ = t.update(g, t.init(w), w)
  u = u["layer"]["kernel"]
  print(f"{name:32s} RMS {float(jnp.sqrt(jnp.mean(u ** 2))):.2e}   "
        f"‖ΔW‖₂ {float(jnp.linalg.norm(u, 2)):.3f}")
print("sqrt(fan_out/fan_in) =", np.sqrt(256 / 64))"""),
      md("""Muon's first-step update on a zero matrix: RMS ≈ 0.2·lr (times the Newton–Schulz
band), Muon++'s spectral norm is exactly `lr·sqrt(256/64)`. Next: `02_compare_optimizers`
(AdamW vs the Muon family) and `03_spectral_diagnostics` (why Newton–Schulz sometimes
fails, and how to pick its schedule)."""),
  ]


def compare():
  name = "02_compare_optimizers.ipynb"
  return name, [
      md(f"""{badge(name)}

# AdamW vs Muon vs Muon++ vs Muown

A small version of `benchmarks/headline.py`: the same tiny byte-level transformer and data
stream trained with each optimizer for the same number of steps; eval loss against steps
and against wall-clock time, and the largest weight spectral norm over the hidden matrices.
Defaults are sized for a 2-core CPU (about a minute per optimizer); raise `STEPS`, the
model size or the batch for a clearer picture (the benchmark's numbers are in
`benchmarks/results/headline.md`)."""),
      code(INSTALL),
      code(SETUP),
      code(DATA),
      code(LOSS),
      code("""\
STEPS, EVAL_EVERY, BATCH, LENGTH = 80, 20, 16, 64
cfg = models.get_config("tiny", d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=192)

def cosine(peak):
  return optax.warmup_cosine_decay_schedule(0.0, peak, STEPS // 10, STEPS, peak * 0.1)

OPTIMIZERS = {  # learning rates from the benchmark's sweeps at this size
    "AdamW": lambda: optax.adamw(cosine(3e-2), b1=0.9, b2=0.95, weight_decay=0.1),
    "Muon": lambda: optax_muon.muon(cosine(4.8e-2)),
    "Muon++": lambda: optax_muon.muon_plus_plus(cosine(8e-2), adam_learning_rate=cosine(1.2e-2)),
    "Muown": lambda: optax_muon.muown(cosine(4.8e-2)),
}

def hidden_spectral_norm(model):
  norms = []
  for path, x in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(model, nnx.Param))):
    if optax_muon.path_family(optax_muon.path_to_str(path)) in ("attn", "mlp"):
      norms.append(float(np.linalg.norm(np.asarray(x), 2)))  # host SVD: small matrices
  return max(norms)

history = {}
for name, make in OPTIMIZERS.items():
  model = models.Transformer(cfg, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, make(), wrt=nnx.Param)
  data = batches(train_bytes, BATCH, LENGTH, seed=0)  # same stream for everyone
  train_step(model, optimizer, next(data))  # compile (not timed)
  h = history[name] = {"step": [], "eval": [], "time": [], "spec": []}
  clock = 0.0
  for step in range(2, STEPS + 1):
    t0 = time.perf_counter()
    jax.block_until_ready(train_step(model, optimizer, next(data)))
    clock += time.perf_counter() - t0
    if step % EVAL_EVERY == 0 or step == STEPS:
      h["step"].append(step); h["time"].append(clock)
      h["eval"].append(np.mean([float(eval_loss(model, b)) for b in EVAL]))
      h["spec"].append(hidden_spectral_norm(model))
  print(f"{name:7s} final eval {h['eval'][-1]:.3f}  train time {clock:.1f}s  "
        f"max ‖W‖₂ {h['spec'][-1]:.2f}")"""),
      code("""\
fig, ax = plt.subplots(1, 3, figsize=(15, 4))
for name, h in history.items():
  ax[0].plot(h["step"], h["eval"], "o-", label=name)
  ax[1].plot(h["time"], h["eval"], "o-", label=name)
  ax[2].plot(h["step"], h["spec"], "o-", label=name)
target = history["AdamW"]["eval"][-1]
for a, xl, yl in ((ax[0], "step", "eval loss"), (ax[1], "train time (s)", "eval loss"),
                  (ax[2], "step", "max hidden ‖W‖₂")):
  a.set_xlabel(xl); a.set_ylabel(yl); a.grid(alpha=0.3); a.legend()
ax[0].axhline(target, color="gray", ls=":"); ax[1].axhline(target, color="gray", ls=":")
plt.tight_layout(); plt.show()

for name, h in history.items():  # first eval at or below AdamW's final eval loss
  hit = [s for s, e in zip(h["step"], h["eval"]) if e <= target]
  print(f"{name:7s} reaches AdamW's final eval loss {target:.3f} at step "
        f"{hit[0] if hit else '—'} of {STEPS}")"""),
      md("""With so few steps the ranking is noisy; `benchmarks/headline.py --family --wd` runs the full
protocol (bracketed lr sweeps, 2 seeds, weight decay 0-0.4); `benchmarks/transfer.py` adds
widths and the 3,000-step spectral norms that Muon++ bounds."""),
  ]


def diagnostics_nb():
  name = "03_spectral_diagnostics.ipynb"
  return name, [
      md(f"""{badge(name)}

# Spectral diagnostics: when Newton–Schulz fails, and how to choose its schedule

Newton–Schulz (NS) maps each singular value of the *normalized* momentum `X/‖X‖_F` through
a fixed odd polynomial `f`. Directions whose normalized singular value lies below the
schedule's **failure threshold** (`f(σ) < 0.5`) are not orthogonalized: Muon then
under-updates them. Normalized singular values shrink as matrices get wider, so a schedule
that works for a small model can fail on a big one. This notebook:

1. plots `f` for the built-in schedules and lists their failure thresholds;
2. measures the momentum spectrum of a small model's hidden matrices (`optax_muon.diagnostics`);
3. decomposes weight spectral norms into row-magnitude × row-coherence (Muown's view);
4. fits how the median singular value scales with model size and asks
   `recommend_ns_schedule` for a per-layer NS recipe at a larger target size."""),
      code(INSTALL),
      code(SETUP + "\nfrom optax_muon import diagnostics as omd"),
      md("## 1. What NS does to normalized singular values"),
      code("""\
sigma = np.logspace(-4, 0, 400)
SCHEDULES = [("jordan", 5), ("nanogpt5", 5), ("polar_express", 5), ("polar_express", 8)]
plt.figure(figsize=(7, 4))
for sched, steps in SCHEDULES:
  plt.semilogx(sigma, optax_muon.ns_scalar_map(sigma, sched, steps), label=f"{sched} x{steps}")
plt.axhline(0.5, color="gray", ls=":"); plt.xlabel("normalized σ (σ / ‖X‖_F)"); plt.ylabel("f(σ)")
plt.legend(); plt.grid(alpha=0.3); plt.show()
for sched, steps in SCHEDULES:
  thr = {lv: optax_muon.ns_failure_threshold(sched, steps, lv) for lv in (0.1, 0.5, 0.9)}
  print(f"{sched:14s} x{steps}: " + "  ".join(f"f={lv}: σ>{t:.1e}" for lv, t in thr.items()))"""),
      md("## 2. Momentum spectra of a small model\n"
         "Train two widths briefly with Muon, then take the NS input of each hidden matrix "
         "(`G + μM`, Nesterov) from a fresh gradient and the optimizer's momentum."),
      code(DATA),
      code(LOSS),
      code("""\
WIDTHS, STEPS, BETA = (32, 64), 40, 0.95

def matrices(tree):
  \"\"\"{'layers/0/attn/q/kernel': array} for the hidden matrices of a param-shaped tree.\"\"\"
  out = {}
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    name = optax_muon.path_to_str(path)
    if optax_muon.path_family(name) in ("attn", "mlp"):
      out[name] = x
  return out

def momentum_of(opt_state):
  # The Muon momentum buffers, keyed like `matrices`: inside the optimizer they are stacks
  # of same-shaped matrices (`optax_muon.matrices.MatrixStacks`); `by_path` gives them back per parameter.
  is_momentum = lambda x: isinstance(x, optax_muon.MomentumState)
  out = {}
  for state in jax.tree.leaves(opt_state, is_leaf=is_momentum):
    if is_momentum(state):
      out.update(state.mu.by_path())
  return out

runs = {}
for d in WIDTHS:
  cfg = models.get_config("tiny", d_model=d, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=3 * d)
  model = models.Transformer(cfg, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax_muon.muon(6e-3), wrt=nnx.Param)
  data = batches(train_bytes, 16, 64, seed=0)
  for _ in range(STEPS):
    train_step(model, optimizer, next(data))
  grads = nnx.grad(loss_fn)(model, next(data))
  params = matrices(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  g = matrices(nnx.to_pure_dict(grads))
  mom = momentum_of(optimizer.opt_state)
  ns_input = {p: g[p] + BETA * mom.get(p, 0.0) for p in g}  # Nesterov input of sum-form momentum
  stats = {p: jax.device_get(omd.momentum_spectrum(x)) for p, x in ns_input.items()}
  n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  runs[d] = {"params": params, "stats": stats, "n_params": n_params,
             "groups": omd.group_stats(stats, buckets=2), "momentum_found": len(mom)}
  print(f"d_model {d}: {n_params / 1e3:.0f}k params, {len(g)} matrices "
        f"(momentum found for {len(mom)})")

d = WIDTHS[-1]
print(f"\\nd_model {d}: per-matrix NS-input spectrum (Jordan x5; frac_below = share of σ under "
      f"its f=0.5 threshold {optax_muon.ns_failure_threshold('jordan', 5, 0.5):.1e})")
print(f"{'matrix':28s} {'σ q50':>9s} {'σ q10':>9s} {'SVD entropy':>12s} {'frac_below':>10s}")
for p, st in runs[d]["stats"].items():
  print(f"{p:28s} {st['sigma_q50'][0]:9.2e} {st['sigma_q10'][0]:9.2e} "
        f"{st['svd_entropy'][0]:12.3f} {st['frac_below'][0]:10.3f}")"""),
      md("## 3. Weight spectral norm = row magnitude × row coherence\n"
         "`‖W‖₂ = max(r)·sqrt(λ_max(PCP))` with `r` the per-output-neuron norms "
         "(docs/algorithms.md, \"Spectral diagnostics\"). Muon without weight decay lets `max(r)` drift; Muown "
         "controls it directly, Muon++ bounds `‖W‖₂` itself."),
      code("""\
print(f"{'matrix':28s} {'‖W‖₂':>8s} {'max r':>8s} {'coherence':>10s}")
for p, w in runs[WIDTHS[-1]]["params"].items():
  norm, _ = omd.weight_spectral_norm(w, exact=True)
  rf = omd.row_factors(w)
  print(f"{p:28s} {float(norm[0]):8.3f} {float(rf['row_magnitude'][0]):8.3f} "
        f"{float(rf['row_coherence'][0]):10.3f}")"""),
      md("## 4. A per-layer NS recipe for a bigger model\n"
         "Fit `median σ = A·M^(−α)` per layer group across the measured sizes and pick, per "
         "group, the cheapest NS candidate whose failure threshold stays below the predicted "
         "median at the target size. (Two tiny sizes and one gradient make a rough fit; the "
         "trainer logs these statistics over real runs with `--config.diagnostics.every=N`.)"),
      code("""\
sizes = [runs[d]["n_params"] for d in WIDTHS]
groups = sorted(set.intersection(*(set(runs[d]["groups"]) for d in WIDTHS)))
medians = {g: [runs[d]["groups"][g]["sigma_q50"] for d in WIDTHS] for g in groups}
fits = omd.fit_spectral_power_law(sizes, medians)
for g, f in fits.items():
  print(f"{g:8s} median σ ≈ {f.prefactor:.3g}·M^-{f.alpha:.3f}")
TARGET = 1e9
recipe = omd.recommend_ns_schedule(sizes, medians, TARGET, n_layers=24, buckets=2)
for g, r in recipe.groups.items():
  print(f"{g:8s} predicted median {r['predicted_median']:.1e} -> {r['schedule']} x{r['steps']} "
        f"(threshold {r['threshold']:.1e}, ok={r['ok']})")
tx = optax_muon.muon(3e-3, ns_schedule=recipe.ns_schedule, ns_steps=recipe.ns_steps)
print(f"\\n{len(recipe.ns_schedule)} per-leaf rules for the aliases' ns_schedule/ns_steps, e.g.")
for rx in list(recipe.ns_schedule)[:2]:
  print(f"  {rx}: {recipe.ns_schedule[rx]} x{recipe.ns_steps[rx]}")"""),
  ]


OWN_INSTALL = """\
# Colab: Equinox and Haiku are not preinstalled; from a checkout (CI) they are (dev extra).
import importlib.util, subprocess, sys
for module, package in (("equinox", "equinox"), ("haiku", "dm-haiku")):
  if importlib.util.find_spec(module) is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", package])"""


def own_model():
  name = "04_muon_in_your_own_model.ipynb"
  return name, [
      md(f"""{badge(name)}

# Muon in your own model: Equinox and Haiku

Muon orthogonalizes *matrices*, so it has to know, for every parameter, which axes are the
matrix's input (`fan_in`) and output (`fan_out`) and which leaves are not matrices at all
(embeddings, heads, norms, biases go to AdamW). `optax_muon.describe(params, tx)` prints that
plan before you train. This notebook trains an Equinox MLP and a Haiku MLP with Muon against
AdamW on a small synthetic task, on CPU in well under a minute."""),
      code(INSTALL),
      code(OWN_INSTALL),
      code("""\
import time
import jax, jax.numpy as jnp, numpy as np, optax
import equinox as eqx, haiku as hk
import matplotlib.pyplot as plt
import optax_muon
print("jax", jax.__version__, "| devices", jax.devices())"""),
      md("## Data\nA random teacher network labels Gaussian inputs with one of 10 classes."),
      code("""\
rng = np.random.default_rng(0)
D, CLASSES, N = 32, 10, 8192
teacher = [rng.standard_normal((D, 64)) / np.sqrt(D), rng.standard_normal((64, CLASSES)) / 8]
X = rng.standard_normal((N, D)).astype(np.float32)
Y = np.argmax(np.tanh(X @ teacher[0]) @ teacher[1], axis=1)
X_eval, Y_eval = jnp.asarray(X[-1024:]), jnp.asarray(Y[-1024:])

def batches(batch_size=256, seed=0):
  r = np.random.default_rng(seed)
  while True:
    i = r.integers(0, N - 1024, batch_size)
    yield jnp.asarray(X[i]), jnp.asarray(Y[i])"""),
      md("""## Equinox: tell Muon the layout

`eqx.nn.Linear.weight` is `[out, in]` (PyTorch's layout). Read from the array alone, a
`(128, 32)` weight looks like `[in=128, out=32]`: Muon's direction is the same either way, but
the shape scale (Muon++'s `sqrt(fan_out/fan_in)`) and Muown's per-neuron norms would use the
wrong side. `optax_muon.dimension_numbers_for(model)` reads the layout from the modules;
`describe` shows what each choice does (compare the `matrices` and `why` columns)."""),
      code("""\
model = eqx.nn.MLP(D, CLASSES, 128, 2, key=jax.random.key(0))
params, static = eqx.partition(model, eqx.is_array)
dims = optax_muon.dimension_numbers_for(model)
print(optax_muon.describe(params))  # the default rule: [in, out], wrong for Equinox
print()
print(optax_muon.describe(params, optax_muon.muon(3e-3, dimension_numbers=dims)))"""),
      code("""\
STEPS = 300

def train(loss_fn, params, tx, steps=STEPS):
  state = tx.init(params)

  @jax.jit
  def step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  losses, data, t0 = [], batches(), time.perf_counter()
  for _ in range(steps):
    params, state, loss = step(params, state, *next(data))
    losses.append(float(loss))
  return params, losses, time.perf_counter() - t0

def accuracy(logits, y):
  return float((jnp.argmax(logits, -1) == y).mean())

def eqx_loss(params, x, y):
  logits = jax.vmap(eqx.combine(params, static))(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

eqx_runs = {}
for label, tx in {"AdamW": optax.adamw(3e-3, b1=0.9, b2=0.95, weight_decay=0.1),
                  "Muon": optax_muon.muon(3e-3, dimension_numbers=dims)}.items():
  trained, losses, seconds = train(eqx_loss, params, tx)
  acc = accuracy(jax.vmap(eqx.combine(trained, static))(X_eval), Y_eval)
  eqx_runs[label] = losses
  print(f"Equinox {label:5s}: final loss {np.mean(losses[-20:]):.3f}, eval accuracy {acc:.3f} "
        f"({seconds:.1f} s)")"""),
      md("""## Haiku: the default rule already fits

Haiku (like Flax) stores `hk.Linear.w` as `[in, out]`, the layout the default rule assumes,
so no dimension numbers are needed. Note the last layer, the classifier: it is a hidden-size
matrix to the rule (its path names no head), so it gets Muon; name it `head` or pass
`dimension_numbers={"linear_2": None}` to send it to AdamW. `describe` is where you see that
decision."""),
      code("""\
net = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([128, 128, CLASSES])(x)))
hk_params = net.init(jax.random.key(0), X_eval[:1])
print(optax_muon.describe(hk_params, optax_muon.muon(3e-3)))

def hk_loss(params, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(net.apply(params, x), y).mean()

hk_runs = {}
for label, tx in {"AdamW": optax.adamw(3e-3, b1=0.9, b2=0.95, weight_decay=0.1),
                  "Muon": optax_muon.muon(3e-3)}.items():
  trained, losses, seconds = train(hk_loss, hk_params, tx)
  hk_runs[label] = losses
  print(f"Haiku {label:5s}: final loss {np.mean(losses[-20:]):.3f}, eval accuracy "
        f"{accuracy(net.apply(trained, X_eval), Y_eval):.3f} ({seconds:.1f} s)")"""),
      code("""\
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, (title, runs) in zip(axes, (("Equinox MLP", eqx_runs), ("Haiku MLP", hk_runs))):
  for label, losses in runs.items():
    ax.plot(np.convolve(losses, np.ones(10) / 10, mode="valid"), label=label)
  ax.set(title=title, xlabel="step", yscale="log")
axes[0].set_ylabel("train loss (10-step mean)")
axes[0].legend()
plt.show()"""),
      md("""## Other layouts

* **Flax** (Linen `with_logical_partitioning`, `nnx.with_partitioning`): logical axis names
  say which axes are layers or experts (batch axes, e.g. MaxText's `[embed, layers, mlp]`),
  which mark a vocabulary (AdamW) and which side is the input: pass
  `dimension_numbers_for(params_or_model)`.
* **Convolutions** `[kh, kw, in, out]` are one `[kh·kw·in, out]` matrix by default (Keller
  Jordan's Muon); `conv_dimension_numbers(4, per_tap=True)` gives one matrix per tap.
* **Fused projections**: a `[d, 3d]` QKV leaf is three matrices:
  `dimension_numbers={"qkv/kernel": optax_muon.FusedDimensionNumbers(0, 1, parts=3)}`
  (`parts=3 * heads` splits per head too). Each part then gets exactly the update it would
  get as its own leaf.

The rules and their math: `docs/algorithms.md`, "Layouts"."""),
  ]


def main():
  for build in (quickstart, compare, diagnostics_nb, own_model):
    name, cells = build()
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["colab"] = {"provenance": []}
    nbformat.write(nb, os.path.join(HERE, name))
    print("wrote", name)


if __name__ == "__main__":
  main()
