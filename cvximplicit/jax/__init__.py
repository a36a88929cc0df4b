"""JAX adapter: differentiable convex optimization layers under ``jit``, ``vmap`` and ``grad``.

Example:
    >>> from cvximplicit.jax import CvxpyLayer
"""

from ._layer import CvxpyLayer as CvxpyLayer

__all__ = ["CvxpyLayer"]
