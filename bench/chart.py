"""Bar chart of the added microseconds per request, per variant and route, from latest.json.

usage: chart.py latest.json latest.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    with open(src, encoding="utf-8") as f:
        data = json.load(f)
    rows = [s for s in data["summaries"] if s.get("added_us") is not None]
    routes = list(dict.fromkeys(s["route"] for s in rows))
    variants = list(dict.fromkeys(s["variant"] for s in rows))
    labels = {s["variant"]: s["label"] for s in rows}
    colors = {"lua": "#9e9e9e", "lua_strip": "#d0d0d0", "wasm_full": "#1f77b4", "wasm_strip": "#8fbbe0",
              "compare_full": "#ff7f0e", "compare_strip": "#ffbb78"}

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        xs, ys, notes = [], [], []
        for j, r in enumerate(routes):
            s = next((s for s in rows if s["route"] == r and s["variant"] == v), None)
            if s is None:
                continue
            xs.append(j + (i - (len(variants) - 1) / 2) * width)
            ys.append(s["added_us"])
            ratio = s.get("cost_vs_lua")
            notes.append(f"{s['added_us']:.1f} µs" + (f"\n{ratio:.2f}× Lua" if ratio is not None and v != "lua" else ""))
        bars = ax.bar(xs, ys, width, label=labels[v], color=colors.get(v))
        for b, note in zip(bars, notes):
            y = b.get_height()
            ax.annotate(note, (b.get_x() + b.get_width() / 2, max(y, 0)), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 2), textcoords="offset points")
    # The goal: the full job's added cost at most 0.8x Lua's on direct_response, 1.0x proxied.
    for j, r in enumerate(routes):
        lua = next((s for s in rows if s["route"] == r and s["variant"] == "lua"), None)
        goal = 1.0 if r == "proxied" else 0.8
        if lua is not None:
            ax.hlines(lua["added_us"] * goal, j - 0.45, j + 0.45, colors="#d62728", linestyles="dashed", linewidth=1,
                      label="goal: 0.8× (direct) / 1.0× (proxied) Lua's full job" if j == 0 else None)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(routes)))
    ax.set_xticklabels(routes)
    ax.set_ylabel("added µs per request vs. no filter (median)")
    meta = data.get("meta", {})
    ax.set_title(
        "kiali-header-auth vs. Lua, Envoy --concurrency 1\n"
        f"{meta.get('envoy_version', '').split(' ')[0]} · {meta.get('nproc', '?')} CPUs {meta.get('cpu_model', '')} · "
        f"{meta.get('rounds', '?')} rounds · {meta.get('date', '')}",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.margins(y=0.2)
    fig.tight_layout()
    fig.savefig(dst)
    print(f"chart: wrote {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
