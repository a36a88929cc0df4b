"""PyTorch adapter: differentiable convex optimization layers.

Example:
    >>> from cvximplicit.torch import CvxpyLayer
"""

from ._layer import CvxpyLayer as CvxpyLayer

__all__ = ["CvxpyLayer"]
