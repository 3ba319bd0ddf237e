"""Bar charts from latest.json: the added microseconds per request per variant and route (time
rounds), and the added instructions per request (callgrind), each with the goal line.

usage: chart.py latest.json latest.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"lua": "#9e9e9e", "lua_strip": "#d0d0d0", "wasm_full": "#1f77b4", "wasm_strip": "#8fbbe0",
          "compare_full": "#ff7f0e", "compare_strip": "#ffbb78"}


def bars(ax, rows, unit, ylabel):
    """rows: dicts with route, variant, label, added (in `unit`) and cost_vs_lua."""
    routes = list(dict.fromkeys(r["route"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    labels = {r["variant"]: r["label"] for r in rows}
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        xs, ys, notes = [], [], []
        for j, route in enumerate(routes):
            r = next((r for r in rows if r["route"] == route and r["variant"] == v), None)
            if r is None:
                continue
            xs.append(j + (i - (len(variants) - 1) / 2) * width)
            ys.append(r["added"])
            ratio = r.get("cost_vs_lua")
            notes.append(f"{r['added']:.1f} {unit}" + (f"\n{ratio:.2f}× Lua" if ratio is not None and v != "lua" else ""))
        for b, note in zip(ax.bar(xs, ys, width, label=labels[v], color=COLORS.get(v)), notes):
            ax.annotate(note, (b.get_x() + b.get_width() / 2, max(b.get_height(), 0)), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    # The goal: the full job's added cost at most 0.8x Lua's on direct_response, 1.0x proxied.
    for j, route in enumerate(routes):
        lua = next((r for r in rows if r["route"] == route and r["variant"] == "lua"), None)
        if lua is not None:
            goal = 1.0 if route == "proxied" else 0.8
            ax.hlines(lua["added"] * goal, j - 0.45, j + 0.45, colors="#d62728", linestyles="dashed", linewidth=1,
                      label="goal: 0.8× (direct) / 1.0× (proxied) Lua's full job" if j == 0 else None)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(routes)))
    ax.set_xticklabels(routes)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.margins(y=0.25)


def main(src: str, dst: str) -> None:
    with open(src, encoding="utf-8") as f:
        data = json.load(f)
    timed = [dict(s, added=s["added_us"]) for s in data.get("summaries", []) if s.get("added_us") is not None]
    counted = [dict(i, route="direct_response (callgrind)", added=i["added"] / 1e3, cost_vs_lua=i.get("vs_lua"))
               for i in data.get("instructions", []) if i.get("added") is not None]
    panels = [(rows, unit, label) for rows, unit, label in [
        (timed, "µs", "added µs per request vs. no filter (median)"),
        (counted, "k", "added instructions per request (thousands)"),
    ] if rows]
    if not panels:
        sys.exit("chart: nothing to draw in " + src)
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 4.5), dpi=120, squeeze=False)
    for ax, (rows, unit, label) in zip(axes[0], panels):
        bars(ax, rows, unit, label)
    meta = data.get("meta", {})
    fig.suptitle(f"kiali-header-auth vs. Lua, Envoy --concurrency 1 · {meta.get('machine', '')} · {meta.get('date', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(dst)
    print(f"chart: wrote {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
