from collections import Counter

import numpy as np
import pytest

from reid_core.data.sampler import PKBatchSampler


def _labels(n_ids: int, per_id: int) -> list[str]:
    return [f"id{i}" for i in range(n_ids) for _ in range(per_id)]


def test_batches_hold_p_identities_of_k_images():
    labels = _labels(10, 8)
    sampler = PKBatchSampler(labels, p=4, k=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        assert len(batch) == 16
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {4}


def test_ranks_get_equal_disjoint_batches_covering_no_index_twice():
    labels = _labels(13, 9)
    ranks = [PKBatchSampler(labels, p=3, k=3, num_replicas=3, rank=r, seed=7) for r in range(3)]
    per_rank = [list(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) > 0
    seen = [i for batches in per_rank for batch in batches for i in batch]
    # Identities have >= K images, so no index is sampled with replacement: every index at most once.
    assert len(seen) == len(set(seen))


def test_plan_is_deterministic_per_seed_and_epoch():
    labels = _labels(8, 6)
    a, b = PKBatchSampler(labels, 4, 2, seed=3), PKBatchSampler(labels, 4, 2, seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(PKBatchSampler(labels, 4, 2, seed=4)) != list(PKBatchSampler(labels, 4, 2, seed=3))


def test_small_identities_are_sampled_with_replacement():
    labels = ["a"] * 2 + ["b"] * 5 + ["c"] * 1
    batches = list(PKBatchSampler(labels, p=3, k=4, seed=0))
    assert len(batches) == 1
    counts = Counter(labels[i] for i in batches[0])
    assert counts == {"a": 4, "b": 4, "c": 4}


def test_too_few_identities_is_a_clear_error():
    with pytest.raises(ValueError, match=r"3 identities in the data but P=4.*lower P"):
        PKBatchSampler(_labels(3, 10), p=4, k=2)


def test_too_few_batches_for_the_ranks_is_a_clear_error():
    with pytest.raises(ValueError, match=r"4 ranks.*makes 1 batches"):
        PKBatchSampler(_labels(2, 4), p=2, k=4, num_replicas=4, rank=0)


def test_accepts_integer_labels():
    labels = np.repeat(np.arange(6), 4)
    batch = next(iter(PKBatchSampler(labels, p=3, k=2, seed=0)))
    assert len(set(labels[batch].tolist())) == 3


def test_every_image_is_seen_each_epoch_and_chunks_hold_distinct_images():
    # 6 images per identity and K=4: ceil(6/4) = 2 chunks each, the second topped up from the first.
    labels = _labels(8, 6)
    sampler = PKBatchSampler(labels, p=4, k=4, seed=5)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 4  # 16 chunks / P=4
        assert {i for batch in batches for i in batch} == set(range(len(labels)))
        for batch in batches:
            by_id: dict[str, list[int]] = {}
            for i in batch:
                by_id.setdefault(labels[i], []).append(i)
            assert len(by_id) == 4
            assert all(len(set(chunk)) == 4 for chunk in by_id.values())


def test_large_identities_are_spread_over_the_epoch():
    # One identity with 40 images (10 chunks), nine with 4 (1 chunk each), P=2: at most 9 batches. Drawn
    # in proportion to their remaining chunks, the large identity pairs with most of the small ones
    # instead of being left over (and dropped) at the end: uniform draws made 5-6 batches here.
    labels = ["big"] * 40 + [f"id{i}" for i in range(9) for _ in range(4)]
    for seed in range(5):
        assert len(list(PKBatchSampler(labels, p=2, k=4, seed=seed))) >= 7


def test_random_batches_are_disjoint_across_ranks_and_seeded_by_epoch():
    from reid_core.data.sampler import RandomBatchSampler

    ranks = [RandomBatchSampler(50, 8, num_replicas=2, rank=r, seed=3) for r in range(2)]
    batches = [list(s) for s in ranks]
    assert [len(b) for b in batches] == [3, 3] == [len(s) for s in ranks]  # 50 // 8 = 6 batches, 3 each
    seen = [i for rank in batches for batch in rank for i in batch]
    assert len(seen) == len(set(seen)) == 48 and all(len(b) == 8 for rank in batches for b in rank)
    assert list(RandomBatchSampler(50, 8, seed=3)) != batches[0]
    again = RandomBatchSampler(50, 8, num_replicas=2, rank=0, seed=3)
    assert list(again) == batches[0]
    again.set_epoch(1)
    assert list(again) != batches[0]
    with pytest.raises(ValueError, match="fewer workers"):
        RandomBatchSampler(10, 8, num_replicas=2)
