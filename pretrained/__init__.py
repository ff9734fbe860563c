"""Weights of the certified denoisers we trained, each ``NAME.pt`` with ``NAME.json`` metadata."""
