"""Shared argument checks: accepted values and the errors that name the argument."""

import numpy as np
import pytest

from pyro_dynvae.validation import as_generator, check_positive_int


def test_check_positive_int():
    assert check_positive_int(np.int64(3), "steps") == 3
    assert check_positive_int(0, "seed", minimum=0) == 0
    with pytest.raises(TypeError, match="steps must be an int, got float"):
        check_positive_int(3.0, "steps")
    with pytest.raises(TypeError, match="steps must be an int, got bool"):
        check_positive_int(True, "steps")
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        check_positive_int(0, "steps")


def test_as_generator():
    generator = np.random.default_rng(0)
    assert as_generator(generator) is generator
    assert as_generator(5).integers(1000) == np.random.default_rng(5).integers(1000)
    assert isinstance(as_generator(None), np.random.Generator)
    with pytest.raises(TypeError, match="random_state must be a numpy.random.Generator"):
        as_generator("seed", "random_state")
