"""Exact merging of flow groups that share a tunnel list, for max-min fair allocation.

In the exact weighted max-min fair allocation, two flow groups with the same tunnels end at
the same fair share unless one is satisfied first: if one sat below the other's fair share
while unsatisfied, moving flow from the richer to the poorer on the tunnels they share (the
same edges) would raise the poorer without lowering anyone poorer still. So every flow group
of a class ends at ``B_g(t_c)`` for one fair share ``t_c`` of its class (``B_g`` is flat after
the group's demand is met), and the class behaves as one flow group whose bandwidth function
is the sum of its members' (the concatenation of their applications). Solving the merged
problem and handing each member ``B_g(t_c)`` on the class's splits is exact.

B4 groups flow groups by site pair and QoS; tunnels are per site pair, so every flow group of
a site pair is in one class (the B4-like instance: 2,700 flow groups -> 240 classes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from b4.te.instance import Instance


@dataclass
class Merged:
    """Flow groups grouped by tunnel list: ``cls[g]`` is flow group g's class, ``fg_tunnels``
    the classes' tunnel lists (M, K), ``app_cls`` every application's class."""

    cls: np.ndarray
    fg_tunnels: np.ndarray
    app_cls: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.fg_tunnels)


def merge_flow_groups(inst: Instance, merge: bool = True) -> Merged:
    """Classes of flow groups with identical tunnel lists (``merge=False``: one per flow group)."""
    if merge and inst.num_flow_groups:
        keys, cls = np.unique(inst.fg_tunnels, axis=0, return_inverse=True)
        cls = np.asarray(cls).reshape(-1)
    else:
        keys, cls = inst.fg_tunnels, np.arange(inst.num_flow_groups)
    return Merged(cls=cls.astype(np.int64), fg_tunnels=keys, app_cls=cls[inst.app_fg].astype(np.int64))


def member_rates(inst: Instance, merged: Merged, level: np.ndarray) -> np.ndarray:
    """Each flow group's rate ``B_g(t_c)`` at its class's final fair share ``level[c]``."""
    per_app = np.minimum(inst.app_weight * level[merged.app_cls], inst.app_demand)
    return np.bincount(inst.app_fg, weights=per_app, minlength=inst.num_flow_groups)


def split_to_members(inst: Instance, merged: Merged, class_tunnel_rates: np.ndarray,
                     rates: np.ndarray) -> np.ndarray:
    """Per flow group tunnel rates: each member carries its rate on its class's splits."""
    carried = class_tunnel_rates.sum(axis=1)
    share = class_tunnel_rates[merged.cls]
    total = carried[merged.cls]
    out = share * np.divide(rates, total, out=np.zeros(len(rates)), where=total > 0)[:, None]
    # Round-off only: a member with a rate its class's LP solution did not carry.
    missing = (total <= 0) & (rates > 0)
    out[missing, 0] = rates[missing]
    return out
