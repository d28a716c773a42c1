"""The PredNAS pipeline DAG, its compiled YAML and search configs (installed as ``prednas.pipelines``)."""
