"""Networks of the size spaces (AnyNetX classifier, YOLOX-space detector) and the cost counter."""
