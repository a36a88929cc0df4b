"""JAX adapter: differentiable convex optimization layers under ``jit``, ``vmap`` and ``grad``.

Example:
    >>> from cvximplicit.jax import CvxpyLayer
"""

from ._implicit import fixed_point as fixed_point
from ._implicit import jacobian_penalty as jacobian_penalty
from ._implicit import root_find as root_find
from ._implicit import spectral_radius as spectral_radius
from ._layer import CvxpyLayer as CvxpyLayer

__all__ = ["CvxpyLayer", "fixed_point", "jacobian_penalty", "root_find", "spectral_radius"]
