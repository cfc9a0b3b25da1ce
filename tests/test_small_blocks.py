"""The closed-form 2x2 routines against LAPACK (torch.linalg), values and gradients."""

import pytest
import torch

from pyro_dynvae.ops import small_blocks


def _spd(*shape: int) -> torch.Tensor:
    root = torch.randn(*shape, 2, 2, dtype=torch.float64)
    return root @ root.mT + 0.1 * torch.eye(2, dtype=torch.float64)


def _lower(*shape: int) -> torch.Tensor:
    return torch.linalg.cholesky(_spd(*shape))


def test_cholesky_matches_lapack_and_reads_the_lower_triangle():
    torch.manual_seed(0)
    matrix = _spd(7, 3)
    chol, info = small_blocks.cholesky_ex(matrix)
    expected, expected_info = torch.linalg.cholesky_ex(matrix)
    assert torch.allclose(chol, expected, atol=1e-13)
    assert torch.equal(info, expected_info) and info.dtype == expected_info.dtype
    garbage_above = matrix.clone()
    garbage_above[..., 0, 1] = 99.0
    assert torch.equal(small_blocks.cholesky_ex(garbage_above)[0], chol)


def test_cholesky_info_names_the_failing_minor():
    matrix = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]],
                           [[1.0, 2.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    _, info = small_blocks.cholesky_ex(matrix)
    assert info.tolist() == torch.linalg.cholesky_ex(matrix).info.tolist() == [0, 1, 2, 1]


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("left", [False, True])
def test_solve_triangular_matches_lapack_with_broadcasting(upper, left):
    torch.manual_seed(1)
    chol = _lower(4, 1)
    chol = chol.mT if upper else chol
    rhs = torch.randn(4, 5, 2, 3, dtype=torch.float64) if left else torch.randn(
        4, 5, 3, 2, dtype=torch.float64)
    # the triangle not named by ``upper`` is never read
    noisy = chol + (torch.randn_like(chol).tril(-1) if upper else torch.randn_like(chol).triu(1))
    got = small_blocks.solve_triangular(noisy, rhs, upper=upper, left=left)
    expected = torch.linalg.solve_triangular(chol, rhs, upper=upper, left=left)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)


def test_cholesky_inverse_matches_lapack():
    torch.manual_seed(2)
    chol = _lower(6)
    assert torch.allclose(small_blocks.cholesky_inverse(chol), torch.cholesky_inverse(chol),
                          atol=1e-12)


def test_gradients_match_lapack():
    torch.manual_seed(3)
    matrix, rhs = _spd(5), torch.randn(5, 2, 3, dtype=torch.float64)
    weights = [torch.randn(5, 2, 2, dtype=torch.float64) for _ in range(2)]

    def loss(cholesky_ex, solve, inverse, matrix, rhs):
        chol = cholesky_ex(matrix)[0]
        return ((solve(chol, rhs, upper=False) ** 2).sum() + (inverse(chol) * weights[0]).sum()
                + (solve(chol.mT, weights[1], upper=True, left=False) ** 2).sum())

    grads = []
    for routines in ((small_blocks.cholesky_ex, small_blocks.solve_triangular,
                      small_blocks.cholesky_inverse),
                     (torch.linalg.cholesky_ex, torch.linalg.solve_triangular,
                      torch.cholesky_inverse)):
        inputs = (matrix.clone().requires_grad_(), rhs.clone().requires_grad_())
        grads.append(torch.autograd.grad(loss(*routines, *inputs), inputs))
    # LAPACK's Cholesky backward symmetrises the gradient; compare the symmetric parts
    sym = [(g[0] + g[0].mT) / 2 for g in grads]
    assert torch.allclose(sym[0], sym[1], atol=1e-10)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-10)
    inputs = (matrix.clone().requires_grad_(), rhs.clone().requires_grad_())
    assert torch.autograd.gradcheck(
        lambda m, r: loss(small_blocks.cholesky_ex, small_blocks.solve_triangular,
                          small_blocks.cholesky_inverse, (m + m.mT) / 2, r), inputs)


def test_other_sizes_go_to_lapack():
    torch.manual_seed(4)
    root = torch.randn(3, 4, 4, dtype=torch.float64)
    matrix = root @ root.mT + torch.eye(4, dtype=torch.float64)
    chol, info = small_blocks.cholesky_ex(matrix)
    assert torch.equal(chol, torch.linalg.cholesky_ex(matrix)[0])
    rhs = torch.randn(3, 4, 2, dtype=torch.float64)
    assert torch.equal(small_blocks.solve_triangular(chol, rhs, upper=False),
                       torch.linalg.solve_triangular(chol, rhs, upper=False))
    assert torch.equal(small_blocks.cholesky_inverse(chol), torch.cholesky_inverse(chol))
