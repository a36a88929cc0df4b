"""Shared machinery for 3-dimensional cones with piecewise-smooth projections.

The exponential and power cones have no closed-form projection; each implementation gives,
for a batch of points ``V`` of shape ``(N, 3)``:

* ``_project3(V, prm)``: the projections ``P`` onto ``K``;
* ``_face_regions(V, P, eps)``: labels of the pieces of ``Pi_K`` other than the interior of
  ``K`` and of its polar (the base class labels those two): ``SMOOTH`` for the smooth part
  of the boundary, other codes >= 2 for the faces;
* ``FACE_JACOBIANS``: the (constant) Jacobians of ``Pi_K`` on the faces, by code;
* ``_smooth_jacobian(V, P, prm)``: the Jacobian on the smooth part of the boundary;
* ``_face_margins(V, P)``: cheap distances to the faces (with the distances to ``K`` and
  to the polar, points with a large margin skip the neighbour test below).

This base class turns them into the cone contract.  A point is at a kink when the piece
labels of its neighbours ``v +/- delta e_k`` differ; there the Jacobian element is taken
from the neighbouring pieces (one-sided limits), the one with the largest trace of
``D = dPi_{K*}`` for ``KinkPolicy.ACTIVE`` (the slack moves least) and the smallest for
``INACTIVE``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np

from .._typing import FloatArray, IntArray
from ._base import BlockLayout, Cone, KinkPolicy
from ._kernels import compiled_kernels

__all__ = ["ThreeDimensionalCone"]

_OFFSETS = np.concatenate([np.eye(3), -np.eye(3)])


class ThreeDimensionalCone(Cone):
    """A product of ``count`` three-dimensional cones of one kind."""

    def __init__(self, count: int, params: FloatArray | None = None) -> None:
        self.count = int(count)
        self._layout = BlockLayout((3,) * self.count)
        # One shape parameter per member (the power cone's exponent; unused otherwise).
        self._params = np.zeros(self.count) if params is None else np.asarray(params, float)

    @property
    def dim(self) -> int:
        return 3 * self.count

    #: Piece codes shared by every cone: inside ``K`` (``Pi_K = I``), inside the polar
    #: cone (``Pi_K = 0``) and the smooth part of the boundary.
    INSIDE, POLAR, SMOOTH = 0, 1, 4
    #: Jacobians of ``Pi_K`` on the faces, by piece code (set by each cone).
    FACE_JACOBIANS: ClassVar[dict[int, FloatArray]] = {}

    # Each method takes the rows ``V`` and their members' shape parameters ``prm``.
    @abstractmethod
    def _project3(self, V: FloatArray, prm: FloatArray) -> FloatArray: ...

    @abstractmethod
    def _face_regions(self, V: FloatArray, P: FloatArray, eps: FloatArray) -> IntArray: ...

    @abstractmethod
    def _face_margins(self, V: FloatArray, P: FloatArray) -> list[FloatArray]: ...

    @abstractmethod
    def _smooth_jacobian(self, V: FloatArray, P: FloatArray, prm: FloatArray) -> FloatArray: ...

    def _margin3(self, V: FloatArray, P: FloatArray) -> FloatArray:
        near = [np.linalg.norm(V - P, axis=1), np.linalg.norm(P, axis=1)]
        return np.min(np.stack(near + self._face_margins(V, P)), axis=0)

    def _region3(self, V: FloatArray, P: FloatArray) -> IntArray:
        eps = 1e-12 * np.maximum(1.0, np.abs(V).max(axis=1))
        region = self._face_regions(V, P, eps)
        region[np.linalg.norm(P, axis=1) <= eps] = self.POLAR
        region[np.linalg.norm(V - P, axis=1) <= eps] = self.INSIDE
        return region

    def _jacobian3(
        self, V: FloatArray, P: FloatArray, region: IntArray, prm: FloatArray
    ) -> FloatArray:
        J = np.zeros((V.shape[0], 3, 3))  # zero in the polar cone
        J[region == self.INSIDE] = np.eye(3)
        for code, face in self.FACE_JACOBIANS.items():
            J[region == code] = face
        smooth = region == self.SMOOTH
        if np.any(smooth):
            J[smooth] = self._smooth_jacobian(V[smooth], P[smooth], prm[smooth])
        return J

    def _full_jacobian(self, V: FloatArray, prm: FloatArray) -> FloatArray:
        P = self._project3(V, prm)
        return self._jacobian3(V, P, self._region3(V, P), prm)

    def _members(self, v: FloatArray) -> FloatArray:
        return v.reshape(-1, 3)

    def project(self, v: FloatArray) -> FloatArray:
        if self.count == 0:
            return v.copy()
        return self._project3(self._members(v), self._params).ravel()

    @staticmethod
    def _delta(V: FloatArray, tol: float) -> FloatArray:
        scale = np.maximum(1.0, np.abs(V).max(axis=1))
        return 10.0 * np.maximum(tol, 1e-10 * scale)

    def _neighbours(
        self, W: FloatArray, prm: FloatArray, tol: float
    ) -> tuple[FloatArray, FloatArray, IntArray]:
        """Neighbouring points ``(6N, 3)``, their parameters and piece labels ``(N, 6)``."""
        delta = self._delta(W, tol)
        near = (W[:, None, :] + delta[:, None, None] * _OFFSETS[None, :, :]).reshape(-1, 3)
        near_prm = np.repeat(prm, 6)
        labels = self._region3(near, self._project3(near, near_prm)).reshape(-1, 6)
        return near, near_prm, labels

    def _suspects(self, W: FloatArray, P: FloatArray, tol: float) -> np.ndarray:
        """Members close enough to a face that the neighbour test for kinks must run."""
        return self._margin3(W, P) <= 100.0 * self._delta(W, tol)

    def _kinked(
        self, W: FloatArray, prm: FloatArray, suspect: np.ndarray, tol: float
    ) -> np.ndarray:
        """Which members are at a kink: the suspects whose neighbours' pieces differ."""
        kinked = np.zeros(W.shape[0], dtype=bool)
        if np.any(suspect):
            Ws, prms = W[suspect], prm[suspect]
            region = self._region3(Ws, self._project3(Ws, prms))
            _, _, labels = self._neighbours(Ws, prms, tol)
            kinked[suspect] = np.any(labels != region[:, None], axis=1)
        return kinked

    def _compiled_dual_jacobian(
        self, v: FloatArray, kink: KinkPolicy, tol: float
    ) -> FloatArray | None:
        """`dual_jacobian_blocks()` by the compiled kernel of this kind (``name``), ``None``
        without numba (then the numpy code below runs)."""
        kernels = compiled_kernels()
        if kernels is None:
            return None
        V, active = self._members(v), kink is KinkPolicy.ACTIVE
        return kernels.dual_jacobian_rows(self.name, V, self._params, tol, active)

    def dual_jacobian_blocks(
        self, v: FloatArray, kink: KinkPolicy, tol: float
    ) -> dict[int, FloatArray]:
        if self.count == 0:
            return {}
        compiled = self._compiled_dual_jacobian(v, kink, tol)
        if compiled is not None:
            return {3: compiled}
        prm = self._params
        W = -self._members(v)  # D = I - JPi_K(-v)
        P = self._project3(W, prm)
        D = np.eye(3)[None] - self._jacobian3(W, P, self._region3(W, P), prm)
        kinked = self._kinked(W, prm, self._suspects(W, P, tol), tol)
        if np.any(kinked):
            near, near_prm, _ = self._neighbours(W[kinked], prm[kinked], tol)
            jac = self._full_jacobian(near, near_prm).reshape(-1, 6, 3, 3)
            candidates = np.eye(3)[None, None] - jac
            trace = np.trace(candidates, axis1=2, axis2=3)
            pick = (
                np.argmax(trace, axis=1) if kink is KinkPolicy.ACTIVE else np.argmin(trace, axis=1)
            )
            D[kinked] = candidates[np.arange(pick.size), pick]
        return {3: D}

    def kinks(self, v: FloatArray, tol: float) -> int:
        if self.count == 0:
            return 0
        W = -self._members(v)
        suspect = self._suspects(W, self._project3(W, self._params), tol)
        return int(np.count_nonzero(self._kinked(W, self._params, suspect, tol)))
