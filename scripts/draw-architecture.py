#!/usr/bin/env python3
"""Draw routerlab's architecture (docs/architecture.png) for the README.

Three layers: the real software routerlab drives (bottom), the substrate `routerlab`
(middle) and the three systems built on it, VROOM, VERB and B4 (top). Systems import the
substrate and never each other; the substrate finds them only through the
``routerlab.systems`` entry point that each names in setup.py.

    .venv/bin/python scripts/draw-architecture.py [--out docs/architecture.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

REPO = Path(__file__).resolve().parents[1]

# Colours: one per layer, a darker edge of the same hue.
SYSTEM_FILL, SYSTEM_EDGE = "#fde7c8", "#c77c12"
SUBSTRATE_FILL, SUBSTRATE_EDGE = "#dbe9f8", "#2f6db5"
MODULE_FILL = "#ffffff"
PLUGIN_FILL = "#b9d3f2"
PLATFORM_FILL, PLATFORM_EDGE = "#e3f1df", "#3d8b37"
TEXT = "#1d1d1d"
MUTED = "#5a5a5a"

W, H = 16.0, 10.7  # figure size in inches; the axes use the same units


def box(ax, x, y, w, h, fill, edge, *, lw=1.4, radius=0.12, z=1, ls="-"):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={radius}",
                                facecolor=fill, edgecolor=edge, linewidth=lw, zorder=z,
                                linestyle=ls))


def module(ax, x, y, w, h, title, detail="", *, fill=MODULE_FILL, edge=SUBSTRATE_EDGE,
           size=10.5, z=3):
    """A box with a bold title and an optional smaller line of detail below it."""
    box(ax, x, y, w, h, fill, edge, lw=1.0, radius=0.08, z=z)
    if detail:
        ax.text(x + w / 2, y + h * 0.64, title, ha="center", va="center", fontsize=size,
                fontweight="bold", color=TEXT, zorder=z + 1)
        ax.text(x + w / 2, y + h * 0.30, detail, ha="center", va="center", fontsize=size - 2,
                color=MUTED, zorder=z + 1, linespacing=1.15)
    else:
        ax.text(x + w / 2, y + h / 2, title, ha="center", va="center", fontsize=size,
                fontweight="bold", color=TEXT, zorder=z + 1)


def arrow(ax, start, end, *, color=MUTED, lw=1.6, ls="-", rad=0.0, z=6, head=14):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=head,
                                 color=color, linewidth=lw, linestyle=ls, zorder=z,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0))


def layer_label(ax, x, y, text, color):
    ax.text(x, y, text, ha="left", va="center", fontsize=12.5, fontweight="bold", color=color)


def draw(out: Path) -> Path:
    fig = plt.figure(figsize=(W, H), dpi=110)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, W)
    ax.set_ylim(0, H)
    ax.axis("off")

    left, right = 0.35, W - 0.35
    ax.text(W / 2, H - 0.32, "routerlab: one substrate, three independent systems",
            ha="center", va="center", fontsize=17, fontweight="bold", color=TEXT)

    # ------------------------------------------------------------------ systems (top)
    sys_y, sys_h = 7.35, 2.25
    layer_label(ax, left, sys_y + sys_h + 0.22,
                "Systems: each imports only the substrate, never another system", SYSTEM_EDGE)
    systems = [
        ("vroom", "VROOM: virtual router migration",
         ["hypervisor", "cpmove (CRIU)", "transport", "migrate"]),
        ("verb", "VERB: bug-tolerant router",
         ["replica manager", "interposer", "voters", "recovery"]),
        ("b4", "B4: centralised traffic engineering",
         ["te library", "ted / teops", "ofc + mastership", "server", "election"]),
    ]
    gap = 0.55
    sw = (right - left - 2 * gap) / 3
    sys_boxes = {}
    for i, (pkg, title, parts) in enumerate(systems):
        x = left + i * (sw + gap)
        box(ax, x, sys_y, sw, sys_h, SYSTEM_FILL, SYSTEM_EDGE, lw=1.8)
        ax.text(x + 0.2, sys_y + sys_h - 0.3, pkg, ha="left", va="center", fontsize=15,
                fontweight="bold", family="monospace", color=SYSTEM_EDGE)
        ax.text(x + 0.2 + 0.16 * len(pkg) + 0.25, sys_y + sys_h - 0.3, title.split(": ")[1],
                ha="left", va="center", fontsize=10.5, color=TEXT, style="italic")
        # the components, as small boxes in two columns
        cols = 2
        cw = (sw - 0.4 - 0.15) / cols
        ch = 0.36
        for j, part in enumerate(parts):
            cx = x + 0.2 + (j % cols) * (cw + 0.15)
            cy = sys_y + sys_h - 0.95 - (j // cols) * (ch + 0.12)
            module(ax, cx, cy, cw, ch, part, fill="#fff8ee", edge=SYSTEM_EDGE, size=9.5)
        # its declaration, the only thing the substrate reads
        tab_w = 1.9
        module(ax, x + sw - tab_w - 0.2, sys_y + 0.12, tab_w, 0.36, f"{pkg}.system:SYSTEM",
               fill="#ffe2b3", edge=SYSTEM_EDGE, size=9)
        sys_boxes[pkg] = (x, sw)

    # "never import each other" between the system boxes
    for i in range(2):
        gx = left + (i + 1) * sw + i * gap + gap / 2
        gy = sys_y + sys_h * 0.62
        ax.plot([gx - 0.2, gx + 0.2], [gy - 0.2, gy + 0.2], color="#c0392b", lw=2.4, zorder=7)
        ax.plot([gx - 0.2, gx + 0.2], [gy + 0.2, gy - 0.2], color="#c0392b", lw=2.4, zorder=7)
        ax.text(gx, gy - 0.42, "no\nimports", ha="center", va="top", fontsize=8.5,
                color="#c0392b", linespacing=1.0)

    # ------------------------------------------------------------------ substrate (middle)
    sub_y, sub_h = 2.45, 4.15
    box(ax, left, sub_y, right - left, sub_h, SUBSTRATE_FILL, SUBSTRATE_EDGE, lw=1.8)
    ax.text(left + 0.2, sub_y + sub_h - 0.3, "routerlab", ha="left", va="center", fontsize=15,
            fontweight="bold", family="monospace", color=SUBSTRATE_EDGE)
    ax.text(left + 1.85, sub_y + sub_h - 0.3, "the substrate",
            ha="left", va="center", fontsize=10.5, style="italic", color=TEXT)

    inner_l, inner_r = left + 0.25, right - 0.25
    row_h, row_gap = 0.62, 0.2

    def row(y, items):
        """Lay `items` (title, detail, weight) across the substrate at height y."""
        total = sum(wt for _, _, wt in items)
        space = inner_r - inner_l - 0.2 * (len(items) - 1)
        x = inner_l
        spans = {}
        for title, detail, wt in items:
            w = space * wt / total
            module(ax, x, y, w, row_h, title, detail)
            spans[title] = (x, w)
            x += w + 0.2
        return spans

    # The plugin interface, facing the systems.
    plug_y = sub_y + sub_h - 0.62 - row_h - 0.05
    module(ax, inner_l, plug_y, inner_r - inner_l, row_h + 0.05, "routerlab.systems: the plugin interface",
           "System(experiments, add_cli, lab_commands, run_lab, lab_teardown), "
           "found through the 'routerlab.systems' entry point in setup.py",
           fill=PLUGIN_FILL, size=11)
    y1 = plug_y - row_gap - row_h
    row(y1, [("lab / cli", "routerlab cli | run | bench | doctor", 1.0),
             ("report / runner", "summary.json, report.md, plots", 1.0),
             ("expect", "wait_for, subset_diff", 0.75),
             ("traffic / probes", "constant-rate probes, loss", 1.0)])
    y2 = y1 - row_gap - row_h
    row(y2, [("nodes / network / topology", "YAML + Topology Zoo, addressing", 1.35),
             ("daemons", "FRR, BIRD, GoBGP, ExaBGP drivers", 1.15),
             ("criu", "locate, detect, dump / restore", 1.0)])
    y3 = y2 - row_gap - row_h
    row(y3, [("registry / clean", "every resource recorded, removed", 1.1),
             ("netns", "namespaces, veths, tc", 1.0),
             ("ovs", "userspace bridges, bulk flows", 1.0)])

    # ------------------------------------------------------------------ platform (bottom)
    plat_y, plat_h = 0.5, 1.2
    layer_label(ax, left, plat_y - 0.24, "Real software it drives (Debian packages)",
                PLATFORM_EDGE)
    platform = [("Linux", "netns, veth, HTB"), ("Open vSwitch", "userspace datapath"),
                ("CRIU", "checkpoint / restore"), ("FRR, BIRD,\nGoBGP, ExaBGP", "real routing daemons"),
                ("ZooKeeper", "leader election"), ("os-ken", "OpenFlow 1.3 controller")]
    pw = (right - left - 0.25 * (len(platform) - 1)) / len(platform)
    plat_x = {}
    for i, (title, detail) in enumerate(platform):
        x = left + i * (pw + 0.25)
        box(ax, x, plat_y, pw, plat_h, PLATFORM_FILL, PLATFORM_EDGE, lw=1.5)
        ax.text(x + pw / 2, plat_y + plat_h * 0.6, title, ha="center", va="center", fontsize=11.5,
                fontweight="bold", color=TEXT, linespacing=1.05)
        ax.text(x + pw / 2, plat_y + 0.2, detail, ha="center", va="center", fontsize=9.5,
                color=MUTED)
        plat_x[title.split(",")[0].split("\n")[0]] = x + pw / 2

    # ------------------------------------------------------------------ arrows
    sub_top = sub_y + sub_h
    for x, w in sys_boxes.values():
        # imports: system -> substrate (solid, down)
        ax_x = x + w * 0.3
        arrow(ax, (ax_x, sys_y), (ax_x, sub_top), color=SYSTEM_EDGE, lw=2.2)
        ax.text(ax_x + 0.1, (sys_y + sub_top) / 2, "imports", ha="left", va="center",
                fontsize=9, color=SYSTEM_EDGE)
        # discovery: the plugin interface loads the declaration (dashed, up)
        tx = x + w - 0.2 - 0.95
        arrow(ax, (tx, plug_y + row_h + 0.05), (tx, sys_y + 0.12), color=SUBSTRATE_EDGE, lw=1.5,
              ls=(0, (4, 3)))
        ax.text(tx - 0.1, (sys_y + sub_top) / 2, "entry point", ha="right", va="center",
                fontsize=9, color=SUBSTRATE_EDGE)

    # substrate -> platform
    for name in ("Linux", "Open vSwitch", "CRIU", "FRR"):
        arrow(ax, (plat_x[name], sub_y), (plat_x[name], plat_y + plat_h), color=SUBSTRATE_EDGE,
              lw=1.8)
    ax.text(plat_x["CRIU"] + 0.12, (sub_y + plat_y + plat_h) / 2, "drives", ha="left",
            va="center", fontsize=9, color=SUBSTRATE_EDGE)
    # B4 uses ZooKeeper and os-ken directly: drawn around the substrate, not through it.
    bx, bw = sys_boxes["b4"]
    side_x, low_y = right + 0.17, plat_y + plat_h + 0.42
    dotted = dict(color=SYSTEM_EDGE, lw=1.3, ls=(0, (1.5, 2)), zorder=2)
    ax.plot([bx + bw, side_x, side_x, plat_x["ZooKeeper"]],
            [sys_y + 0.9, sys_y + 0.9, low_y, low_y], **dotted)
    for name in ("ZooKeeper", "os-ken"):
        arrow(ax, (plat_x[name], low_y), (plat_x[name], plat_y + plat_h), color=SYSTEM_EDGE,
              lw=1.3, ls=(0, (1.5, 2)), head=12)
    ax.text((plat_x["ZooKeeper"] + plat_x["os-ken"]) / 2, low_y + 0.12, "b4 uses directly",
            ha="center", va="bottom", fontsize=9, color=SYSTEM_EDGE, style="italic")

    # legend, on the line of the systems' heading
    ly = sys_y + sys_h + 0.22
    lx = right - 7.1
    for dx, label, style in ((0.0, "imports", dict(color=SYSTEM_EDGE, lw=2.2)),
                             (1.55, "loaded through the entry point",
                              dict(color=SUBSTRATE_EDGE, lw=1.5, ls=(0, (4, 3)))),
                             (4.85, "used directly", dict(color=SYSTEM_EDGE, lw=1.3, ls=(0, (1.5, 2))))):
        ax.plot([lx + dx, lx + dx + 0.5], [ly, ly], **style)
        ax.text(lx + dx + 0.6, ly, label, va="center", fontsize=9.5, color=TEXT)

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor="white")
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "architecture.png")
    print(draw(ap.parse_args().out))


if __name__ == "__main__":
    main()
