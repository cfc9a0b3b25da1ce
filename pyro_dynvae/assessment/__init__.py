"""How a trained run is scored, in one place: unbiased code scores, probes, judges of the
factors, the study datasets and supervised ceilings, and the variant study.

- :mod:`~pyro_dynvae.assessment.scoring`: codes against ground-truth factors on many held-out
  sequences, frames drawn per sequence (:mod:`~pyro_dynvae.assessment.sampling`), every
  predictor (:mod:`~pyro_dynvae.assessment.predictors`) fitted on some sequences and tested on
  others;
- :mod:`~pyro_dynvae.assessment.probes`: per-factor linear and nonlinear probes;
- :mod:`~pyro_dynvae.assessment.judge`: a supervised reader of every factor of a frame;
- :mod:`~pyro_dynvae.assessment.protocol`: the static/dynamic protocol, read by a judge: the
  split from the model's own dynamics (:mod:`~pyro_dynvae.assessment.split`), its agreement
  with the truth (:mod:`~pyro_dynvae.assessment.agreement`), the swap and prior-sample tests
  (:mod:`~pyro_dynvae.assessment.swap`) and object vs background
  (:mod:`~pyro_dynvae.assessment.background`);
- :mod:`~pyro_dynvae.assessment.study`: the variant comparison study, at the cost of its
  :mod:`~pyro_dynvae.assessment.budget`, each trained model scored by
  :mod:`~pyro_dynvae.assessment.cell_scores`.

Submodules are imported on demand (``from pyro_dynvae.assessment import scoring``): the study
imports the training code, which itself imports the scoring.
"""
