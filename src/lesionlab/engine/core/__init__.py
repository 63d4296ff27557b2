"""The steps every training job shares: run data, fit, operating point on validation, the one test look."""
