"""GPU memory arithmetic of training and sampling: what `r1pipe preflight` adds up per stage.

Nothing here imports torch: a model is its `config.json` (`ModelShape.from_config`), and
every estimate is bytes from shapes, so a pipeline can be checked for a cluster before one
GPU is spent. The terms and why each is there:

- Model states (the ZeRO paper's accounting, per parameter): weights, gradients and
  optimizer states. Under DeepSpeed with bf16 the weights and gradients are bf16 (2 + 2
  bytes) and the optimizer keeps an fp32 master copy and Adam's two moments (12 bytes);
  ZeRO-1 shards the optimizer, ZeRO-2 the gradients too, ZeRO-3 (and FSDP full sharding)
  the weights as well, each over the data-parallel world. Without DeepSpeed, torch's AdamW
  keeps both moments in the parameters' dtype (2 x weights).
- Activations of one micro-batch (`tokens` = sequences x padded length: TRL pads a
  micro-batch to its longest sequence). Without checkpointing every decoder layer keeps
  what its backward reads: the two norms' inputs and outputs (4 h), q, k, v and the
  attention output twice (2 q + 2 kv + q), and the gated MLP's gate, up, activation and
  product (4 i), per token. With checkpointing each layer keeps only its input (h) and one
  layer is recomputed at a time; about half of its tensors are live at once, since its
  backward frees them as it goes.
- Logits: on a GPU TRL 1.16's fused LM head projects in tiles and never holds
  `tokens x vocabulary` logits (`fused_lm_head=True`); on the CPU r1pipe scores labelled
  tokens with dense logits (`r1pipe.trl_cpu`), a few float32 copies of them.
- A colocated vLLM engine takes `gpu_memory_utilization` of the whole GPU; inside it holds
  its weights (divided by tensor parallelism), a fixed overhead (CUDA graphs, activations of
  a forward), and the KV cache: 2 (K and V) x layers x kv heads x head dim x dtype bytes per
  token. vLLM refuses to start when the cache cannot hold one `max_model_len` sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

GIB = 1024**3

Sharding = Literal["none", "zero1", "zero2", "zero3", "fsdp"]

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}

# vLLM's own memory beside weights and KV cache: CUDA graphs, the sampler's logits and a
# forward's activations for `max_num_batched_tokens`. vLLM 0.x profiles this at start-up;
# 2 GiB is what its logs report for 7B-32B models with the default batched tokens (8,192).
VLLM_OVERHEAD_BYTES = 2 * GIB

# Per GPU outside the tensors counted here: the CUDA context, NCCL buffers, allocator
# fragmentation. PyTorch's caching allocator typically reserves 5-10 % above what is
# allocated at the peak; 3 GiB covers the context (~0.5 GiB) and NCCL (~1 GiB) too.
CUDA_RESERVE_BYTES = 3 * GIB


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder's `config.json` that memory depends on."""

    params: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    context: int | None       # the longest sequence the model's config allows (vLLM's rule)
    dtype_bytes: int          # of the checkpoint's `torch_dtype`

    @classmethod
    def from_config(cls, config: dict[str, Any], *, classifier: bool = False) -> ModelShape:
        """Read a (text) decoder's shape from its `config.json` mapping. `classifier`: a
        sequence-classification head (one score) instead of the LM head."""
        cfg = config.get("text_config") or config
        hidden = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg.get("num_attention_heads") or 1)
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or hidden // heads)
        intermediate = int(cfg.get("intermediate_size") or 4 * hidden)
        vocab = int(cfg["vocab_size"])
        q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
        attention = hidden * q_dim * 2 + hidden * kv_dim * 2
        if cfg.get("attention_bias") or cfg.get("model_type") in ("qwen2",):
            attention += q_dim + 2 * kv_dim
        experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 1)
        per_layer = attention + 3 * hidden * intermediate * experts + 2 * hidden
        tied = bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
        head = int(config.get("num_labels", 1)) * hidden if classifier else (
            0 if tied else vocab * hidden)
        params = vocab * hidden + layers * per_layer + hidden + head
        dtype = str(config.get("torch_dtype") or cfg.get("torch_dtype") or config.get("dtype")
                    or "bfloat16")
        return cls(params=params, layers=layers, hidden=hidden, intermediate=intermediate,
                   heads=heads, kv_heads=kv_heads, head_dim=head_dim, vocab=vocab,
                   context=context_length(config), dtype_bytes=DTYPE_BYTES.get(dtype, 2))

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """K and V of every layer for one token (vLLM's cache, bf16 by default)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def activation_elements_per_token(self) -> int:
        """Values one decoder layer keeps for its backward, per token (see module doc)."""
        q_dim, kv_dim = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 4 * self.hidden + 3 * q_dim + 2 * kv_dim + 4 * self.intermediate


# vLLM's `_get_and_verify_max_len`: the smallest of these keys is the model's length ...
_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                "model_max_length", "max_sequence_length", "max_seq_length", "seq_len")
# ... multiplied by the RoPE scaling factor, except for the types that already count it.
_RESCALED_ROPE = ("su", "longrope", "llama3", "mrope", "default")


def context_length(config: dict[str, Any]) -> int | None:
    """The longest sequence vLLM accepts for this model (`max_model_len` above it is refused
    unless VLLM_ALLOW_LONG_MAX_MODEL_LEN is set), and that the model was trained for."""
    cfg = config.get("text_config") or config
    found = [int(cfg[k]) for k in _LENGTH_KEYS if isinstance(cfg.get(k), (int, float))]
    if not found:
        return None
    length = min(found)
    rope = cfg.get("rope_scaling") or {}
    kind = rope.get("rope_type") or rope.get("type")
    if isinstance(rope, dict) and kind and kind not in _RESCALED_ROPE and rope.get("factor"):
        if kind == "yarn" and rope.get("original_max_position_embeddings"):
            length = int(rope["original_max_position_embeddings"])
        length = int(length * float(rope["factor"]))
    return length


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes per GPU of one training process at its peak (the backward of a micro-batch)."""

    weights: int
    gradients: int
    optimizer: int
    reference: int
    activations: int          # held through the backward: every layer's, or the checkpoints
    recompute: int            # one layer's activations rebuilt at a time (checkpointing)
    logits: int               # the LM head's, freed before the layers' backward starts

    @property
    def states(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.reference

    @property
    def total(self) -> int:
        """The peak: without checkpointing the logits come on top of every layer's
        activations; with it the logits' backward ends before the first layer is rebuilt."""
        return self.states + self.activations + max(self.recompute, self.logits)


@dataclass(frozen=True)
class Parallelism:
    """How training is spread, which decides what each GPU holds of the weights, gradients
    and optimizer: `world` GPUs, the sharding stage, and DeepSpeed (whose mixed precision
    keeps float32 master weights and Adam moments: 12 bytes a trained parameter)."""

    world: int
    sharding: Sharding
    deepspeed: bool = False


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch, which decides the activations: `size` sequences padded to `seq_len`,
    `labelled_len` tokens of each carrying a loss (the completion: what a dense LM head
    projects)."""

    size: int
    seq_len: int
    labelled_len: int


@dataclass(frozen=True)
class Precision:
    """Bytes per element of the weights and of the activations (the weights' when None)."""

    weight_bytes: int
    activation_bytes: int | None = None


def training_memory(shape: ModelShape, *, parallel: Parallelism, batch: MicroBatch,
                    precision: Precision, checkpointing: bool, reference: bool = False,
                    lora: bool = False, fused_lm_head: bool = True) -> TrainingMemory:
    """Peak bytes per GPU of training `shape` (see the module doc for each term).

    `reference`: GRPO's frozen reference model (beta > 0), sharded like the policy under
    ZeRO-3.
    """
    world, sharding, deepspeed = parallel.world, parallel.sharding, parallel.deepspeed
    micro_batch, seq_len, labelled_len = batch.size, batch.seq_len, batch.labelled_len
    weight_bytes, activation_bytes = precision.weight_bytes, precision.activation_bytes
    p = shape.params
    world = max(1, world)
    act_b = activation_bytes or weight_bytes
    mixed = deepspeed and weight_bytes < 4
    trained = 0 if lora else p
    weights = p * weight_bytes
    grads = trained * weight_bytes
    optim = trained * (12 if mixed else 2 * weight_bytes)
    shard = {"none": (1, 1, 1), "zero1": (1, 1, world), "zero2": (1, world, world),
             "zero3": (world, world, world), "fsdp": (world, world, world)}[sharding]
    ref = p * weight_bytes // shard[0] if reference else 0
    tokens = micro_batch * seq_len
    per_layer = shape.activation_elements_per_token() * tokens * act_b
    if checkpointing:
        # the rebuilt layer's tensors are freed as its backward consumes them: about half
        # are live at once (measured on CPU, tests/test_preflight.py)
        acts, recompute = shape.layers * tokens * shape.hidden * act_b, per_layer // 2
    else:
        acts, recompute = shape.layers * per_layer, 0
    acts += 2 * tokens * shape.hidden * act_b  # embeddings out, final norm
    # dense logits: the autocast projection, its float32 upcast and log-softmax
    logits = 0 if fused_lm_head else micro_batch * labelled_len * shape.vocab * (act_b + 8)
    return TrainingMemory(weights=weights // shard[0], gradients=grads // shard[1],
                          optimizer=optim // shard[2], reference=ref, activations=acts,
                          recompute=recompute, logits=logits)


@dataclass(frozen=True)
class EngineMemory:
    """A vLLM engine's share of one GPU and what is left of it for the KV cache."""

    budget: int               # gpu_memory_utilization x GPU memory
    weights: int              # per GPU (divided by tensor parallelism)
    kv_room: int              # budget - weights - overhead
    kv_per_sequence: int      # bytes of one max_model_len sequence's cache, per GPU

    @property
    def sequences(self) -> float:
        """How many max-length sequences the cache holds at once (vLLM needs >= 1)."""
        return self.kv_room / self.kv_per_sequence if self.kv_per_sequence else float("inf")


def engine_memory(shape: ModelShape, *, gpu_bytes: int, utilization: float,
                  max_model_len: int, tensor_parallel: int = 1, weight_bytes: int = 2
                  ) -> EngineMemory:
    """The KV room of a vLLM engine on `tensor_parallel` GPUs for `max_model_len` tokens."""
    tp = max(1, tensor_parallel)
    budget = int(gpu_bytes * utilization)
    weights = shape.params * weight_bytes // tp
    room = budget - weights - VLLM_OVERHEAD_BYTES
    return EngineMemory(budget=budget, weights=weights, kv_room=room,
                        kv_per_sequence=shape.kv_bytes_per_token() * max_model_len // tp)


# Decoding is bound by memory bandwidth: each step reads the weights once, and the KV cache
# of every running sequence. An H100 SXM reads 3.35 TB/s; vLLM reaches about 60 % of it.
DEFAULT_BANDWIDTH_BYTES = 0.6 * 3.35e12


def decode_seconds(shape: ModelShape, *, sequences: int, max_tokens: int, concurrent: float,
                   tensor_parallel: int = 1, bandwidth: float = DEFAULT_BANDWIDTH_BYTES
                   ) -> float:
    """Seconds for one engine to sample `sequences` answers of up to `max_tokens` tokens with
    `concurrent` sequences in its batch at a time (the KV room's count): the worst case a
    collective waits for, every answer running to the limit."""
    tp = max(1, tensor_parallel)
    batch = max(1.0, min(float(sequences), concurrent))
    rounds = sequences / batch
    weights = shape.params * 2 / tp
    # the average sequence is half way through its answer over a round
    kv = batch * shape.kv_bytes_per_token() / tp * max_tokens / 2
    return rounds * max_tokens * (weights + kv) / bandwidth


def gib(value: float) -> str:
    """Bytes as GiB with one decimal, for tables."""
    return f"{value / GIB:.1f}"
