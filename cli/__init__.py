"""The ``pnp-stable`` command line (click). Thin: argument handling and image I/O only."""
