"""Shared helpers of the benchmark scripts: machine info, interleaved timing, output.

Every benchmark times the variants it compares side by side in one process,
interleaved (A B C A B C ...), so that load from other processes on the machine
hits all variants alike; report medians/minimums per variant and their ratios.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import statistics
import time
from typing import Any, Callable, Mapping

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
  """Machine, library versions, date and JAX devices (call after any jax config)."""
  import jax
  import optax

  try:
    load = os.getloadavg()
  except OSError:  # pragma: no cover - not on every platform
    load = None
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "platform": platform.platform(),
      "processor": platform.processor() or platform.machine(),
      "python": platform.python_version(),
      "cpu_count": os.cpu_count(),
      "loadavg_at_start": load,
      "jax": jax.__version__,
      "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
      "optax": optax.__version__,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
  }


class TooBusy(SystemExit):
  """Raised (exit status 3) when the machine is too loaded for timings worth writing."""


def check_load(allow: bool, when: str) -> tuple[float, float, float] | None:
  """The 1/5/15-minute load averages; refuses (``TooBusy``) when other work shares the cores.

  Every timing benchmark calls it before it starts (1-minute load above the core
  count: refused) and again before it writes results. At the end the benchmark's
  own threads are part of the load (up to the core count on a small machine), so
  the limit there is 1.5× the core count: other work of half the cores or more.
  Times taken under such load are not written unless ``allow``
  (``--allow-load``) says so, and then the load stands beside them.
  """
  try:
    load = os.getloadavg()
  except OSError:  # pragma: no cover - not on every platform
    return None
  cores = os.cpu_count() or 1
  limit = 1.5 * cores if "end" in when else cores
  if load[0] > limit and not allow:
    raise TooBusy(f"load average {load[0]:.2f} {when} exceeds {limit:g} ({cores} cores): timings would "
                  "measure the other work. Rerun on a quiet machine, or pass --allow-load to "
                  "write them anyway (the load is recorded beside them).")
  return load


def add_load_argument(parser) -> None:
  parser.add_argument("--allow-load", action="store_true",
                      help="write results even when the load average exceeds the core count")


def _jaxlib_version():
  try:
    import jaxlib

    return jaxlib.__version__
  except Exception:  # pragma: no cover
    return None


def block(x):
  import jax

  return jax.block_until_ready(x)


def time_once(fn: Callable[[], Any]) -> float:
  """Seconds for one call of ``fn`` (its result is blocked on)."""
  t0 = time.perf_counter()
  block(fn())
  return time.perf_counter() - t0


def interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int,
                inner: int | Mapping[str, int] = 1, warmup: int = 1) -> dict[str, list[float]]:
  """Times each ``fns[k]`` ``repeats`` times, interleaved A B C A B C ...

  Each sample is the mean over ``inner`` (an int or a per-variant mapping)
  back-to-back calls, blocked once at the end. Returns seconds per call, per
  variant.
  """
  for _ in range(warmup):
    for fn in fns.values():
      block(fn())
  inner_of = inner if isinstance(inner, Mapping) else {k: inner for k in fns}
  samples: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      n = max(1, int(inner_of.get(k, 1)))
      t0 = time.perf_counter()
      out = None
      for _ in range(n):
        out = fn()
      block(out)
      samples[k].append((time.perf_counter() - t0) / n)
  return samples


def inner_counts(fns: Mapping[str, Callable[[], Any]], min_sample_s: float) -> dict[str, int]:
  """Calls per sample so that one sample of each variant lasts ``min_sample_s``.

  Times one (already compiled) call of each; returns ``{k: inner}`` and the
  one-call seconds as the second element.
  """
  one = {k: time_once(f) for k, f in fns.items()}
  return {k: max(1, int(round(min_sample_s / max(t, 1e-6)))) for k, t in one.items()}, one


def side_by_side(fns: Mapping[str, Callable[[], Any]], budget_s: float, max_repeats: int,
                 min_sample_s: float) -> dict[str, Any]:
  """Compiles and runs each variant once, then times them interleaved within ``budget_s``.

  Returns ``first`` (each variant's first output), ``compile_s`` (compile + first call),
  ``inner`` (calls per sample), ``repeats`` and ``stats`` (``summarize`` of each variant).
  """
  first, compile_s = {}, {}
  for k, f in fns.items():
    t0 = time.perf_counter()
    first[k] = block(f())
    compile_s[k] = time.perf_counter() - t0
  inner, one = inner_counts(fns, min_sample_s)
  per_round = sum(inner[k] * one[k] for k in fns)
  repeats = int(max(3, min(max_repeats, budget_s // max(per_round, 1e-9))))
  samples = interleaved(fns, repeats=repeats, inner=inner, warmup=0)
  return {"first": first, "compile_s": compile_s, "inner": inner, "repeats": repeats,
          "stats": {k: summarize(v) for k, v in samples.items()}}


def summarize(samples: list[float]) -> dict[str, float]:
  return {
      "median_s": statistics.median(samples),
      "min_s": min(samples),
      "max_s": max(samples),
      "n": len(samples),
  }


def write_json(name: str, payload: Any) -> pathlib.Path:
  RESULTS_DIR.mkdir(parents=True, exist_ok=True)
  path = RESULTS_DIR / name
  path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
  return path


def write_text(name: str, text: str) -> pathlib.Path:
  RESULTS_DIR.mkdir(parents=True, exist_ok=True)
  path = RESULTS_DIR / name
  path.write_text(text)
  return path


def write_report(name: str, payload: Any, render: Callable[[Any], str]) -> str:
  """Writes results/NAME.json and NAME.md (``render(payload)``), prints and returns the md."""
  write_json(f"{name}.json", payload)
  md = render(payload)
  write_text(f"{name}.md", md)
  print(md)
  return md


def as_tuple(x):
  """A JSON-read list back as the tuple it was written from (``os.getloadavg()``)."""
  return tuple(x) if isinstance(x, list) else x


def md_header(title: str, info: Mapping[str, Any], command: str, notes: list[str] = ()) -> str:
  lines = [
      f"# {title}",
      "",
      f"- Command: `{command}`",
      f"- Date (UTC): {info['date']}",
      f"- Machine: {info['platform']}, {info['processor']}, os.cpu_count()={info['cpu_count']}, "
      f"load average at start {as_tuple(info['loadavg_at_start'])}",
      f"- Device: {info['backend']} ({info['device_kind']}), {len(info['devices'])} device(s)",
      f"- Versions: Python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, "
      f"optax {info['optax']}",
  ]
  lines += [f"- {n}" for n in notes]
  return "\n".join(lines) + "\n"


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
  def fmt(v):
    if isinstance(v, float):
      if v != v:
        return "n/a"
      if abs(v) >= 100:
        return f"{v:.0f}"
      if abs(v) >= 1:
        return f"{v:.2f}"
      if v == 0:
        return "0"
      if abs(v) >= 1e-3:
        return f"{v:.3f}"
      return f"{v:.2e}"
    return str(v)

  out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
  out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  return "\n".join(out) + "\n"
