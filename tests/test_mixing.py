import numpy as np
import pytest

from hf_ptjf import mixture as mixing
from hf_ptjf.mixture import cap_epochs, mixing_rates, plan, proportional, static, temperature, unimax


def test_proportional_hand_values():
    np.testing.assert_allclose(proportional([900, 100]), [0.9, 0.1])
    np.testing.assert_allclose(proportional([1, 1, 2]), [0.25, 0.25, 0.5])


def test_temperature_hand_values_and_limits():
    # (0.9, 0.1) ** (1/2) = (0.948683, 0.316228) -> normalised (0.75, 0.25)
    np.testing.assert_allclose(temperature([900, 100], 2.0), [0.75, 0.25], atol=1e-12)
    sizes = [2_000_000, 50_000, 5_000]
    np.testing.assert_allclose(temperature(sizes, 1.0), proportional(sizes), atol=1e-15)
    np.testing.assert_allclose(temperature(sizes, 1e9), np.full(3, 1 / 3), atol=1e-6)
    # paper's tau=3.33: flatter than proportional, still ordered by size
    q = temperature(sizes, 3.33)
    assert q[0] > q[1] > q[2] and q[2] > proportional(sizes)[2]
    assert q.sum() == pytest.approx(1.0) and q.dtype == np.float64


def test_static_normalises():
    np.testing.assert_allclose(static([3, 1]), [0.75, 0.25])
    np.testing.assert_allclose(static([0, 2]), [0.0, 1.0])


def test_unimax_worked_example():
    # ascending sizes 10, 100, 1000, budget 300, 1 epoch:
    # 10 -> min(300/3, 10) = 10; 100 -> min(290/2, 100) = 100; 1000 -> min(190/1, 1000) = 190
    np.testing.assert_allclose(unimax([1000, 10, 100], budget=300, max_epochs=1), np.array([190, 10, 100]) / 300)
    # a big budget caps everyone at max_epochs
    np.testing.assert_allclose(unimax([10, 30], budget=1e6, max_epochs=2), [0.25, 0.75])


def test_cap_epochs_redistributes_excess():
    # task0 planned 100 examples > cap 2 * 10 = 20: excess 80 goes to task1
    np.testing.assert_allclose(cap_epochs([0.5, 0.5], [10, 1000], budget=200, max_epochs=2), [0.1, 0.9])
    # redistribution proportional to the remaining rates
    q = cap_epochs([0.5, 0.25, 0.25], [10, 1000, 1000], budget=400, max_epochs=1)
    np.testing.assert_allclose(q * 400, [10, 195, 195])
    # budget above total capacity: every task capped, rates proportional to caps
    np.testing.assert_allclose(cap_epochs([0.5, 0.5], [10, 30], budget=1e6, max_epochs=3), [0.25, 0.75])


def test_mixing_rates_by_name_with_cap():
    q = mixing_rates("temperature", [10, 1000], tau=1e9, max_epochs=2, budget=200)  # ~uniform: 100 > cap 20
    np.testing.assert_allclose(q * 200, [20, 180])
    np.testing.assert_allclose(mixing_rates("static", [5, 5], weights=[1, 3]), [0.25, 0.75])
    np.testing.assert_allclose(mixing_rates("unimax", [10, 100, 1000], budget=300), unimax([10, 100, 1000], 300, 1))
    assert set(mixing.RATE_STRATEGIES) == {"proportional", "temperature", "static", "unimax", "odm"}  # odm: online


def test_plan_reports_examples_and_epochs():
    rows = plan([1000, 10], [0.9, 0.1], budget=2000, names=["hr", "lr"])
    assert [r.name for r in rows] == ["hr", "lr"]
    assert rows[0].expected_examples == pytest.approx(1800) and rows[0].expected_epochs == pytest.approx(1.8)
    assert rows[1].expected_examples == pytest.approx(200) and rows[1].expected_epochs == pytest.approx(20)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: proportional([]), "sizes"),
        (lambda: proportional([10, 0]), "sizes"),
        (lambda: temperature([1, 2], 0), "tau"),
        (lambda: temperature([1, 2], -1.0), "tau"),
        (lambda: static([-1, 2]), "weights"),
        (lambda: static([0, 0]), "weights"),
        (lambda: static([1, 2, 3], sizes=[1, 2]), "weights"),
        (lambda: mixing_rates("softmax", [1, 2]), "proportional"),
        (lambda: mixing_rates("temperature", [1, 2]), "tau"),
        (lambda: mixing_rates("temperature", [1, 2], tau=2, bogus=1), "bogus"),
        (lambda: mixing_rates("unimax", [1, 2]), "budget"),
        (lambda: mixing_rates("proportional", [1, 2], max_epochs=2), "budget"),
        (lambda: cap_epochs([0.5, 0.5], [1, 2, 3], 10, 1), "rates"),
        (lambda: plan([1, 2], [1.0], 10), "rates"),
        (lambda: unimax([1, 2], budget=0), "budget"),
    ],
)
def test_invalid_input_names_the_argument(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_a_strategy_defined_outside_the_package_is_used_from_yaml_and_from_the_trainer(tmp_path):
    """A new strategy is one registered function: no edit of the package, usable by name from a recipe and from
    MixtureTrainingArguments, and refused names still get a did-you-mean."""
    from pathlib import Path

    from hf_ptjf.mixture import STRATEGIES, normalise, register_strategy
    from hf_ptjf.recipe import RecipeError, load_recipe
    from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments

    from .toy import collate, tiny_t5, toy_mixture

    @register_strategy("inverse_test")
    def inverse(sizes):  # the smallest task gets the largest rate
        return normalise(1.0 / np.asarray(sizes, dtype=np.float64))

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_strategy("inverse_test")(inverse)
        recipe = Path(__file__).parent / "recipes" / "tiny_ptjf.yaml"
        cfg = load_recipe(recipe, [f"output_dir={tmp_path}", "method_args.mixture={strategy: inverse_test}"])
        rates = cfg.stage_rates(cfg.stages[1], {"en-fr": 600, "en-ro": 80})
        assert rates == pytest.approx({"en-fr": 80 / 680, "en-ro": 600 / 680})
        train, _ = toy_mixture()  # sizes 3000 and 40
        args = MixtureTrainingArguments(output_dir=str(tmp_path / "t"), max_steps=2, report_to=[], use_cpu=True,
                                        mixture_strategy="inverse_test")
        trainer = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate)
        assert trainer.rates.tolist() == pytest.approx([40 / 3040, 3000 / 3040])
        with pytest.raises(RecipeError, match="Did you mean `inverse_test`"):
            load_recipe(recipe, [f"output_dir={tmp_path}", "method_args.mixture={strategy: inverse_tset}"])
    finally:
        del STRATEGIES["inverse_test"]
    assert "inverse_test" not in STRATEGIES
