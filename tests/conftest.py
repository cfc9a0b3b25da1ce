"""Test-wide settings."""

import torch

# One intra-op thread: the tests use many small tensors, where thread hand-offs cost more than
# they save, and a loaded 2-core CI machine makes oversubscription much worse (a block
# gradcheck took 13 s with two threads and 1-2 s with one, measured on such a machine).
torch.set_num_threads(1)
