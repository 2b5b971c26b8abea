"""Online dynamic sampling for GRPO stages (`dynamic_sampling:`), on TRL's GRPOTrainer.

A GRPO group whose rewards are all equal has zero advantage: it costs a rollout and teaches
nothing. TRL trains on every group it sampled (its issue #3708 asks for this); DAPO, verl
(`algorithm.filter_groups`) and others drop such groups and sample again. This module does
that with a subclass of the installed GRPOTrainer, no fork:

- `_prepare_inputs` is TRL's own (generate once per `steps_per_generation` x
  `num_iterations` micro-steps, shuffle, split, buffer), except that one generation becomes
  rounds: the dataloader's prompts plus `oversample - 1` times as many more, then, while any
  process has fewer groups with reward spread than its step trains on, further prompts (the
  shortfall times `oversample`), at most `max_rounds` rounds. Each round is TRL's
  `_generate_and_score_completions`, unchanged, so vLLM colocate, vLLM server and the hf
  path all work as they do without this, and under several processes every rank draws the
  same number of prompts per round (the server mode and the reward gather need that).
- Which groups have spread is read from the rewards TRL gathers across processes (a
  `_calculate_rewards` wrapper keeps them), so every rank takes the same decisions without
  another collective. A group's rows stay on one process (checked: the per-process
  generation batch is a whole number of groups).
- When the rounds run out, the step trains on the groups with spread it has (to a multiple of
  `steps_per_generation` rows; topped up with zero-spread groups only when fewer rows than
  that were found) and logs how many groups it was short.
- Further prompts come from a seeded permutation of the training set of the stage (a stream
  of its own, next to the trainer's sampler); its position and the running counts are saved
  in each trainer checkpoint (`dynamic_sampling.json`) and read back on resume.

Per step it logs `dynamic_sampling/{groups_sampled, groups_dropped, groups_trained,
groups_short, rounds, trained_zero_std_frac, tokens_sampled, tokens_trained}` and the running
totals `dynamic_sampling/total_*`; TRL's own metrics (`reward`, `frac_reward_zero_std`, ...)
cover every sampled group.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from r1pipe.artifacts import atomic_write_json

if TYPE_CHECKING:
    import torch

    from r1pipe.config import DynamicSamplingSettings

STATE_FILE = "dynamic_sampling.json"
"""In each trainer checkpoint: the prompt stream's position and the running counts."""

# Per-row tensors laid out along the completion (right-padded) and along the prompt
# (left-padded), and the value each is padded with when rounds of different lengths merge.
_COMPLETION_SIDE = {"completion_ids": None, "completion_mask": 0, "old_per_token_logps": 0.0,
                    "sampling_per_token_logps": 0.0, "ref_per_token_logps": 0.0,
                    "tool_mask": 1, "importance_sampling_ratio": 1.0}
_PROMPT_SIDE = {"prompt_ids": None, "prompt_mask": 0}


@dataclass
class Totals:
    """Running counts over the stage (all processes together), saved with each checkpoint."""

    steps: int = 0
    rounds: int = 0
    groups_sampled: int = 0
    groups_dropped: int = 0
    groups_trained: int = 0
    groups_short: int = 0
    prompts_drawn: int = 0  # position in the stream of further prompts (global)
    tokens_sampled: int = 0
    tokens_trained: int = 0


def zero_spread_groups(rewards_per_func: torch.Tensor, weights: torch.Tensor,
                       num_generations: int) -> torch.Tensor:
    """One bool per group (rows in TRL's order: a group's completions are consecutive): True
    where the weighted total reward has no spread. Rows no reward function scored (all
    None, NaN here) are left out of their group; a group with fewer than two scored rows
    has no spread either."""
    import torch
    from trl.trainer.utils import nanstd

    total = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    total[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    std = nanstd(total.view(-1, num_generations), dim=1)
    return torch.isnan(std) | torch.isclose(std, torch.zeros_like(std))


def trainer_class(settings: DynamicSamplingSettings) -> type:
    """A GRPOTrainer subclass that samples dynamically as `settings` says (see the module)."""
    import torch
    from trl import GRPOTrainer
    from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

    class DynamicSamplingGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ds_totals = Totals()
            self._ds_rewards: torch.Tensor | None = None
            per_process = self.args.per_device_train_batch_size * self.args.steps_per_generation
            if per_process % self.num_generations:
                raise ValueError(
                    "dynamic_sampling: each process generates per_device_train_batch_size x "
                    f"steps_per_generation = {per_process} completions a step, not a whole "
                    f"number of groups of num_generations = {self.num_generations}; set "
                    "trainer.per_device_train_batch_size (or steps_per_generation) to a "
                    "multiple of num_generations")
            if not hasattr(self.train_dataset, "__getitem__") or \
                    not hasattr(self.train_dataset, "__len__"):
                raise ValueError("dynamic_sampling: the training prompts are an iterable "
                                 "dataset, which cannot be drawn from at random; remove "
                                 "dynamic_sampling or load the prompts as a dataset")

        # -- TRL hooks ----------------------------------------------------------------
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: ANN001, ANN202
            rewards = super()._calculate_rewards(inputs, prompts, completions,
                                                 completion_ids_list)
            self._ds_rewards = rewards  # gathered: every process's rows, in process order
            return rewards

        def _prepare_inputs(self, generation_batch):  # noqa: ANN001, ANN202
            if not self.model.training:
                return super()._prepare_inputs(generation_batch)
            generate_every = self.args.steps_per_generation * self.num_iterations
            if self._step % generate_every == 0 or self._buffered_inputs is None:
                batch = shuffle_sequence_dict(self._dynamic_batch(list(generation_batch)))
                self._buffered_inputs = split_tensor_dict(batch, self.args.steps_per_generation)
            return self._buffered_inputs[self._step % self.args.steps_per_generation]

        def _save_checkpoint(self, model, trial):  # noqa: ANN001, ANN202
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                folder = os.path.join(self._get_output_dir(trial=trial),
                                      f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
                atomic_write_json(os.path.join(folder, STATE_FILE), asdict(self.ds_totals))

        def _load_optimizer_and_scheduler(self, checkpoint):  # noqa: ANN001, ANN202
            super()._load_optimizer_and_scheduler(checkpoint)
            path = os.path.join(checkpoint, STATE_FILE) if checkpoint else None
            if path and os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    self.ds_totals = Totals(**json.load(f))

        # -- the rounds ---------------------------------------------------------------
        def _further_prompts(self, groups: int) -> list[dict[str, Any]]:
            """`groups` prompts for this process from the stage's own seeded stream (each
            rank its slice of the next `groups x world` positions), each repeated
            num_generations times as TRL's sampler lays them out."""
            world, rank = self.accelerator.num_processes, self.accelerator.process_index
            size = len(self.train_dataset)
            rows: list[dict[str, Any]] = []
            start = self.ds_totals.prompts_drawn + rank * groups
            for position in range(start, start + groups):
                epoch, offset = divmod(position, size)
                order = _permutation(size, self.args.seed, epoch)
                row = self.train_dataset[int(order[offset])]
                rows.extend(dict(row) for _ in range(self.num_generations))
            self.ds_totals.prompts_drawn += groups * world
            return rows

        def _dynamic_batch(self, first: list[dict[str, Any]]) -> dict[str, Any]:
            group_size, world = self.num_generations, self.accelerator.num_processes
            rank = self.accelerator.process_index
            need = len(first) // group_size  # groups this process trains on per generation
            extra = math.ceil((settings.oversample - 1.0) * need)
            rows = first + (self._further_prompts(extra) if extra else [])
            kept: list[tuple[dict[str, Any], list[int]]] = []  # (round output, local groups)
            spare: list[tuple[dict[str, Any], list[int]]] = []
            have = [0] * world
            sampled = dropped = rounds = tokens = 0
            while True:
                rounds += 1
                out = self._generate_and_score_completions(rows)
                if "pixel_values" in out:
                    raise ValueError("dynamic_sampling: multimodal prompts are not supported")
                local = len(rows) // group_size
                zero = zero_spread_groups(self._ds_rewards, self.reward_weights,
                                          group_size).view(world, local).cpu()
                sampled += world * local
                dropped += int(zero.sum())
                tokens += int(self.accelerator.gather(  # prompt and completion, as TRL's num_tokens
                    out["prompt_mask"].sum() + out["completion_mask"].sum()).sum())
                mine = zero[rank]
                kept.append((out, [g for g in range(local) if not mine[g]]))
                spare.append((out, [g for g in range(local) if mine[g]]))
                have = [have[r] + int((~zero[r]).sum()) for r in range(world)]
                short = max(need - h for h in have)
                if short <= 0 or rounds >= settings.max_rounds:
                    break
                rows = self._further_prompts(math.ceil(settings.oversample * short))
            return self._assemble(kept, spare, need, dict(sampled=sampled, dropped=dropped,
                                                          rounds=rounds, tokens=tokens))

        def _assemble(self, kept: list[tuple[dict[str, Any], list[int]]],
                      spare: list[tuple[dict[str, Any], list[int]]], need: int,
                      counts: dict[str, int]) -> dict[str, Any]:
            """This process's trained batch from the rounds' groups with spread (first
            rounds first), logged; see the module for what happens when they are short."""
            group_size, chunks = self.num_generations, self.args.steps_per_generation
            picks = [(out, g) for out, groups in kept for g in groups][:need]
            spread = len(picks)
            usable = len(picks) * group_size // chunks * chunks
            if usable == 0:  # too few rows for the micro-steps: zero-spread groups fill in
                fill = [(out, g) for out, groups in spare for g in groups]
                picks += fill[:math.ceil(chunks / group_size) - len(picks)]
                usable = len(picks) * group_size // chunks * chunks
            trained_zero = len(picks) - spread
            batch = _merge([_rows(out, g * group_size, (g + 1) * group_size)
                            for out, g in picks], self.processing_class)
            batch = {k: (v[:usable] if _per_row(k, v) else v) for k, v in batch.items()}
            mask = batch["completion_mask"] if "tool_mask" not in batch else \
                batch["completion_mask"] * batch["tool_mask"]
            batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
            gathered = self.accelerator.gather(torch.tensor(
                [len(picks), max(need - spread, 0), trained_zero,
                 int(batch["prompt_mask"].sum() + batch["completion_mask"].sum())],
                device=self.accelerator.device)).view(-1, 4).sum(dim=0).tolist()
            trained, short, zero_trained, tokens_trained = (int(x) for x in gathered)
            totals = self.ds_totals
            totals.steps += 1
            totals.rounds += counts["rounds"]
            totals.groups_sampled += counts["sampled"]
            totals.groups_dropped += counts["dropped"]
            totals.groups_trained += trained
            totals.groups_short += short
            totals.tokens_sampled += counts["tokens"]
            totals.tokens_trained += tokens_trained
            step = {"groups_sampled": counts["sampled"], "groups_dropped": counts["dropped"],
                    "groups_trained": trained, "groups_short": short,
                    "rounds": counts["rounds"],
                    "trained_zero_std_frac": zero_trained / trained if trained else 0.0,
                    "tokens_sampled": counts["tokens"], "tokens_trained": tokens_trained}
            for key, value in step.items():
                self._metrics["train"][f"dynamic_sampling/{key}"].append(float(value))
            for key, value in asdict(totals).items():
                if key != "prompts_drawn":
                    # a running total: the last value logged, not the mean of a window
                    self._metrics["train"][f"dynamic_sampling/total_{key}"] = [float(value)]
            return batch

    return DynamicSamplingGRPOTrainer


def _permutation(size: int, seed: int, epoch: int) -> list[int]:
    """The stream's order for one pass over the prompts (same on every rank and resume)."""
    import torch

    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * epoch + 1)
    return torch.randperm(size, generator=generator).tolist()


def _per_row(key: str, value: Any) -> bool:
    import torch

    return key != "num_items_in_batch" and (
        isinstance(value, list) or (isinstance(value, torch.Tensor) and value.ndim > 0))


def _rows(out: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {k: (v[start:stop] if _per_row(k, v) else v) for k, v in out.items()}


def _merge(parts: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
    """Concatenate row slices of several rounds, padding prompts on the left and
    completions on the right to the longest (as TRL pads one round)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(getattr(tokenizer, "tokenizer", None), "pad_token_id", 0) or 0
    merged: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if not _per_row(key, values[0]):
            merged[key] = values[0]
            continue
        if isinstance(values[0], list):
            merged[key] = [x for v in values for x in v]
            continue
        if values[0].ndim == 2 and (key in _COMPLETION_SIDE or key in _PROMPT_SIDE) and \
                len({v.shape[1] for v in values}) > 1:
            width = max(v.shape[1] for v in values)
            side = _PROMPT_SIDE if key in _PROMPT_SIDE else _COMPLETION_SIDE
            fill = side[key] if side[key] is not None else pad_id
            values = [F.pad(v, (width - v.shape[1], 0) if key in _PROMPT_SIDE
                            else (0, width - v.shape[1]), value=fill) for v in values]
        merged[key] = torch.cat(values, dim=0)
    return merged
