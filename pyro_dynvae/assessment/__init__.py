"""Assessment of trained models: judges of the factors, study datasets, supervised ceilings."""
