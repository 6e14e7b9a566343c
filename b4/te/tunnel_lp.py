"""The multi-commodity flow LP over tunnels that the LP baselines share, solved with HiGHS.

Columns start with one flow variable per (flow group, tunnel); rows start with one capacity
row per edge. Baselines add their own columns and rows and then change only bounds between
solves, so HiGHS can warm-start from the previous basis.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from b4.te.instance import Instance

try:
    import highspy
except ImportError as e:  # pragma: no cover - highspy is pinned in requirements.txt
    raise ImportError("the LP baselines need highspy (pip install highspy)") from e

INF = highspy.kHighsInf


class LPError(RuntimeError):
    """HiGHS did not return an optimal solution where one must exist."""


class LPTimeout(LPError):
    """The LP baseline ran out of its time limit."""


def flow_columns(inst: Instance, fg_tunnels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, sp.csc_matrix]:
    """Flow variables: (flow group of each, tunnel slot of each, edge x flow incidence).

    ``fg_tunnels`` replaces the instance's tunnel lists (merged flow groups have their own)."""
    fg_tunnels = inst.fg_tunnels if fg_tunnels is None else fg_tunnels
    g_idx, k_idx = np.nonzero(fg_tunnels >= 0)
    tids = fg_tunnels[g_idx, k_idx]
    lengths = inst.tunnel_ptr[tids + 1] - inst.tunnel_ptr[tids]
    starts = np.repeat(inst.tunnel_ptr[tids], lengths)
    offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = inst.tunnel_edges[starts + offs]
    cols = np.repeat(np.arange(len(tids)), lengths)
    m = sp.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(inst.num_edges, len(tids)))
    return g_idx, k_idx, m


def make_solver(matrix: sp.spmatrix, col_cost: np.ndarray, col_lower: np.ndarray, col_upper: np.ndarray,
                row_lower: np.ndarray, row_upper: np.ndarray, maximize: bool) -> "highspy.Highs":
    """A silent HiGHS instance holding the LP ``row_lower <= A x <= row_upper``."""
    a = sp.csc_matrix(matrix)
    a.sort_indices()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_ = np.asarray(col_cost, dtype=float)
    lp.col_lower_ = np.asarray(col_lower, dtype=float)
    lp.col_upper_ = np.asarray(col_upper, dtype=float)
    lp.row_lower_ = np.asarray(row_lower, dtype=float)
    lp.row_upper_ = np.asarray(row_upper, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(float)
    lp.sense_ = highspy.ObjSense.kMaximize if maximize else highspy.ObjSense.kMinimize
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    return h


def solve(h: "highspy.Highs") -> bool:
    """Run HiGHS; True when optimal, False when infeasible, LPError otherwise."""
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kUnknown:
        # a warm start from the previous round's basis can leave simplex unable to conclude
        # (seen with zero-capacity edges); solved again from scratch it ends
        h.clearSolver()
        h.run()
        status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kOptimal:
        return True
    if status == highspy.HighsModelStatus.kInfeasible:
        return False
    if status == highspy.HighsModelStatus.kTimeLimit:
        raise LPTimeout("time limit reached")
    raise LPError(f"HiGHS returned {h.modelStatusToString(status)}")


def set_col_bounds(h: "highspy.Highs", idx: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    if len(idx):
        h.changeColsBounds(len(idx), np.asarray(idx, dtype=np.int32), np.asarray(lower, dtype=float),
                           np.asarray(upper, dtype=float))


def set_row_bounds(h: "highspy.Highs", idx: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    if len(idx):
        # changeRowsBounds exists in highspy but is missing from its type stubs
        h.changeRowsBounds(len(idx), np.asarray(idx, dtype=np.int32),  # type: ignore[attr-defined]
                           np.asarray(lower, dtype=float),
                           np.asarray(upper, dtype=float))
