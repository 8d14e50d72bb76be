"""The default run length on cached features: from the number of maps, longer on small data with input dropout."""

from multibox.engine.tasks import CACHED_MAX_STEPS, CACHED_STEPS, cached_steps


def test_small_data_runs_a_floor_that_grows_with_input_dropout():
    assert cached_steps(320, 8) == CACHED_STEPS  # 8 aerial tiles x 8 transforms x 5 scales
    assert cached_steps(320, 8, dropout=0.5) == 3 * CACHED_STEPS == 4_500  # the default's (docs/quality.md)
    assert cached_steps(320, 8, dropout=0.3) == 3_300
    assert cached_steps(320, 8, dropout=0.3) < cached_steps(320, 8, dropout=0.4) < cached_steps(320, 8, dropout=0.5)


def test_large_data_gets_windows_per_map_up_to_the_cap():
    assert cached_steps(2_000, 8) == cached_steps(2_000, 8, dropout=0.5) == 5_000  # 20 windows a map, past both floors
    assert cached_steps(10**6, 8) == CACHED_MAX_STEPS
