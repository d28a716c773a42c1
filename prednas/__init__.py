"""prednas: PredNAS, predictor-based neural architecture search, as a library, CLI and Kubeflow pipeline."""

__version__ = "0.1.0"
