"""Known-answer tests of the metrics computed from (codes, factors) arrays."""

import math

import numpy as np
import pytest
import scipy.stats

from pyro_dynvae.metrics import (
    dci,
    dci_completeness,
    dci_disentanglement,
    library_versions,
    mcc,
    mig,
    modularity_explicitness,
    sap,
)
from pyro_dynvae.metrics.dci import IMPORTANCE_EPS
from pyro_dynvae.metrics.mcc import abs_correlation_matrix
from pyro_dynvae.metrics.modularity import modularity_from_mutual_info
from pyro_dynvae.metrics.utils import discrete_mutual_info, histogram_discretize

CARDINALITIES = np.array([4, 5, 6])


@pytest.fixture(scope="module")
def factors():
    return np.random.default_rng(0).integers(CARDINALITIES, size=(900, 3))


def transformed(factors):
    """Ground truth permuted, rescaled, shifted and sign-flipped."""
    return factors[:, [2, 0, 1]] * np.array([-3.0, 0.5, -1.0]) + 7.0


def random_codes(factors, num_codes=3, seed=1):
    return np.random.default_rng(seed).normal(size=(factors.shape[0], num_codes))


def plugin_mutual_info(x, y):
    """Plug-in mutual information from the joint contingency table (nats)."""
    _, x = np.unique(x, return_inverse=True)
    _, y = np.unique(y, return_inverse=True)
    joint = np.zeros((x.max() + 1, y.max() + 1))
    np.add.at(joint, (x, y), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))


# ---------------------------------------------------------------- shared utilities


def test_histogram_discretize_known_bins():
    codes = np.array([[0.0], [0.49], [0.5], [1.0], [0.99]])
    np.testing.assert_array_equal(histogram_discretize(codes, 2)[:, 0], [1, 1, 2, 2, 2])


def test_discrete_mutual_info_matches_contingency_table(factors):
    codes = histogram_discretize(random_codes(factors) + factors, 5)
    expected = [[plugin_mutual_info(codes[:, i], factors[:, j]) for j in range(3)]
                for i in range(3)]
    np.testing.assert_allclose(discrete_mutual_info(codes, factors), expected, rtol=1e-10)


def test_every_metric_records_versions(factors):
    codes = factors.astype(float)
    results = [mig(codes, factors), mcc(codes, factors), sap(codes, factors, continuous=True),
               modularity_explicitness(codes, factors),
               dci(codes, factors, predictor="random_forest")]
    for result in results:
        assert result["versions"] == library_versions()
        assert set(result["versions"]) == {"numpy", "scipy", "scikit-learn"}
        assert all(isinstance(value, float) for key, value in result.items()
                   if key != "versions")


@pytest.mark.parametrize("metric", [mig, sap, modularity_explicitness, dci])
def test_discrete_metrics_reject_continuous_factors(metric, factors):
    with pytest.raises(ValueError, match="integer valued"):
        metric(factors.astype(float), factors + 0.5)


@pytest.mark.parametrize("metric", [mig, mcc, sap, modularity_explicitness, dci])
def test_metrics_reject_bad_shapes(metric, factors):
    with pytest.raises(ValueError, match="codes must have shape"):
        metric(np.zeros(10), factors[:10])
    with pytest.raises(ValueError, match="as many rows"):
        metric(factors[:10].astype(float), factors[:11])


# ---------------------------------------------------------------- MIG


def test_mig_ground_truth_is_one(factors):
    assert mig(factors.astype(float), factors)["mig"] == pytest.approx(1.0, abs=0.01)


def test_mig_invariant_to_permutation_scale_and_sign(factors):
    assert mig(transformed(factors), factors)["mig"] == pytest.approx(
        mig(factors.astype(float), factors)["mig"], abs=1e-12)


def test_mig_needs_enough_bins(factors):
    # two bins cannot resolve six values: the gap falls well below 1
    assert mig(factors.astype(float), factors, num_bins=2)["mig"] < 0.7


def test_mig_duplicated_codes_is_zero(factors):
    codes = np.concatenate([factors, factors], axis=1).astype(float)
    assert mig(codes, factors)["mig"] == pytest.approx(0.0, abs=1e-12)


def test_mig_random_codes_near_zero(factors):
    assert mig(random_codes(factors), factors)["mig"] < 0.02


def test_mig_rejects_constant_factor(factors):
    constant = factors.copy()
    constant[:, 1] = 3
    with pytest.raises(ValueError, match="at least two values"):
        mig(factors.astype(float), constant)


# ---------------------------------------------------------------- DCI formulas


def reference_disentanglement(importance):
    """disentanglement_lib's formula written with scipy.stats.entropy."""
    per_code = 1 - scipy.stats.entropy(importance.T + IMPORTANCE_EPS, base=importance.shape[1])
    return np.sum(per_code * importance.sum(1) / importance.sum())


def reference_completeness(importance):
    per_factor = 1 - scipy.stats.entropy(importance + IMPORTANCE_EPS, base=importance.shape[0])
    return np.sum(per_factor * importance.sum(0) / importance.sum())


def test_dci_diagonal_importance_is_one():
    importance = np.diag([0.3, 1.0, 2.0, 0.5])
    assert dci_disentanglement(importance) == pytest.approx(1.0, abs=1e-8)
    assert dci_completeness(importance) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("num_factors", [4, 6])
def test_dci_codes_carrying_two_factors(num_factors):
    # every code carries two factors evenly, every factor sits in one code
    importance = np.kron(np.eye(num_factors // 2), np.ones((1, 2)))
    expected = 1 - math.log(2) / math.log(num_factors)
    assert dci_disentanglement(importance) == pytest.approx(expected, abs=1e-8)
    assert dci_completeness(importance) == pytest.approx(1.0, abs=1e-8)


def test_dci_one_code_carrying_two_factors_among_others():
    importance = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    mixed = 1 - math.log(2) / math.log(3)
    assert dci_disentanglement(importance) == pytest.approx(2 / 3 * mixed + 1 / 3, abs=1e-8)


@pytest.mark.parametrize("num_factors", [3, 5])
def test_dci_duplicated_codes_completeness(num_factors):
    # each factor split evenly over two of D = 2K codes: C = 1 - ln 2 / ln D
    importance = np.concatenate([np.eye(num_factors), np.eye(num_factors)])
    assert dci_disentanglement(importance) == pytest.approx(1.0, abs=1e-8)
    expected = 1 - math.log(2) / math.log(2 * num_factors)
    assert dci_completeness(importance) == pytest.approx(expected, abs=1e-8)


def test_dci_factor_split_over_two_of_k_codes():
    importance = np.eye(4)
    importance[1, 0] = 1.0  # factor 0 shared evenly by codes 0 and 1 (D = K = 4)
    per_factor = np.array([1 - math.log(2) / math.log(4), 1, 1, 1])
    weights = np.array([2, 1, 1, 1]) / 5
    assert dci_completeness(importance) == pytest.approx(per_factor @ weights, abs=1e-8)


def test_dci_uniform_and_zero_importance_score_zero():
    for importance in (np.ones((3, 4)), np.zeros((3, 4))):
        assert dci_disentanglement(importance) == pytest.approx(0.0, abs=1e-8)
        assert dci_completeness(importance) == pytest.approx(0.0, abs=1e-8)


def test_dci_formulas_match_scipy_entropy_reference():
    importance = np.random.default_rng(3).gamma(0.5, size=(5, 4))
    assert dci_disentanglement(importance) == pytest.approx(
        reference_disentanglement(importance), rel=1e-10)
    assert dci_completeness(importance) == pytest.approx(
        reference_completeness(importance), rel=1e-10)


def test_dci_formulas_reject_bad_importance():
    with pytest.raises(ValueError, match="non-negative"):
        dci_disentanglement(-np.eye(3))
    with pytest.raises(ValueError, match="importance_matrix must have shape"):
        dci_completeness(np.ones((1, 3)))


# ---------------------------------------------------------------- DCI end to end


@pytest.fixture(scope="module")
def small_factors(factors):
    return factors[:360]


def test_dci_gradient_boosting_ground_truth(small_factors):
    result = dci(transformed(small_factors), small_factors)
    assert result["disentanglement"] > 0.97
    assert result["completeness"] > 0.97
    assert result["informativeness_test"] == pytest.approx(1.0)


def test_dci_random_forest_random_codes_at_chance(factors):
    result = dci(random_codes(factors), factors, predictor="random_forest")
    chance = np.mean(1 / CARDINALITIES)
    assert result["informativeness_test"] == pytest.approx(chance, abs=0.06)
    assert result["disentanglement"] < 0.15


def test_dci_duplicated_codes_lower_completeness(factors):
    codes = np.concatenate([factors, factors], axis=1).astype(float)
    result = dci(codes, factors, predictor="random_forest")
    lower = 1 - math.log(2) / math.log(6)  # the even split of each factor over two codes
    assert result["disentanglement"] > 0.97
    assert lower - 0.02 < result["completeness"] < lower + 0.15


def test_dci_uses_given_test_set(small_factors):
    codes = small_factors.astype(float)
    scrambled = np.random.default_rng(0).permutation(small_factors)
    result = dci(codes, small_factors, test_codes=codes, test_factors=scrambled,
                 predictor="random_forest")
    assert result["informativeness_train"] == pytest.approx(1.0)
    assert result["informativeness_test"] < 0.5
    with pytest.raises(ValueError, match="together"):
        dci(codes, small_factors, test_codes=codes)
    with pytest.raises(ValueError, match="predictor"):
        dci(codes, small_factors, predictor="lasso")


# ---------------------------------------------------------------- SAP


def test_sap_continuous_known_answer():
    sources = np.random.default_rng(4).normal(size=(20000, 2))
    codes = np.stack([sources[:, 0], sources[:, 0] + sources[:, 1]], axis=1)
    # R^2 = [[1, 0], [1/2, 1/2]]: gaps 1 - 1/2 and 1/2 - 0
    assert sap(codes, sources, continuous=True)["sap"] == pytest.approx(0.5, abs=0.02)
    assert sap(sources, sources, continuous=True)["sap"] == pytest.approx(1.0, abs=0.01)


def test_sap_discrete(factors):
    ground_truth = sap(factors.astype(float), factors)["sap"]
    assert ground_truth > 0.25
    # permutation invariant; not scale invariant (the SVM's C=0.01 penalty acts on the slope)
    assert sap(factors[:, [2, 0, 1]].astype(float), factors)["sap"] == pytest.approx(
        ground_truth, abs=1e-12)
    assert sap(random_codes(factors), factors)["sap"] < 0.05
    duplicated = np.concatenate([factors, factors], axis=1).astype(float)
    assert sap(duplicated, factors)["sap"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- Modularity / Explicitness


def test_modularity_formula_known_cases():
    assert modularity_from_mutual_info(np.eye(3)[[0, 1, 2, 0]]) == pytest.approx(1.0)
    assert modularity_from_mutual_info(np.ones((2, 3))) == pytest.approx(0.0)
    # delta = 0.5^2 / (1 * (2 - 1)); an uninformative code scores 0
    assert modularity_from_mutual_info([[1.0, 0.5], [0.0, 0.0]]) == pytest.approx(0.75 / 2)


def test_modularity_explicitness_ground_truth_and_random(factors):
    truth = modularity_explicitness(transformed(factors), factors)
    assert truth["modularity"] > 0.99
    assert truth["explicitness_test"] > 0.97
    rand = modularity_explicitness(random_codes(factors), factors)
    assert rand["explicitness_test"] == pytest.approx(0.5, abs=0.06)


def test_modularity_explicitness_constant_factor_is_a_clear_error(factors):
    constant = factors.copy()
    constant[:, 1] = 3
    with pytest.raises(ValueError, match=r"factors\[:, 1\] takes a single value"):
        modularity_explicitness(transformed(factors), constant)


# ---------------------------------------------------------------- MCC


def test_abs_correlation_matrix_matches_scipy(factors):
    codes = random_codes(factors) + factors
    spearman = scipy.stats.spearmanr(codes, factors).statistic[:3, 3:]
    np.testing.assert_allclose(abs_correlation_matrix(codes, factors, "spearman"),
                               np.abs(spearman), rtol=1e-10)
    pearson = np.corrcoef(codes.T, factors.T)[:3, 3:]
    np.testing.assert_allclose(abs_correlation_matrix(codes, factors, "pearson"),
                               np.abs(pearson), rtol=1e-10)


def test_mcc_ground_truth_permuted_flipped_and_monotone(factors):
    assert mcc(factors, factors)["mcc"] == pytest.approx(1.0)
    assert mcc(transformed(factors), factors)["mcc"] == pytest.approx(1.0)
    monotone = np.exp(transformed(factors))
    assert mcc(monotone, factors)["mcc"] == pytest.approx(1.0)
    assert mcc(monotone, factors, method="pearson")["mcc"] < 0.9


def test_mcc_pearson_known_correlation():
    rng = np.random.default_rng(5)
    sources = rng.normal(size=(20000, 3))
    codes = sources[:, ::-1] + rng.normal(size=sources.shape)  # correlation 1 / sqrt(2)
    assert mcc(codes, sources, method="pearson")["mcc"] == pytest.approx(
        1 / math.sqrt(2), abs=0.01)


def test_mcc_rectangular_and_random(factors):
    codes = np.concatenate([random_codes(factors, 4), -factors[:, [1]]], axis=1)
    # only factor 1 is matched perfectly; the other two matches are noise
    result = mcc(codes, factors)["mcc"]
    assert 1 / 3 <= result < 1 / 3 + 0.1
    assert mcc(random_codes(factors), factors)["mcc"] < 0.1
    with pytest.raises(ValueError, match="method"):
        mcc(codes, factors, method="kendall")
