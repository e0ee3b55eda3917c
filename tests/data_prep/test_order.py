import numpy as np
import pytest

from data_prep.order import TrainOrder, block_size, mix_choices, process_shards


def _shards(counts):
    return process_shards([f"s{i}" for i in range(len(counts))], counts)


def test_a_pass_reads_every_row_once_in_groups_of_whole_blocks():
    counts = [300, 10, 250, 40, 0, 125]
    order = TrainOrder(_shards(counts), block=16, group_records=280, seed=4)
    groups = list(order.groups())
    assert sorted(p for g in groups for p in g.paths) == [f"s{i}" for i in range(6)]
    for k, g in enumerate(groups):
        n = sum(g.rows)
        assert len(g.order) % 16 == 0 and len(g.order) - n < 16
        assert sorted(set(g.order.tolist())) == list(range(n))  # a permutation, topped up from itself
        if k < len(groups) - 1:
            assert len(g.paths) >= 2 and n >= 280
    again = list(TrainOrder(_shards(counts), block=16, group_records=280, seed=4).groups())
    assert all(np.array_equal(a.order, b.order) and a.paths == b.paths for a, b in zip(groups, again))
    second = list(order.groups())  # the next iteration is the next pass: another order
    assert [g.paths for g in second] != [g.paths for g in groups] or not all(
        np.array_equal(a.order, b.order) for a, b in zip(groups, second))


def test_repeat_runs_pass_after_pass_and_processes_split_the_shards():
    order = TrainOrder(_shards([50, 60, 70]), block=8, group_records=1, seed=0, repeat=True)
    it = order.groups()
    firsts = [next(it) for _ in range(6)]  # 2 groups per pass: 2 shards, then the one left
    assert [len(g.paths) for g in firsts] == [2, 1] * 3 and sum(sum(g.rows) for g in firsts) == 3 * 180
    p = [process_shards(["a", "b", "c", "d", "e"], [5] * 5, i, 2) for i in range(2)]
    assert p[0].paths == ("a", "c", "e") and p[1].paths == ("b", "d") and p[0].stride == 1
    rows = process_shards(["a"], [7], 1, 3)
    assert rows.stride == 3 and rows.offset == 1 and rows.rows == (2,)
    with pytest.raises(ValueError, match="no records"):
        TrainOrder(process_shards(["a"], [1], 2, 3), 4, 10, 0)


def test_mix_choices_follow_the_weights_and_block_sizes_divide_the_batch():
    draws = next(mix_choices(1, [1, 3], 2))
    assert 0.7 < draws.mean() < 0.8
    assert np.array_equal(next(mix_choices(1, [1, 3], 2)), next(mix_choices(1, [1, 3], 2)))
    with pytest.raises(ValueError):
        next(mix_choices(0, [1, -1], 2))
    assert [block_size(b, 64) for b in (1024, 100, 96, 7, 1000)] == [64, 50, 48, 7, 50]
