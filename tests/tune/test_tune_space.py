"""The search space: step choices, the rate = reach / frames mapping, projecting existing settings."""

from __future__ import annotations

import pytest

from raygan.config import AUTHORS_INVERSION, InversionConfig, TraversalConfig
from raygan.tune.space import SearchSpace, param_space, params_from_settings, settings_from_params, step_choices


def test_step_choices_are_fractions_of_the_budget() -> None:
    assert step_choices(SearchSpace(), max_steps=300) == [75, 150, 300]
    assert step_choices(SearchSpace(), max_steps=2) == [1, 2]
    with pytest.raises(ValueError):
        step_choices(SearchSpace(), max_steps=0)


def test_params_map_to_configs_with_rate_from_reach() -> None:
    base_inv = InversionConfig(schedule="cosine", early_stop_tol=1e-4, restarts=2)
    params = {"mse_weight": 2.0, "bce_weight": 0.5, "lr": 0.03, "steps": 150,
              "counterfactual_weight": 0.7, "reach": 1.2, "frames": 8}
    inv, trav = settings_from_params(params, base_inversion=base_inv, base_traversal=TraversalConfig())
    assert (inv.mse_weight, inv.bce_weight, inv.lr, inv.steps, inv.counterfactual_weight) == (2.0, 0.5, 0.03, 150, 0.7)
    assert (inv.schedule, inv.early_stop_tol, inv.restarts) == ("cosine", 1e-4, 2)  # the rest is the bundle's
    assert trav.frames == 8 and trav.rate == pytest.approx(0.15)
    assert trav.frames * trav.rate == pytest.approx(1.2)


def test_existing_settings_snap_into_the_space() -> None:
    point = params_from_settings(AUTHORS_INVERSION, TraversalConfig(frames=10, rate=0.1), space=SearchSpace(),
                                 max_steps=300)
    assert point == {"mse_weight": 4.0, "bce_weight": 1.0, "lr": 0.01, "steps": 300,
                     "counterfactual_weight": 0.0, "reach": pytest.approx(1.0), "frames": 10}


def test_param_space_has_every_searched_field() -> None:
    from ray import tune

    space = param_space(SearchSpace(), max_steps=40)
    assert set(space) == {"mse_weight", "bce_weight", "lr", "steps", "counterfactual_weight", "reach", "frames"}
    assert isinstance(space["lr"], tune.search.sample.Float)
    assert space["steps"].categories == [10, 20, 40]


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="log scale"):
        SearchSpace(lr=(0.0, 0.1))
    with pytest.raises(ValueError, match="steps_fractions"):
        SearchSpace(steps_fractions=(1.5,))
