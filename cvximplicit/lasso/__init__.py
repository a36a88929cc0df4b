"""Bilevel LASSO: tune LASSO-type penalties by exact nonsmooth hypergradients.

Needs scikit-learn (``pip install cvximplicit[lasso]``).

Example:
    >>> from cvximplicit.lasso import ImplicitLassoCV, hypergradient
"""

from ._tuning import ImplicitElasticNetCV as ImplicitElasticNetCV
from ._tuning import ImplicitLassoCV as ImplicitLassoCV
from ._tuning import ImplicitWeightedLassoCV as ImplicitWeightedLassoCV
from ._tuning import hypergradient as hypergradient

__all__ = ["ImplicitElasticNetCV", "ImplicitLassoCV", "ImplicitWeightedLassoCV", "hypergradient"]
