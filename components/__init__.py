"""KFP v2 components: one thin step per PredNAS stage (installed as ``prednas.components``).

Each component reads its inputs, calls one ``prednas.pipeline`` function and writes its
outputs; the work itself lives in the library so it also runs from Python and the CLI.
"""

from prednas.components.close_run import close_run
from prednas.components.evaluate import evaluate
from prednas.components.fit_predictors import fit_predictors
from prednas.components.image import IMAGE
from prednas.components.propose import propose
from prednas.components.sample import sample
from prednas.components.select import select
from prednas.components.select_final import select_final

__all__ = ["IMAGE", "close_run", "evaluate", "fit_predictors", "propose", "sample", "select", "select_final"]
