"""Test-only: let accelerate run FSDP2 over gloo on CPU processes.

accelerate 1.16 switches FSDP on only for GPU-like distributed types (`AcceleratorState`
leaves a CPU launch of an FSDP config as MULTI_CPU, i.e. DDP), so on this machine the FSDP
config alone never shards a weight and a final save that skips the gather cannot hang. With
this folder first on PYTHONPATH, the CPU processes of a launched stage take the FSDP branch
accelerate takes on GPUs: the model is wrapped by `fully_shard` (torch FSDP2, gloo), each rank
holds half of each weight, and saving a full state dict is a collective every rank must join.
Nothing is faked: only accelerate's device check is widened.
"""

import os
import sys

if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
    from accelerate import state as _state

    _init = _state.AcceleratorState.__init__

    def _init_with_fsdp_on_cpu(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _init(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if plugin is not None and self.distributed_type == _state.DistributedType.MULTI_CPU:
            self.distributed_type = _state.DistributedType.FSDP
            self.fsdp_plugin = plugin
            _state.PartialState._shared_state["distributed_type"] = self.distributed_type
            if not getattr(_state, "_r1pipe_said", False):  # the test counts one line per rank
                _state._r1pipe_said = True
                print("r1pipe test: FSDP switched on for a CPU process", file=sys.stderr,
                      flush=True)

    _state.AcceleratorState.__init__ = _init_with_fsdp_on_cpu
