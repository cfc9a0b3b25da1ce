"""ChainProductMVN against the dense Gaussian it stands for, and the separate latent chains of
the dynamics VAE against the joint chain."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine
from test_cyclic_reduction import random_precision
from torch.distributions import MultivariateNormal, kl_divergence

from pyro_dynvae.distributions import BlockTridiagMVN, ChainProductMVN
from pyro_dynvae.models import build_model
from pyro_dynvae.models.dynamics import chain_layout

NUM_STEPS, CHAIN_DIM, NUM_CHAINS = 5, 2, 3


def random_product(seed: int, batch: tuple[int, ...] = (2,)) -> ChainProductMVN:
    diag, off = random_precision(batch + (NUM_CHAINS,), NUM_STEPS, CHAIN_DIM, seed=seed)
    loc = torch.randn(batch + (NUM_CHAINS, NUM_STEPS, CHAIN_DIM), dtype=torch.float64)
    return ChainProductMVN(BlockTridiagMVN(loc, diag, off))


def dense_reference(product: ChainProductMVN) -> MultivariateNormal:
    """The joint Gaussian written out by hand: a block-diagonal covariance over the chains,
    reordered from (chain, t, j) to the joint layout (t, j, chain)."""
    chains = product.chains
    covariances = chains.to_dense().covariance_matrix  # (..., m, Tk, Tk)
    m, size = NUM_CHAINS, NUM_STEPS * CHAIN_DIM
    joint = covariances.new_zeros(covariances.shape[:-3] + (m * size, m * size))
    for i in range(m):
        joint[..., i * size:(i + 1) * size, i * size:(i + 1) * size] = covariances[..., i, :, :]
    # joint coordinate (t, j, i) sits at i * size + t * k + j in the chain-major order
    order = torch.tensor([i * size + t * CHAIN_DIM + j for t in range(NUM_STEPS)
                          for j in range(CHAIN_DIM) for i in range(m)])
    loc = chains.mean.flatten(-2).flatten(-2)[..., order]
    return MultivariateNormal(loc, joint[..., order, :][..., order])


def test_density_moments_and_entropy_match_the_dense_joint():
    product = random_product(0)
    reference = dense_reference(product)
    assert product.batch_shape == (2,) and product.event_shape == (NUM_STEPS, 6)
    value = torch.randn(4, 2, NUM_STEPS, 6, dtype=torch.float64)
    torch.testing.assert_close(product.log_prob(value), reference.log_prob(value.flatten(-2)))
    torch.testing.assert_close(product.entropy(), reference.entropy())
    torch.testing.assert_close(product.mean.flatten(-2), reference.mean)
    torch.testing.assert_close(product.variance.flatten(-2), reference.variance)
    joint = product.to_joint()
    torch.testing.assert_close(product.covariance_matrix, reference.covariance_matrix)
    torch.testing.assert_close(product.precision_matrix, reference.precision_matrix)
    dense = product.to_dense()
    torch.testing.assert_close(dense.log_prob(value.flatten(-2)), product.log_prob(value))
    torch.testing.assert_close(joint.log_prob(value), product.log_prob(value))


def test_samples_have_the_joint_covariance_and_match_the_joint_draws():
    product = random_product(1, batch=())
    reference = dense_reference(product)
    torch.manual_seed(0)
    draws = product.rsample((40000,)).flatten(-2)
    # Monte Carlo: 40000 draws, entries of order 1, standard error about 0.005-0.01
    torch.testing.assert_close(draws.mean(0), reference.mean, atol=0.03, rtol=0)
    torch.testing.assert_close(draws.T.cov(), reference.covariance_matrix, atol=0.05, rtol=0)
    # the noise is drawn in the joint layout: the same draws as the joint chain's
    torch.manual_seed(1)
    ours = product.rsample((3,))
    torch.manual_seed(1)
    joint = product.to_joint().rsample((3,))
    torch.testing.assert_close(ours, joint, rtol=1e-9, atol=1e-9)


def test_kl_and_expand():
    q, p = random_product(2), random_product(3)
    expected = kl_divergence(dense_reference(q), dense_reference(p))
    torch.testing.assert_close(kl_divergence(q, p), expected)
    # against one joint chain, either way round
    joint_p = p.to_joint()
    torch.testing.assert_close(kl_divergence(q, joint_p), expected)
    torch.testing.assert_close(kl_divergence(joint_p, q),
                               kl_divergence(dense_reference(p), dense_reference(q)))
    wide = q.expand((4, 2))
    assert wide.batch_shape == (4, 2) and wide.chains.batch_shape == (4, 2, NUM_CHAINS)
    value = torch.randn(4, 2, NUM_STEPS, 6, dtype=torch.float64)
    torch.testing.assert_close(wide.log_prob(value), q.log_prob(value))


def test_wide_chains_present_values_in_the_model_dtype():
    wide = random_product(7)
    narrow = ChainProductMVN(wide.chains, dtype=torch.float32)
    value = torch.randn(2, NUM_STEPS, 6)
    assert narrow.rsample((3,)).dtype == torch.float32 and narrow.mean.dtype == torch.float32
    log_prob = narrow.log_prob(value)
    assert log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob, wide.log_prob(value.double()).float())
    torch.testing.assert_close(narrow.variance, wide.variance.float())
    assert narrow.diag_blocks.dtype == narrow.to_joint().loc.dtype == torch.float32
    assert kl_divergence(narrow, narrow).dtype == torch.float32


def test_errors():
    with pytest.raises(TypeError, match="chains must be a BlockTridiagMVN"):
        ChainProductMVN(MultivariateNormal(torch.zeros(2), torch.eye(2)))
    diag, off = random_precision((), NUM_STEPS, CHAIN_DIM, seed=4)
    with pytest.raises(ValueError, match="batch dim of chains"):
        ChainProductMVN(BlockTridiagMVN(torch.zeros(NUM_STEPS, CHAIN_DIM,
                                                    dtype=torch.float64), diag, off))
    other = ChainProductMVN(BlockTridiagMVN(
        torch.zeros(2, NUM_STEPS, 3, dtype=torch.float64),
        *random_precision((2,), NUM_STEPS, 3, seed=5)))
    with pytest.raises(ValueError, match="same chains"):
        kl_divergence(random_product(6, batch=()), other)
    with pytest.raises(ValueError, match="layout"), chain_layout("interleaved"):
        pass


def small_model(**options):
    pyro.settings.set(module_local_params=True)
    torch.manual_seed(0)
    return build_model("hierarchical", image_size=16, channels=1, latent_dim=3,
                       likelihood="bernoulli", conv_channels=[4, 8], **options).double()


@pytest.mark.parametrize("potential_rank", [0, 2])
def test_the_model_gives_the_same_elbo_with_separate_and_joint_chains(potential_rank):
    """The same guide draw scored under both layouts: every site's log density agrees, so the
    ELBO and its gradients do. Full-rank potentials couple the latents: the posterior is then
    one joint chain, and only the prior is separate."""
    dynvae = small_model(potential_rank=potential_rank)
    frames = (torch.rand(2, 6, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.6)
    frames = frames.double()
    guide_trace = poutine.trace(dynvae.guide).get_trace(frames)
    results = {}
    for layout in ("separate", "joint"):
        with chain_layout(layout):
            guide = poutine.trace(poutine.replay(dynvae.guide, trace=guide_trace)).get_trace(frames)
            model = poutine.trace(poutine.replay(dynvae.model, trace=guide)).get_trace(frames)
            prior = model.nodes["z"]["fn"]
            posterior = guide.nodes["z"]["fn"]
        elbo = model.log_prob_sum() - guide.log_prob_sum()
        params = [p for p in dynvae.parameters() if p.requires_grad]
        grads = torch.autograd.grad(elbo, params, allow_unused=True, retain_graph=True)
        results[layout] = (elbo, grads, type(prior), type(posterior))
    separate, joint = results["separate"], results["joint"]
    assert separate[2] is ChainProductMVN and joint[2] is BlockTridiagMVN
    assert separate[3] is (ChainProductMVN if potential_rank == 0 else BlockTridiagMVN)
    torch.testing.assert_close(separate[0], joint[0], rtol=1e-12, atol=1e-9)
    for ours, theirs in zip(separate[1], joint[1], strict=True):
        if theirs is not None:
            torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_posterior_summaries_agree_between_layouts():
    dynvae = small_model()
    frames = torch.rand(2, 6, 1, 16, 16, dtype=torch.float64)
    with chain_layout("joint"):
        expected = dynvae.encode(frames)
    ours = dynvae.encode(frames)
    assert ours.keys() == expected.keys()
    for key, value in ours.items():
        torch.testing.assert_close(value, expected[key], msg=key)


@pytest.mark.slow
def test_float64_chains_train_where_float32_factorisations_fail(tmp_path):
    """The example's model with the KL annealed over 2000 steps: with float32 chains (the joint
    path here) the posterior precision stops being factorisable at step 95; the separate
    chains, computed in float64, train on."""
    import dataclasses

    from pyro_dynvae.config import TrainConfig
    from pyro_dynvae.train import StepOptions, fit, make_dataset, make_model

    config = TrainConfig(model_overrides={"conv_channels": [8, 16, 32, 32]}, max_steps=110,
                         kl_warmup_steps=2000, val_every=0, checkpoint_every=1000,
                         num_val_sequences=16, threads=1)
    train_data, val_data = make_dataset(config, "train"), make_dataset(config, "test")
    results = {}
    for layout in ("joint", "separate"):
        options = dataclasses.replace(StepOptions(), chain_layout=layout)
        try:
            fit(make_model(config, channels=1), train_data, val_data, config, tmp_path / layout,
                enable_progress_bar=False, step_options=options)
            results[layout] = "trained"
        except ValueError as error:
            results[layout] = str(error)
    assert "not positive definite" in results["joint"]
    assert results["separate"] == "trained"
