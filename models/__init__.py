"""Flax NNX decoder-only transformer, presets and sharding rules (no optimizer knowledge)."""

from models.config import ModelConfig
from models.config import PRESETS
from models.config import get_config
from models.sharding import LOGICAL_RULES
from models.sharding import MESH_AXES
from models.sharding import logical_names
from models.sharding import logical_to_spec
from models.sharding import param_shardings
from models.transformer import Transformer
from models.transformer import layer_name

__all__ = [
    "LOGICAL_RULES",
    "MESH_AXES",
    "ModelConfig",
    "PRESETS",
    "Transformer",
    "get_config",
    "layer_name",
    "logical_names",
    "logical_to_spec",
    "param_shardings",
]
