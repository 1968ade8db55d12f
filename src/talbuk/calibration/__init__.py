"""Calibration, validation, ensembles and sensitivity (DESIGN section 7).

:mod:`talbuk.calibration.params` (priors, applying parameters, posteriors) needs only the core
dependencies; the commands that use pyabc, Dask or SALib import them lazily and need the
``calibrate`` extra (``pip install talbuk[calibrate]``).
"""
