"""Batches of similar length for padded trainers (r1pipe.batching)."""

from __future__ import annotations

import random

import pytest

from r1pipe.batching import LengthBucketSampler, length_bucketed, pair_lengths


def _batches(sampler: LengthBucketSampler) -> list[list[int]]:
    order = list(sampler)
    return [order[k:k + sampler.batch_size] for k in range(0, len(order), sampler.batch_size)]


def test_batches_are_of_one_length_in_random_order_and_cover_every_index() -> None:
    rng = random.Random(0)
    lengths = [rng.choice([40, 45, 50]) for _ in range(60)] + [300, 320, 340, 360] * 3
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths))) and len(sampler) == len(lengths)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in _batches(sampler))
    shuffled = rng.sample(range(len(lengths)), len(lengths))
    random_batches = sum(max(lengths[i] for i in shuffled[k:k + 8]) * 8 for k in range(0, 72, 8))
    assert padded < 0.6 * random_batches
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in _batches(sampler)]
    assert sum(s > 100 for s in spans) <= 1  # at most the batch that straddles the two groups
    # not longest first, not sorted: the batch order is shuffled (and differs per epoch)
    firsts = [max(lengths[i] for i in b) for b in _batches(sampler)]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)
    again = LengthBucketSampler(lengths, batch_size=8, seed=1)
    assert list(again) == order  # every rank, and a resumed run, draws the same order
    again.set_epoch(1)
    assert list(again) != order and sorted(again) == sorted(order)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        LengthBucketSampler(lengths, batch_size=0, seed=1)


def test_pair_lengths_reads_the_longer_side_through_filters() -> None:
    from datasets import Dataset

    data = Dataset.from_dict({"chosen_ids": [[1] * 3, [1] * 9, [1] * 2, [1] * 5],
                              "rejected_ids": [[1] * 7, [1] * 4, [1] * 2, [1] * 6]})
    assert pair_lengths(data, ["chosen_ids", "rejected_ids"]) == [7, 9, 2, 6]
    kept = data.filter(lambda r: len(r["chosen_ids"]) != 9)  # an indices mapping
    assert pair_lengths(kept, ["chosen_ids", "rejected_ids"]) == [7, 2, 6]
    assert pair_lengths(kept, ["chosen_ids"]) == [3, 2, 5]


def test_reward_trainer_trains_on_length_buckets(tmp_path, tiny_reward_model_dir) -> None:
    """The real RewardTrainer draws its batches from the bucket sampler under r1pipe's
    default (`group_by_length`), from its own sampler otherwise, and trains."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from r1pipe.models import load_tokenizer
    from r1pipe.train import REWARD_DEFAULTS

    short = [{"prompt": f"Say {i}.", "chosen": f"{i}.", "rejected": "No."} for i in range(12)]
    long = [{"prompt": f"Count to {i}.", "chosen": " ".join(str(n) for n in range(40 + i)),
             "rejected": "No."} for i in range(4)]
    data = Dataset.from_list(short + long)
    tokenizer = load_tokenizer(str(tiny_reward_model_dir))

    def trainer(**kw: object):
        args = RewardConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
                            report_to=[], save_strategy="no", use_cpu=True, max_steps=4,
                            **{**REWARD_DEFAULTS, **kw})
        model = AutoModelForSequenceClassification.from_pretrained(
            str(tiny_reward_model_dir), num_labels=1)
        return length_bucketed(RewardTrainer)(model=model, args=args, train_dataset=data,
                                              processing_class=tokenizer)

    bucketed = trainer()
    assert type(bucketed).__name__ == "RewardTrainer"
    sampler = bucketed._get_train_sampler()
    assert isinstance(sampler, LengthBucketSampler)
    long_rows = {i for i, n in enumerate(sampler.lengths) if n > 30}
    assert len(long_rows) == 4
    assert {frozenset(b) & long_rows for b in _batches(sampler)} >= {frozenset(long_rows)}
    # a streamed dataset has no length to sort by: the trainer's own handling (no sampler)
    assert bucketed._get_train_sampler(bucketed.train_dataset.to_iterable_dataset()) is None
    bucketed.train()
    assert bucketed.state.global_step == 4
    assert not isinstance(trainer(train_sampling_strategy="random")._get_train_sampler(),
                          LengthBucketSampler)
