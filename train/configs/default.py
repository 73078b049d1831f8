"""Default config: the cpu192 model trained with Muon on the stdlib corpus (~minutes on 2 CPUs)."""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.train_steps = 400
  c.batch_size = 16  # Global, across all processes.
  c.seq_len = 128
  c.eval_every = 100
  c.eval_steps = 8
  c.checkpoint_every = 100
  c.max_checkpoints = 3
  c.log_every = 10
  c.max_consecutive_skipped = 10  # Stop (exit 4) after this many non-finite steps in a row.

  # A preset from models.PRESETS; every other field overrides the preset unless None.
  c.model = ml_collections.ConfigDict()
  c.model.preset = "cpu192"
  for name, kind in (("d_model", int), ("n_layers", int), ("n_heads", int),
                     ("n_kv_heads", int), ("d_ff", int), ("max_len", int), ("qk_norm", bool),
                     ("scan_layers", bool), ("remat", bool), ("remat_policy", str),
                     ("attention_chunk", int), ("logits_chunk", int), ("tie_embeddings", bool),
                     ("mup_init", bool), ("zero_init_proj", bool), ("fused_qkv", bool),
                     ("gpt2_init", bool), ("dtype", str),
                     ("param_dtype", str)):
    c.model[name] = placeholder(kind)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "muon"  # adamw | muon | muon_plus_plus | muown | normuon
  # Peak lr; None = the optimizer's measured default (train/optimizer.py, DEFAULT_LEARNING_RATES).
  c.optimizer.learning_rate = placeholder(float)
  # Peak lr of the leaves a Muon variant hands to AdamW (embeddings, head, norms), in AdamW
  # units, on the same schedule; None = the measured default (train/optimizer.py,
  # DEFAULT_ADAM_LEARNING_RATES), whatever optimizer.learning_rate is.
  c.optimizer.adam_learning_rate = placeholder(float)
  c.optimizer.warmup_steps = 40
  c.optimizer.schedule = "cosine"  # cosine | wsd | constant
  c.optimizer.decay_fraction = 0.2  # WSD: fraction of steps in the final linear decay.
  c.optimizer.final_lr_fraction = 0.1
  # Decoupled decay of the matrices (and AdamW leaves); None = the optimizer's own default
  # (AdamW and muon 0.1; muon_plus_plus and muown 0 on matrices, 0.1 on AdamW leaves).
  c.optimizer.weight_decay = ml_collections.config_dict.placeholder(float)
  c.optimizer.grad_clip = 1.0  # 0 = off.
  c.optimizer.qk_clip = 0.0  # Threshold tau; 0 = off. Needs model.scan_layers=False.
  # Muon variants: learning-rate arguments of the alias as multiples of the schedule (e.g.
  # lr_ratios.adam_learning_rate=0.3: AdamW leaves at 0.3x), and further keyword arguments of
  # the alias (e.g. options.scale="mup" for muon). Empty = the alias's defaults.
  c.optimizer.lr_ratios = ml_collections.ConfigDict()
  # A fused QKV kernel (model.fused_qkv) goes to the matrix optimizer as its three [d, d]
  # matrices; False hands it over as one [d, 3d] matrix (the library's default rule).
  c.optimizer.split_fused_qkv = True
  c.optimizer.options = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.tfds_name = "stdlib_source"  # Built locally on first use; any prepared TFDS name works.
  c.data.data_dir = ""  # "" = ~/tensorflow_datasets (required for other datasets).
  c.data.text_field = "text"
  c.data.train_split = "train"
  c.data.eval_split = "eval"
  c.data.max_files = 0  # stdlib_source only: first N files (0 = all); for fast tests.
  c.data.files = ""  # GLOB of local .txt/.jsonl files: the corpus instead of TFDS.
  c.data.txt_docs = "file"  # .txt files: one document per "file" or per "line".
  c.data.tokenizer = "bytes"  # bytes | PATH.model (SentencePiece: `python -m train.train_tokenizer`)
  c.data.packing = placeholder(bool)  # Pack documents into full rows; None = on iff tokenized.
  c.data.piece_bytes = 2048  # Packing: cut longer documents into line-aligned pieces (0 = off).

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 = fill with the remaining devices.
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.diagnostics = ml_collections.ConfigDict()
  c.diagnostics.every = 0  # 0 = off.
  c.diagnostics.which = ""  # Regex of matrix paths to probe ("" = all).
  c.diagnostics.weight_norm = "power"  # power | svd | none.
  c.diagnostics.level = 0.5  # f level of the NS failure threshold behind frac_below.
  c.diagnostics.method = "svd"  # svd (accurate) | gram (eigvalsh of the Gram; fast on CPU).

  c.distributed = ml_collections.ConfigDict()
  c.distributed.initialize = False
  c.distributed.coordinator_address = ""  # "" = auto-detect (TPU pods).
  c.distributed.num_processes = -1  # -1 = auto-detect.
  c.distributed.process_id = -1
  c.distributed.local_device_ids = ""  # e.g. "0,1"; "" = all.
  return c
