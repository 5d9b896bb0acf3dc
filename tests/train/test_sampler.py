"""The data order: a function of (seed, epoch), the same global batches for any process count."""

import pytest

from diffris.errors import InputError
from diffris.train.sampler import StepShardSampler
from diffris.train.schedule import PolySchedule, chunk_seed


def shards(size: int, world: int, *, batch: int = 8, device: int = 2, epoch: int = 0):
    samplers = [
        StepShardSampler(
            range(size), global_batch=batch, device_batch=device, num_replicas=world, rank=r, seed=3
        )
        for r in range(world)
    ]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return samplers


def test_global_batches_and_chunks_do_not_depend_on_the_process_count() -> None:
    one = shards(37, 1)[0]
    two = shards(37, 2)
    four = shards(37, 4)
    assert one.steps_per_epoch == 4  # 37 // 8, the tail is dropped
    for step in range(one.steps_per_epoch):
        reference = one.step_indices(step)
        assert len(reference) == len(set(reference)) == 8
        # chunk c of the step is the same samples whoever runs it
        chunks = {one.chunk(m): reference[m * 2 : m * 2 + 2] for m in range(one.micro_batches)}
        for world in (two, four):
            seen = {}
            for sampler in world:
                mine = sampler.step_indices(step)
                for m in range(sampler.micro_batches):
                    seen[sampler.chunk(m)] = mine[m * 2 : m * 2 + 2]
            assert seen == chunks


def test_order_is_a_function_of_seed_and_epoch_and_iteration_resumes_mid_epoch() -> None:
    a, b = shards(40, 2)[1], shards(40, 2)[1]
    assert list(a) == list(b)
    epoch1 = shards(40, 2, epoch=1)[1]
    assert list(epoch1) != list(a)
    full = list(a)
    a.set_position(0, 3)  # resume at the fourth step of epoch 0
    assert list(a) == full[3 * 4 :]
    assert len(a) == len(full) - 12


def test_a_split_smaller_than_one_global_batch_is_refused() -> None:
    with pytest.raises(InputError, match="fewer than one global batch of 8; use --batch-size 5"):
        shards(5, 1)


def test_poly_schedule_and_chunk_seeds() -> None:
    schedule = PolySchedule(1e-3, total_steps=10, power=0.9)
    assert schedule.lr(0) == 1e-3
    assert schedule.lr(5) == pytest.approx(1e-3 * 0.5**0.9)
    assert schedule.lr(10) == 0.0
    seeds = {chunk_seed(0, step, chunk) for step in range(20) for chunk in range(8)}
    assert len(seeds) == 160 and all(0 <= s < 2**63 for s in seeds)
    assert chunk_seed(1, 0, 0) != chunk_seed(0, 0, 0)
