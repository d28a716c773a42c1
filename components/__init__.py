"""KFP v2 components: one thin step per PredNAS stage (installed as ``prednas.components``)."""
