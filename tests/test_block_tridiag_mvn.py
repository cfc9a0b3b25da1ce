"""BlockTridiagMVN against torch.distributions.MultivariateNormal built from the dense
precision, Monte Carlo moments, gradcheck, and the Markov-chain constructor against the chain's
own transition densities and Pyro's GaussianHMM."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from pyro_dynvae.distributions import BlockTridiagMVN
from pyro_dynvae.distributions.testing import random_block_tridiag
from pyro_dynvae.ops import block_tridiag as ops

BLOCKS = ["full", "diagonal"]


def random_mvn(batch_shape, num_steps, dim, blocks="full", seed=0, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    diag, offdiag = random_block_tridiag(
        batch_shape, num_steps, dim, blocks=blocks, generator=generator, **kwargs
    )
    loc = torch.randn(batch_shape + (num_steps, dim), dtype=diag.dtype, generator=generator)
    return BlockTridiagMVN(loc, diag, offdiag, validate_args=True, blocks=blocks)


def dense_reference(d):
    """Independent reference: a MultivariateNormal from the dense precision alone."""
    precision = d.precision_matrix
    return MultivariateNormal(d.loc.flatten(-2), precision_matrix=precision)


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize(
    "batch_shape,num_steps,dim,log10_scale_range",
    [((), 1, 3, 0.0), ((3,), 6, 1, 0.0), ((2, 3), 5, 3, 0.0), ((2,), 25, 3, 3.0)],
)
def test_against_dense_mvn(blocks, batch_shape, num_steps, dim, log10_scale_range):
    d = random_mvn(batch_shape, num_steps, dim, blocks, log10_scale_range=log10_scale_range)
    ref = dense_reference(d)
    assert d.batch_shape == batch_shape and d.event_shape == (num_steps, dim)
    value = torch.randn((4,) + batch_shape + (num_steps, dim), dtype=torch.float64)
    torch.testing.assert_close(d.log_prob(value), ref.log_prob(value.flatten(-2)))
    torch.testing.assert_close(d.entropy(), ref.entropy())
    torch.testing.assert_close(d.mean.flatten(-2), ref.mean)
    torch.testing.assert_close(d.variance.flatten(-2), ref.variance, rtol=1e-9, atol=0)
    cov = ref.covariance_matrix.reshape(batch_shape + (num_steps, dim, num_steps, dim))
    steps = torch.arange(num_steps)
    cov_diag, cov_offdiag = d.covariance_blocks()
    torch.testing.assert_close(
        cov_diag, cov[..., steps, :, steps, :].movedim(0, -3), rtol=1e-9, atol=1e-12
    )
    torch.testing.assert_close(
        cov_offdiag, cov[..., steps[1:], :, steps[:-1], :].movedim(0, -3), rtol=1e-9, atol=1e-12
    )
    torch.testing.assert_close(d.covariance_matrix, ref.covariance_matrix, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        d.to_dense().log_prob(value.flatten(-2)), ref.log_prob(value.flatten(-2))
    )
    torch.testing.assert_close(
        d.info_vec.flatten(-2), (d.precision_matrix @ ref.mean[..., None])[..., 0]
    )


@pytest.mark.parametrize("blocks", BLOCKS)
def test_monte_carlo_moments(blocks):
    # 20000 samples: the standard error of a mean is sd/141 and of a covariance entry about
    # sqrt(2) sd^2/141; the tolerances below are about 5 standard errors.
    torch.manual_seed(0)
    d = random_mvn((2,), 4, 2, blocks)
    samples = d.sample((20000,))
    assert samples.shape == (20000, 2, 4, 2)
    flat = samples.flatten(-2)
    ref = dense_reference(d)
    sd = ref.variance.sqrt()
    assert ((flat.mean(0) - ref.mean).abs() / sd).max() < 5 / 141
    centred = flat - flat.mean(0)
    empirical = torch.einsum("sbi,sbj->bij", centred, centred) / (flat.shape[0] - 1)
    scale = sd[..., :, None] * sd[..., None, :]
    assert ((empirical - ref.covariance_matrix) / scale).abs().max() < 5 * math.sqrt(2) / 141


def test_edge_cases_broadcast_expand_sample_shape():
    generator = torch.Generator().manual_seed(1)
    diag, offdiag = random_block_tridiag((3,), 5, 2, generator=generator)
    loc = torch.randn(2, 1, 5, 2, dtype=torch.float64)
    d = BlockTridiagMVN(loc, diag, offdiag)
    assert d.batch_shape == (2, 3)
    value = torch.randn(7, 1, 1, 5, 2, dtype=torch.float64)
    assert d.log_prob(value).shape == (7, 2, 3)
    assert d.rsample((4, 5)).shape == (4, 5, 2, 3, 5, 2)
    ref = MultivariateNormal(loc.flatten(-2), precision_matrix=d.precision_matrix)
    torch.testing.assert_close(d.log_prob(value), ref.log_prob(value.flatten(-2)))

    expanded = d.expand((4, 2, 3))
    assert expanded.batch_shape == (4, 2, 3)
    assert expanded.sample((6,)).shape == (6, 4, 2, 3, 5, 2)
    torch.testing.assert_close(expanded.entropy(), ref.entropy().expand(4, 2, 3))
    torch.testing.assert_close(expanded.variance, d.variance.expand(4, 2, 3, 5, 2))
    assert expanded.covariance_blocks()[1].shape == (4, 2, 3, 4, 2, 2)
    assert expanded.diag_blocks.shape == (4, 2, 3, 5, 2, 2)
    # expand() of a distribution whose factor is already cached reuses it
    assert expanded._factor is d.__dict__["_factor"]

    scalar_chain = random_mvn((), 1, 1)  # T = 1, n = 1: a univariate normal
    normal = torch.distributions.Normal(
        scalar_chain.loc[0, 0], scalar_chain.diag_blocks[0, 0, 0].rsqrt()
    )
    x = torch.randn(3, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(scalar_chain.log_prob(x), normal.log_prob(x[:, 0, 0]))


@pytest.mark.parametrize("blocks", BLOCKS)
def test_gradcheck_log_prob_entropy_rsample(blocks):
    d = random_mvn((), 4, 2, blocks)
    value = torch.randn(3, 4, 2, dtype=torch.float64)
    params = [
        d.loc.detach().clone().requires_grad_(),
        d._diag.detach().clone().requires_grad_(),
        d._offdiag.detach().clone().requires_grad_(),
    ]

    def symmetric(diag):  # only symmetric perturbations of D_t are meaningful
        return (diag + diag.mT) / 2 if blocks == "full" else diag

    def build(loc, diag, offdiag):
        return BlockTridiagMVN(loc, symmetric(diag), offdiag, blocks=blocks)

    def rsample(*args):
        torch.manual_seed(3)  # fixed noise: the sample is a deterministic function of params
        return build(*args).rsample((2,))

    assert torch.autograd.gradcheck(lambda *a: build(*a).log_prob(value), params)
    assert torch.autograd.gradcheck(lambda *a: build(*a).entropy(), params)
    assert torch.autograd.gradcheck(rsample, params)
    assert torch.autograd.gradcheck(lambda *a: build(*a).variance, params)
    assert torch.autograd.gradcheck(
        lambda h, D, B: BlockTridiagMVN.from_info(h, symmetric(D), B, blocks=blocks).mean,
        params,
    )


def test_rsample_is_reparameterised_sample_of_dense():
    # The same standard-normal noise through L^{-T} gives the same covariance: check that
    # z - loc solves L' x = eps with the dense factor.
    d = random_mvn((2,), 6, 3)
    torch.manual_seed(5)
    z = d.rsample((3,))
    torch.manual_seed(5)
    eps = torch.randn(3, 2, 6, 3, dtype=torch.float64)
    chol = torch.linalg.cholesky(d.precision_matrix)
    expected = torch.linalg.solve_triangular(chol.mT, eps.flatten(-2)[..., None], upper=True)
    torch.testing.assert_close(z - d.loc, expected[..., 0].reshape(z.shape))


@pytest.mark.parametrize("blocks", BLOCKS)
def test_diagonal_path_equals_full_path(blocks):
    d = random_mvn((3,), 7, 4, "diagonal")
    full = BlockTridiagMVN(d.loc, d.diag_blocks, d.offdiag_blocks)
    value = torch.randn(2, 3, 7, 4, dtype=torch.float64)
    torch.testing.assert_close(d.log_prob(value), full.log_prob(value))
    torch.testing.assert_close(d.entropy(), full.entropy())
    torch.testing.assert_close(d.variance, full.variance)
    for a, b in zip(d.covariance_blocks(), full.covariance_blocks(), strict=True):
        torch.testing.assert_close(a, b)
    torch.manual_seed(0)
    a = d.rsample((2,))
    torch.manual_seed(0)
    torch.testing.assert_close(a, full.rsample((2,)))


@pytest.mark.parametrize("blocks", BLOCKS)
def test_from_info(blocks):
    d = random_mvn((2,), 5, 3, blocks)
    info = torch.randn(2, 5, 3, dtype=torch.float64)
    from_info = BlockTridiagMVN.from_info(info, d._diag, d._offdiag, blocks=blocks)
    expected = torch.linalg.solve(d.precision_matrix, info.flatten(-2)[..., None])[..., 0]
    torch.testing.assert_close(from_info.mean.flatten(-2), expected)
    torch.testing.assert_close(from_info.info_vec, info)


def chain_parameters(num_steps, dim, blocks, batch_shape=(), seed=0):
    generator = torch.Generator().manual_seed(seed)
    options = {"dtype": torch.float64, "generator": generator}
    init_loc = torch.randn(batch_shape + (dim,), **options)
    if blocks == "diagonal":
        init_cov = torch.rand(batch_shape + (dim,), **options) + 0.5
        trans = torch.randn(batch_shape + (num_steps - 1, dim), **options)
        noise = torch.rand(batch_shape + (num_steps - 1, dim), **options) + 0.1
        return init_loc, init_cov, trans, noise
    root = torch.randn(batch_shape + (dim, dim), **options)
    init_cov = root @ root.mT + 0.5 * torch.eye(dim, dtype=torch.float64)
    trans = torch.randn(batch_shape + (num_steps - 1, dim, dim), **options) * 0.7
    root = torch.randn(batch_shape + (num_steps - 1, dim, dim), **options) * 0.5
    noise = root @ root.mT + 0.2 * torch.eye(dim, dtype=torch.float64)
    return init_loc, init_cov, trans, noise


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("num_steps", [1, 6])
def test_from_markov_chain_equals_transition_densities(blocks, num_steps):
    init_loc, init_cov, trans, noise = chain_parameters(num_steps, 3, blocks, batch_shape=(2,))
    d = BlockTridiagMVN.from_markov_chain(init_loc, init_cov, trans, noise, blocks=blocks)
    z = torch.randn(4, 2, num_steps, 3, dtype=torch.float64)
    if blocks == "diagonal":
        init_cov, trans, noise = (torch.diag_embed(x) for x in (init_cov, trans, noise))
    expected = MultivariateNormal(init_loc, init_cov).log_prob(z[..., 0, :])
    for t in range(num_steps - 1):
        mean = (trans[:, t] @ z[..., t, :, None])[..., 0]  # column vectors: A_t z_t
        expected = expected + MultivariateNormal(mean, noise[:, t]).log_prob(z[..., t + 1, :])
    torch.testing.assert_close(d.log_prob(z), expected)


@pytest.mark.parametrize("blocks", BLOCKS)
def test_from_markov_chain_explosive_dynamics_in_float32(blocks):
    # Eigenvalue 2.5 over 30 steps: cond(J) ~ 2.5^58, far past float32, so J itself cannot be
    # factorised; log_prob, entropy and the KL to a well-posed guide must not need to.
    num_steps, dim = 30, 2
    ones = torch.ones(num_steps - 1, dim)
    init_cov, trans, noise = torch.ones(dim), 2.5 * ones, 0.1 * ones
    if blocks == "full":
        init_cov, trans, noise = (torch.diag_embed(x) for x in (init_cov, trans, noise))
    chain = BlockTridiagMVN.from_markov_chain(
        torch.zeros(dim), init_cov, trans, noise, blocks=blocks
    )
    _, failed = ops.block_cholesky_ex(chain._diag, chain._offdiag, blocks=blocks)
    assert failed.any()  # the factorisation route would raise here

    z = torch.randn(3, num_steps, dim)
    expected = Normal(0.0, 1.0).log_prob(z[:, 0].double()).sum(-1)
    for t in range(num_steps - 1):
        step = Normal(2.5 * z[:, t].double(), 0.1**0.5).log_prob(z[:, t + 1].double())
        expected = expected + step.sum(-1)
    torch.testing.assert_close(chain.log_prob(z).double(), expected, rtol=1e-5, atol=1e-2)
    log_det = -(num_steps - 1) * dim * math.log(0.1)  # -log|P_0| - sum_t log|Q_t|
    entropy = 0.5 * (num_steps * dim * (1 + math.log(2 * math.pi)) - log_det)
    torch.testing.assert_close(chain.entropy(), torch.tensor(entropy), rtol=1e-6, atol=1e-4)

    guide_diag = chain._diag + torch.ones_like(chain._diag) * (1 if blocks == "diagonal" else 0)
    if blocks == "full":
        guide_diag = guide_diag + torch.eye(dim)
    guide = BlockTridiagMVN(torch.zeros(num_steps, dim), guide_diag, chain._offdiag, blocks=blocks)
    assert torch.isfinite(kl_divergence(guide, chain))


def test_from_markov_chain_against_pyro_gaussian_hmm():
    # Pyro's GaussianHMM right-multiplies row vectors, z_{t+1} = z_t @ M: M = A_t'. Observe
    # x_t = z_t + v_t, v_t ~ N(0, r I), so that x ~ N(mu, Sigma + r I) under our chain. The
    # HMM's initial state precedes the first observation: a zero first transition with
    # noise N(m_0, P_0) makes z_0 ~ N(m_0, P_0).
    num_steps, dim, obs_var = 6, 3, 0.3
    init_loc, init_cov, trans, noise = chain_parameters(num_steps, dim, "full")
    ours = BlockTridiagMVN.from_markov_chain(init_loc, init_cov, trans, noise)
    trans_pyro = torch.cat([torch.zeros(1, dim, dim, dtype=torch.float64), trans.mT])
    hmm = dist.GaussianHMM(
        dist.MultivariateNormal(
            torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64)
        ),
        trans_pyro,
        dist.MultivariateNormal(
            torch.cat([init_loc[None], torch.zeros(num_steps - 1, dim, dtype=torch.float64)]),
            torch.cat([init_cov[None], noise]),
        ),
        torch.eye(dim, dtype=torch.float64),
        dist.MultivariateNormal(
            torch.zeros(dim, dtype=torch.float64), obs_var * torch.eye(dim, dtype=torch.float64)
        ),
    )
    x = torch.randn(5, num_steps, dim, dtype=torch.float64)
    marginal = MultivariateNormal(
        ours.loc.flatten(),
        ours.covariance_matrix + obs_var * torch.eye(num_steps * dim, dtype=torch.float64),
    )
    torch.testing.assert_close(hmm.log_prob(x), marginal.log_prob(x.flatten(-2)))
    # and the untransposed matrix (the wrong convention) gives a different answer
    wrong = BlockTridiagMVN.from_markov_chain(init_loc, init_cov, trans.mT, noise)
    wrong_marginal = MultivariateNormal(
        wrong.loc.flatten(),
        wrong.covariance_matrix + obs_var * torch.eye(num_steps * dim, dtype=torch.float64),
    )
    assert not torch.allclose(hmm.log_prob(x), wrong_marginal.log_prob(x.flatten(-2)))


def test_validation_errors():
    d = random_mvn((2, 3), 8, 2)
    diag = d.diag_blocks.clone()
    diag[0, 2, 4] -= 50 * torch.eye(2, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"not positive definite.*time step 4 \(batch index \(0, 2\)\)"
    ):
        BlockTridiagMVN(d.loc, diag, d.offdiag_blocks, validate_args=True)
    lazy = BlockTridiagMVN(d.loc, diag, d.offdiag_blocks, validate_args=False)
    with pytest.raises(ValueError, match="time step 4"):  # never NaN: raises at first use
        lazy.entropy()
    with pytest.raises(
        ValueError, match=r"loc must have shape \(\.\.\., T, n\) = \(\.\.\., 8, 2\).*got \(8, 3\)"
    ):
        BlockTridiagMVN(torch.zeros(8, 3, dtype=torch.float64), d.diag_blocks, d.offdiag_blocks)
    with pytest.raises(ValueError, match=r"offdiag_blocks must have trailing shape .*\(7, 2, 2\)"):
        BlockTridiagMVN(d.loc, d.diag_blocks, d.offdiag_blocks[..., :6, :, :])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, n\) for blocks='diagonal'"):
        BlockTridiagMVN(d.loc, torch.ones(2, dtype=torch.float64),
                        torch.ones(1, dtype=torch.float64), blocks="diagonal")
    with pytest.raises(ValueError, match="diag_blocks must be symmetric"):
        BlockTridiagMVN(
            d.loc,
            d.diag_blocks + torch.triu(torch.ones(2, 2), 1),
            d.offdiag_blocks,
            validate_args=True,
        )
    with pytest.raises(TypeError, match="loc must be a floating-point tensor"):
        BlockTridiagMVN(torch.zeros(8, 2, dtype=torch.long), d.diag_blocks, d.offdiag_blocks)
    with pytest.raises(ValueError, match="info_vec must have shape"):
        BlockTridiagMVN.from_info(
            torch.zeros(7, 2, dtype=torch.float64), d.diag_blocks, d.offdiag_blocks
        )


def test_float32_and_pyro_sample_in_plate():
    d = random_mvn((), 10, 3)
    d32 = BlockTridiagMVN(d.loc.float(), d._diag.float(), d._offdiag.float())
    value = torch.randn(4, 10, 3)
    torch.testing.assert_close(
        d32.log_prob(value).double(), d.log_prob(value.double()), rtol=1e-5, atol=1e-4
    )
    assert d32.rsample().dtype == torch.float32

    def model():
        with pyro.plate("sequences", 4):
            return pyro.sample("z", d32)

    trace = pyro.poutine.trace(model).get_trace()
    assert trace.nodes["z"]["value"].shape == (4, 10, 3)
    assert trace.log_prob_sum().shape == ()
    assert BlockTridiagMVN.support.event_dim == 2 and BlockTridiagMVN.has_rsample


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("blocks", BLOCKS)
def test_cuda_matches_cpu(blocks):
    d = random_mvn((3,), 20, 4, blocks)
    on_gpu = BlockTridiagMVN(d.loc.cuda(), d._diag.cuda(), d._offdiag.cuda(), blocks=blocks)
    value = torch.randn(2, 3, 20, 4, dtype=torch.float64)
    torch.testing.assert_close(on_gpu.log_prob(value.cuda()).cpu(), d.log_prob(value))
    torch.testing.assert_close(on_gpu.variance.cpu(), d.variance)
    assert on_gpu.rsample((2,)).is_cuda
