"""Search strategies: gradient search through predictors (Algorithm 1) and baselines."""
