"""Cones of the canonical program, one class per kind (see ``_base.Cone`` for the contract)."""

from ._base import BlockLayout as BlockLayout
from ._base import Cone as Cone
from ._base import KinkPolicy as KinkPolicy
from ._base import as_kink_policy as as_kink_policy
from ._exp import ExponentialCone as ExponentialCone
from ._nonneg import NonnegativeCone as NonnegativeCone
from ._pow import PowerCone as PowerCone
from ._psd import PSDCone as PSDCone
from ._soc import SecondOrderCone as SecondOrderCone
from ._zero import ZeroCone as ZeroCone
