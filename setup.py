"""Package list for setuptools (everything else is in pyproject.toml).

The KFP components and the pipeline live at the top of the repository, where Kubeflow
projects keep them, and ship inside the package as ``prednas.components`` and
``prednas.pipelines`` so that an installed ``prednas`` can compile and run the pipeline.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["prednas", "prednas.*"]), "prednas.components", "prednas.pipelines"])
