"""BlockTridiagMVN at its edges: empty batches behave like any torch distribution, mixed dtypes,
non-symmetric diagonal blocks and bad Markov-chain parameters give errors naming the argument,
and without validation the symmetric part of ``D_t`` is what every method uses."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, biject_to, kl_divergence, transform_to

from pyro_dynvae.distributions import BlockTridiagMVN
from pyro_dynvae.distributions.testing import random_block_tridiag
from pyro_dynvae.ops.dispatch import block_tridiag_algorithm

BLOCKS = ["full", "diagonal"]


def chain_parameters(batch_shape, num_steps, dim, blocks, dtype=torch.float64):
    """``(init_loc, init_cov, trans_matrix, trans_cov)`` of a stable chain."""
    eye = torch.eye(dim, dtype=dtype)
    if blocks == "full":
        covs = eye.expand(*batch_shape, dim, dim), 0.5 * eye.expand(*batch_shape, num_steps - 1,
                                                                    dim, dim)
        trans = 0.9 * eye.expand(*batch_shape, num_steps - 1, dim, dim)
    else:
        covs = torch.ones(*batch_shape, dim, dtype=dtype), torch.full(
            (*batch_shape, num_steps - 1, dim), 0.5, dtype=dtype)
        trans = torch.full((*batch_shape, num_steps - 1, dim), 0.9, dtype=dtype)
    return torch.zeros(*batch_shape, dim, dtype=dtype), covs[0], trans, covs[1]


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("algorithm", ["sequential", "cyclic", "dense"])
@pytest.mark.parametrize("blocks", BLOCKS)
def test_empty_batch_works_like_a_torch_distribution(blocks, algorithm, validate):
    num_steps, dim = 17, 3
    diag, offdiag = random_block_tridiag((0,), num_steps, dim, blocks=blocks)
    loc = torch.zeros(0, num_steps, dim, dtype=torch.float64)
    reference = Normal(loc, 1.0, validate_args=validate)  # what torch does with (0,) batches
    with block_tridiag_algorithm(algorithm):
        d = BlockTridiagMVN(loc, diag, offdiag, validate_args=validate, blocks=blocks)
        assert d.batch_shape == (0,) and d.event_shape == (num_steps, dim)
        assert d.log_prob(loc).shape == reference.log_prob(loc).sum((-1, -2)).shape == (0,)
        assert d.rsample((2,)).shape == reference.rsample((2,)).shape == (2, 0, num_steps, dim)
        assert d.entropy().shape == (0,)
        assert d.variance.shape == (0, num_steps, dim)
        cov_diag, cov_offdiag = d.covariance_blocks()
        assert cov_diag.shape == (0, num_steps, dim, dim)
        assert cov_offdiag.shape == (0, num_steps - 1, dim, dim)
        assert kl_divergence(d, d).shape == (0,)
        info = BlockTridiagMVN.from_info(loc, diag, offdiag, validate_args=validate,
                                         blocks=blocks)
        assert info.mean.shape == (0, num_steps, dim)
        chain = BlockTridiagMVN.from_markov_chain(
            *chain_parameters((0,), num_steps, dim, blocks), validate_args=validate,
            blocks=blocks,
        )
        assert chain.log_prob(loc).shape == chain.entropy().shape == (0,)
        assert chain.rsample().shape == (0, num_steps, dim)
        # A batch of sequences broadcast against shared (unbatched) blocks.
        shared_diag, shared_offdiag = random_block_tridiag((), num_steps, dim, blocks=blocks)
        shared = BlockTridiagMVN(loc, shared_diag, shared_offdiag, validate_args=validate,
                                 blocks=blocks)
        assert shared.log_prob(loc).shape == shared.rsample().shape[:1] == (0,)


@pytest.mark.parametrize("blocks", BLOCKS)
def test_no_samples_of_a_nonempty_batch(blocks):
    diag, offdiag = random_block_tridiag((2,), 5, 2, blocks=blocks)
    d = BlockTridiagMVN(torch.zeros(2, 5, 2, dtype=torch.float64), diag, offdiag, blocks=blocks)
    assert d.rsample((0,)).shape == (0, 2, 5, 2)
    assert d.log_prob(torch.zeros(0, 2, 5, 2, dtype=torch.float64)).shape == (0, 2)


def test_support_transforms_are_torch_ones():
    d = BlockTridiagMVN(torch.zeros(3, 2), torch.eye(2).expand(3, 2, 2), torch.zeros(2, 2, 2))
    x = torch.randn(4, 3, 2)
    for registry in (biject_to, transform_to):
        transform = registry(d.support)
        torch.testing.assert_close(transform(x), x)
        assert transform.domain.event_dim == 2
    assert d.support.check(x).shape == (4,)


def test_mixed_dtypes_name_the_arguments():
    diag, offdiag = random_block_tridiag((), 4, 2)  # float64
    loc = torch.zeros(4, 2, dtype=torch.float32)
    message = ("the arguments must have one dtype, got loc torch.float32, diag_blocks "
               "torch.float64, offdiag_blocks torch.float64")
    with pytest.raises(TypeError, match=message):
        BlockTridiagMVN(loc, diag, offdiag)
    with pytest.raises(TypeError, match="info_vec torch.float32, diag_blocks torch.float64"):
        BlockTridiagMVN.from_info(loc, diag, offdiag)
    init_loc, init_cov, trans_matrix, trans_cov = chain_parameters((), 4, 2, "full")
    with pytest.raises(TypeError, match="trans_matrix torch.float64, trans_cov torch.float32"):
        BlockTridiagMVN.from_markov_chain(init_loc, init_cov, trans_matrix, trans_cov.float())
    with pytest.raises(TypeError, match="init_cov must be a floating-point tensor"):
        BlockTridiagMVN.from_markov_chain(init_loc, torch.eye(2, dtype=torch.long), trans_matrix,
                                          trans_cov)


def dense_precision(diag: torch.Tensor, offdiag: torch.Tensor) -> torch.Tensor:
    """Assemble J entry by entry (an independent reference for one unbatched sequence)."""
    num_steps, dim = diag.shape[-3], diag.shape[-1]
    dense = torch.zeros(num_steps * dim, num_steps * dim, dtype=diag.dtype)
    for t in range(num_steps):
        dense[t * dim:(t + 1) * dim, t * dim:(t + 1) * dim] = diag[t]
    for t in range(num_steps - 1):
        dense[(t + 1) * dim:(t + 2) * dim, t * dim:(t + 1) * dim] = offdiag[t]
        dense[t * dim:(t + 1) * dim, (t + 1) * dim:(t + 2) * dim] = offdiag[t].mT
    return dense


@pytest.mark.parametrize("algorithm", ["sequential", "cyclic", "dense"])
def test_non_symmetric_diagonal_blocks(algorithm):
    num_steps, dim = 17, 3
    diag, offdiag = random_block_tridiag((), num_steps, dim)
    skewed = diag.clone()
    skewed[2] += 0.3 * torch.triu(torch.ones(dim, dim, dtype=torch.float64), 1)
    loc = torch.randn(num_steps, dim, dtype=torch.float64)
    value = torch.randn(num_steps, dim, dtype=torch.float64)
    with block_tridiag_algorithm(algorithm):
        with pytest.raises(ValueError, match="diag_blocks must be symmetric.*time step 2"):
            BlockTridiagMVN(loc, skewed, offdiag, validate_args=True)
        with pytest.raises(ValueError, match="diag_blocks must be symmetric.*time step 2"):
            BlockTridiagMVN.from_info(loc, skewed, offdiag, validate_args=True)
        # Without validation: the symmetric part, for the quadratic form and the determinant.
        d = BlockTridiagMVN(loc, skewed, offdiag, validate_args=False)
        symmetric = (skewed + skewed.mT) / 2
        reference = MultivariateNormal(loc.flatten(), precision_matrix=dense_precision(
            symmetric, offdiag))
        torch.testing.assert_close(d.log_prob(value), reference.log_prob(value.flatten()))
        torch.testing.assert_close(d.entropy(), reference.entropy())
        torch.testing.assert_close(d.diag_blocks, symmetric)
        info = BlockTridiagMVN.from_info(loc, skewed, offdiag, validate_args=False)
        expected_mean = torch.linalg.solve(dense_precision(symmetric, offdiag), loc.flatten())
        torch.testing.assert_close(info.mean.flatten(), expected_mean)
    # The lower triangle alone (what a Cholesky reads) would give another density.
    lower = torch.tril(skewed) + torch.tril(skewed, -1).mT
    other = MultivariateNormal(loc.flatten(), precision_matrix=dense_precision(lower, offdiag))
    assert not torch.allclose(other.log_prob(value.flatten()), reference.log_prob(value.flatten()))


@pytest.mark.parametrize(
    "argument, shape, message",
    [
        ("init_loc", (3,), r"init_loc must have trailing shape \(2,\) to match trans_matrix "
                           r"\(4, 2, 2\) \(blocks='full'\), got \(3,\)"),
        ("init_cov", (3, 3), r"init_cov must have trailing shape \(2, 2\) to match trans_matrix "
                             r"\(4, 2, 2\) \(blocks='full'\), got \(3, 3\)"),
        ("trans_cov", (3, 2, 2), r"trans_cov must have trailing shape \(4, 2, 2\)"),
        ("trans_matrix", (4, 2, 3), r"trans_matrix must have shape \(\.\.\., T-1, n, n\)"),
        ("trans_matrix", (2,), r"trans_matrix must have shape \(\.\.\., T-1, n, n\)"),
    ],
)
def test_from_markov_chain_names_the_bad_shape(argument, shape, message):
    parameters = dict(zip(["init_loc", "init_cov", "trans_matrix", "trans_cov"],
                          chain_parameters((), 5, 2, "full"), strict=True))
    parameters[argument] = torch.ones(shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=message):
        BlockTridiagMVN.from_markov_chain(**parameters, validate_args=False)


def test_from_markov_chain_diagonal_shapes():
    init_loc, init_cov, trans_matrix, trans_cov = chain_parameters((), 5, 2, "diagonal")
    with pytest.raises(ValueError, match=r"trans_cov must have trailing shape \(4, 2\)"):
        BlockTridiagMVN.from_markov_chain(init_loc, init_cov, trans_matrix, trans_cov[:3],
                                          blocks="diagonal")
    with pytest.raises(ValueError, match=r"init_loc must have trailing shape \(2,\)"):
        BlockTridiagMVN.from_markov_chain(init_loc[:1], init_cov, trans_matrix, trans_cov,
                                          blocks="diagonal")


def test_non_finite_loc_or_offdiag_is_named_by_the_constraint_check():
    diag, offdiag = random_block_tridiag((), 6, 2)
    loc = torch.zeros(6, 2, dtype=torch.float64)
    bad_loc, bad_offdiag = loc.clone(), offdiag.clone()
    bad_loc[3, 1], bad_offdiag[2, 0, 1] = math.nan, math.nan
    with pytest.raises(ValueError, match="Expected parameter loc"):
        BlockTridiagMVN(bad_loc, diag, offdiag, validate_args=True)
    with pytest.raises(ValueError, match="Expected parameter offdiag_blocks"):
        BlockTridiagMVN(loc, diag, bad_offdiag, validate_args=True)


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("argument", ["init_loc", "init_cov", "trans_matrix", "trans_cov"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_from_markov_chain_names_the_non_finite_argument(argument, bad, blocks):
    names = ["init_loc", "init_cov", "trans_matrix", "trans_cov"]
    parameters = dict(zip(names, chain_parameters((3,), 5, 2, blocks), strict=True))
    parameters[argument] = parameters[argument].clone()
    parameters[argument].view(-1)[-1] = bad
    with pytest.raises(ValueError, match=f"^{argument} must be finite"):
        BlockTridiagMVN.from_markov_chain(**parameters, validate_args=True, blocks=blocks)
