"""What kind of layer a parameter path names: one classifier for the whole project.

The library's default matrix rule, the diagnostics' layer groups and the
trainer's per-group metrics all ask the same question of a path such as
``layers/3/attn/q/kernel``: is this a query projection, an MLP down-projection,
an embedding, a norm gain? :func:`path_kind` answers it once.

The path is read from the leaf upwards: the first component that names a kind
decides (``layers/0/attn/q_norm/scale`` is a norm, not a query). Components that
name no kind (``kernel``, ``weight``, ``layers``, digits, ``attn``, ``mlp``) are
skipped. A trailing ``value`` after a parameter name (``q/kernel/value`` in an
``nnx.State``) is the variable's own field, not a value projection.
"""

import re

__all__ = [
    "FAMILIES",
    "HIDDEN_KINDS",
    "KINDS",
    "NON_MATRIX_KINDS",
    "path_family",
    "path_kind",
    "is_conv",
]

# Kind -> regex over one path component (matched in full, case-insensitively).
_KIND_PATTERNS = (
    ("embedding", r"embed.*|.*embedding.*|wte|wpe|tok_embeddings"),
    ("head", r"lm_head|head|unembed.*|output|readout|logits?"),
    ("norm", r".*norm.*|ln(_.*|f|\d*)|scale"),
    ("bias", r"bias|.*_bias"),
    ("qkv", r"qkv|wqkv|c_attn|query_key_value"),
    ("q", r"q|wq|q_proj|query|query_proj"),
    ("k", r"k|wk|k_proj|key|key_proj"),
    ("v", r"v|wv|v_proj|value|value_proj"),
    ("o", r"o|wo|o_proj|out|out_proj|c_proj|output_proj"),
    ("gate", r"gate|w1|gate_proj"),
    ("up", r"up|w3|up_proj|c_fc|fc1"),
    ("down", r"down|w2|down_proj|fc2"),
)
_COMPILED = tuple((kind, re.compile(f"^(?:{pat})$", re.IGNORECASE))
                  for kind, pat in _KIND_PATTERNS)
_PARAM_NAMES = frozenset({"kernel", "weight", "w", "embedding", "scale", "bias"})

KINDS = tuple(kind for kind, _ in _KIND_PATTERNS) + ("other",)
HIDDEN_KINDS = frozenset({"qkv", "q", "k", "v", "o", "gate", "up", "down"})
NON_MATRIX_KINDS = frozenset({"embedding", "head", "norm", "bias"})
FAMILIES = ("attn", "mlp", "embed", "norm", "other")
_FAMILY = {"qkv": "attn", "q": "attn", "k": "attn", "v": "attn", "o": "attn",
           "gate": "mlp", "up": "mlp", "down": "mlp", "embedding": "embed", "head": "embed",
           "norm": "norm", "bias": "other", "other": "other"}


def path_kind(path: str) -> str:
  """The kind of layer a ``/``-separated parameter path names (one of ``KINDS``).

  Examples:
    >>> path_kind("layers/3/attn/q/kernel"), path_kind("layers/0/attn/q_norm/scale")
    ('q', 'norm')
    >>> path_kind("embed/embedding"), path_kind("lm_head/kernel"), path_kind("w")
    ('embedding', 'head', 'other')
    >>> path_kind("layers/0/mlp/down/kernel/value")  # an nnx.State path
    'down'
  """
  parts = [p for p in path.split("/") if p]
  if len(parts) >= 2 and parts[-1] == "value" and parts[-2] in _PARAM_NAMES:
    parts = parts[:-1]
  for part in reversed(parts):
    if part in ("kernel", "weight", "w"):
      continue
    for kind, pattern in _COMPILED:
      if pattern.match(part):
        return kind
  return "other"


_CONV = re.compile(r"^(?:conv.*|.*_conv\d*)$", re.IGNORECASE)


def is_conv(path: str) -> bool:
  """Whether a path names a convolution (a component ``Conv_0``, ``conv2_d``, ``stem_conv``).

  Examples:
    >>> is_conv("params/Conv_0/kernel"), is_conv("conv2_d/w"), is_conv("layers/0/mlp/up/kernel")
    (True, True, False)
  """
  return any(_CONV.match(p) for p in path.split("/"))


def path_family(path: str) -> str:
  """``"attn"``, ``"mlp"``, ``"embed"`` (embedding and head), ``"norm"`` or ``"other"``.

  Examples:
    >>> [path_family(p) for p in ("layers/0/attn/o/kernel", "lm_head/kernel", "final_norm/scale")]
    ['attn', 'embed', 'norm']
  """
  return _FAMILY[path_kind(path)]
