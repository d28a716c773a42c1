"""The PredNAS search as pipeline steps: library functions the KFP components, the CLI and Python share.

- ``config``: search configs (YAML) validated into a ``SearchSpec``;
- ``steps`` and ``report``: sample, evaluate a shard, fit predictors, gradient search, select, close;
- ``inprocess``: all steps in one process; ``local``: the pipeline on kfp.local (``prednas run``);
- ``remote``: compile, submit and schedule on Kubeflow Pipelines;
- ``context``, ``exchange``, ``fitting``: what steps hand each other, evaluator/space resolution,
  the cross-validated predictor fit.
"""
