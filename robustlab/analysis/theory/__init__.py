"""Closed forms of the papers' toy models: `tsipras` (the robust/non-robust feature distribution of
Tsipras et al. 2019) and the logit model. Modules are imported explicitly, e.g.
``from robustlab.analysis.theory import tsipras``."""
