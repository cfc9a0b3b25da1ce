"""Pure tensor algorithms (no Pyro): block-tridiagonal linear algebra."""

from pyro_dynvae.ops.block_tridiag import (
    BlockCholesky,
    block_cholesky,
    block_cholesky_ex,
    check_block_shapes,
    dense_from_blocks,
    logdet,
    markov_chain_blocks,
    markov_chain_logdet,
    markov_chain_mean,
    markov_chain_precision,
    matvec,
    quadratic_form,
    selected_inverse,
    solve,
    solve_lower,
    solve_upper,
)

__all__ = [
    "BlockCholesky",
    "block_cholesky",
    "block_cholesky_ex",
    "check_block_shapes",
    "dense_from_blocks",
    "logdet",
    "markov_chain_blocks",
    "markov_chain_logdet",
    "markov_chain_mean",
    "markov_chain_precision",
    "matvec",
    "quadratic_form",
    "selected_inverse",
    "solve",
    "solve_lower",
    "solve_upper",
]
