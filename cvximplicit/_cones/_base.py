"""The cone contract.

A `Cone` is a closed convex cone ``K`` (a product of members of one kind) sitting at a
contiguous slice of the constraint vector of the canonical program

    minimise 1/2 x'Px + c'x   subject to   Ax + s = b,  s in K.

Each cone owns four things and nothing else:

* the projection ``project(v) = Pi_K(v)`` and the projection onto the dual cone
  ``project_dual(v) = Pi_{K*}(v)`` (by default through Moreau: ``Pi_{K*}(v) = v + Pi_K(-v)``);
* one element of the conservative (Clarke) Jacobian of ``Pi_{K*}`` at ``v``,
  ``dual_jacobian(v, kink, tol)``, chosen by the `KinkPolicy` where ``Pi_{K*}`` is not
  differentiable;
* how to recognise such points: ``kinks(v, tol)`` counts them;
* its vectorisation convention (``permutation``), the single place where a solver's layout of the
  cone differs from the canonical one.

Invariants every implementation keeps (and ``tests/test_cones.py`` checks for each):
``project(v)`` is in ``K``; ``project_dual(v)`` is in ``K*``; Moreau's identity
``v = Pi_{K*}(v) - Pi_K(-v)`` with ``Pi_{K*}(v)'Pi_K(-v) = 0``; and away from kinks
``dual_jacobian`` equals the derivative of ``project_dual`` (finite differences).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["Cone", "KinkPolicy", "as_kink_policy"]

from .._typing import FloatArray, Sparse, parse_option


class KinkPolicy(enum.Enum):
    """Which element of the conservative Jacobian of a cone projection to use at a kink.

    At a weakly active constraint (dual ``y_i = 0`` and slack ``s_i = 0`` at once, i.e.
    ``v_i = 0`` for the nonnegative orthant) the projection has no derivative and its Clarke
    Jacobian is the whole segment between the two one-sided derivatives.  Every element is a
    valid conservative Jacobian; these two are the one-sided limits:

    * ``ACTIVE`` (default): the constraint is kept binding, the slack stays at zero and the dual
      may move.  This is the derivative of the problem restricted to the current face.  For the
      LASSO it is the classical ``d beta / d lambda = 0`` off the support; for LPs it keeps a
      vertex pinned, so ``B`` stays invertible whenever the active constraints are linearly
      independent, whatever ``P`` is.
    * ``INACTIVE``: the constraint is dropped, the dual stays at zero and the slack may move.
      This is the derivative from the side where the constraint stops binding.
    """

    ACTIVE = "active"
    INACTIVE = "inactive"


def as_kink_policy(kink: KinkPolicy | str) -> KinkPolicy:
    """Parse a kink policy given as an enum member or its string value."""
    return parse_option(KinkPolicy, kink, "kink policy")


class Cone(ABC):
    """A product of same-kind convex cones occupying ``dim`` consecutive coordinates.

    Subclasses are small and final; see the module docstring for the contract.
    """

    #: Short name used in diagnostics (``"nonnegative"``, ``"second_order"``, ...).
    name: ClassVar[str]
    #: Whether ``K* = K`` (then ``project_dual`` is ``project``).
    self_dual: ClassVar[bool] = False
    #: Whether ``dual_jacobian`` is always diagonal (then ``dual_jacobian_diagonal`` gives
    #: its diagonal, which lets the Newton matrix be assembled without sparse products).
    diagonal: ClassVar[bool] = False

    @property
    @abstractmethod
    def dim(self) -> int:
        """Total number of coordinates of the cone (all members together)."""

    @abstractmethod
    def project(self, v: FloatArray) -> FloatArray:
        """Euclidean projection of $v$ onto $K$."""

    def project_dual(self, v: FloatArray) -> FloatArray:
        """Euclidean projection of $v$ onto the dual cone $K^*$."""
        if self.self_dual:
            return self.project(v)
        return v + self.project(-v)

    def dual_jacobian(self, v: FloatArray, kink: KinkPolicy, tol: float) -> Sparse:
        r"""An element $D$ of the conservative Jacobian of $\Pi_{K^*}$ at $v$ (``dim x dim``).

        Within ``tol`` of a kink the element is chosen by ``kink`` (see `KinkPolicy`).
        Assembled from `jacobian_pattern()` and `jacobian_values()`.
        """
        rows, cols = self.jacobian_pattern()
        values = self.jacobian_values(v, kink, tol)
        return sp.csr_array((values, (rows, cols)), shape=(self.dim, self.dim))

    def jacobian_pattern(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Fixed (row, column) positions of the entries of ``dual_jacobian``, whatever ``v``:
        the diagonal for diagonal cones, one dense block per member otherwise."""
        if self.diagonal:
            index = np.arange(self.dim, dtype=np.int64)
            return index, index
        return self._block_layout().pattern()

    def jacobian_values(self, v: FloatArray, kink: KinkPolicy, tol: float) -> FloatArray:
        """The values of ``dual_jacobian`` at the positions of `jacobian_pattern()`."""
        if self.diagonal:
            return self.dual_jacobian_diagonal(v, kink, tol)
        return self._block_layout().flatten(self.dual_jacobian_blocks(v, kink, tol))

    def dual_jacobian_diagonal(self, v: FloatArray, kink: KinkPolicy, tol: float) -> FloatArray:
        """The diagonal of ``dual_jacobian`` (only for cones with ``diagonal = True``)."""
        raise NotImplementedError(f"{type(self).__name__} has no diagonal Jacobian")

    def dual_jacobian_blocks(
        self, v: FloatArray, kink: KinkPolicy, tol: float
    ) -> dict[int, FloatArray]:
        """Per-member dense Jacobian blocks ``{d: (k, d, d)}`` grouped by member size (cones
        made of several members, with ``diagonal = False``)."""
        raise NotImplementedError(f"{type(self).__name__} has no block Jacobian")

    def replicate(self, copies: int) -> Cone:
        """The product of ``copies`` copies of this cone, members in copy-major order (the
        cones of a batch, acting on the slices of all elements laid end to end)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be replicated")

    def value_groups(self) -> tuple[int, ...]:
        """Lengths of the consecutive parts of `jacobian_values()` that a replica lays
        out copy by copy: one part for diagonal cones, one per member size otherwise."""
        if self.diagonal:
            return (self.dim,)
        layout = self._block_layout()
        return tuple(len(starts) * d * d for d, starts in layout.groups.items())

    def _block_layout(self) -> BlockLayout:
        layout = getattr(self, "_layout", None)
        if not isinstance(layout, BlockLayout):
            raise NotImplementedError(f"{type(self).__name__} has no member layout")
        return layout

    @abstractmethod
    def kinks(self, v: FloatArray, tol: float) -> int:
        r"""Number of kinks of $\Pi_{K^*}$ within ``tol`` of $v$ (0 where it is smooth)."""

    def permutation(self, convention: str) -> NDArray[np.int64]:
        """Index array ``p`` such that ``v[p]`` is ``v`` in a solver's layout ``convention``.

        The canonical layout is CVXPY's for Clarabel.  Only cones with more than one layout in
        use (the PSD cone: SCS stores the lower triangle) override this identity.
        """
        del convention
        return np.arange(self.dim, dtype=np.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), self.dim))


class BlockLayout:
    """Members of a product cone grouped by size, for vectorised projections and Jacobians.

    ``groups`` maps a member size ``d`` to the start offsets (within the cone) of all members
    of that size; ``take(v, d)`` returns those members as a ``(k, d)`` array and
    ``put(out, d, values)`` writes them back.  ``pattern`` and ``flatten`` lay per-member
    dense ``(k, d, d)`` Jacobians out on a fixed pattern.
    """

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self.sizes = sizes
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.dim = int(sum(sizes))
        self.groups: dict[int, NDArray[np.int64]] = {}
        self._indices: dict[int, NDArray[np.int64]] = {}
        for d in sorted(set(sizes)):
            self.groups[d] = starts[np.asarray(sizes) == d]

    def _index(self, d: int) -> NDArray[np.int64]:
        index = self._indices.get(d)
        if index is None:
            index = self._indices[d] = self.groups[d][:, None] + np.arange(d)[None, :]
        return index

    def take(self, v: FloatArray, d: int) -> FloatArray:
        return v[self._index(d)]

    def put(self, out: FloatArray, d: int, values: FloatArray) -> None:
        out[self._index(d)] = values

    def pattern(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(row, column) of every entry of the member blocks, groups in order, row-major."""
        rows, cols = [], []
        for d in self.groups:
            idx = self._index(d)
            rows.append(np.broadcast_to(idx[:, :, None], (idx.shape[0], d, d)).ravel())
            cols.append(np.broadcast_to(idx[:, None, :], (idx.shape[0], d, d)).ravel())
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows), np.concatenate(cols)

    def flatten(self, blocks: dict[int, FloatArray]) -> FloatArray:
        """The blocks' values in the order of `pattern()`."""
        if not blocks:
            return np.zeros(0)
        return np.concatenate([np.ravel(blocks[d]) for d in self.groups])
