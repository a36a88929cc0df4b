"""Bilevel LASSO: tune LASSO-type penalties by exact nonsmooth hypergradients.

Needs scikit-learn (``pip install cvximplicit[lasso]``).

Example:
    >>> from cvximplicit.lasso import ImplicitLassoCV, criterion_path, hypergradient
"""

from ._homotopy import HomotopyWarning as HomotopyWarning
from ._tuning import CriterionPath as CriterionPath
from ._tuning import ImplicitElasticNetCV as ImplicitElasticNetCV
from ._tuning import ImplicitLassoCV as ImplicitLassoCV
from ._tuning import ImplicitWeightedLassoCV as ImplicitWeightedLassoCV
from ._tuning import criterion_path as criterion_path
from ._tuning import hypergradient as hypergradient

__all__ = [
    "CriterionPath",
    "HomotopyWarning",
    "ImplicitElasticNetCV",
    "ImplicitLassoCV",
    "ImplicitWeightedLassoCV",
    "criterion_path",
    "hypergradient",
]
