"""PyTorch adapter: differentiable convex optimization layers.

Example:
    >>> from cvximplicit.torch import CvxpyLayer
"""

from ._implicit import fixed_point as fixed_point
from ._implicit import jacobian_penalty as jacobian_penalty
from ._implicit import root_find as root_find
from ._layer import CvxpyLayer as CvxpyLayer

__all__ = ["CvxpyLayer", "fixed_point", "jacobian_penalty", "root_find"]
