// A small SVG line chart: one line per series, x = minutes of the last hour, y = count.
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be123c"];

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// series: [{name, values: [n per minute]}], labels: minute labels (same length as values)
export function lineChart(container, series, labels, { width = 720, height = 220 } = {}) {
  const pad = { left: 36, right: 12, top: 12, bottom: 24 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const n = Math.max(1, labels.length - 1);
  const x = (i) => pad.left + (i / n) * w;
  const y = (v) => pad.top + h - (v / max) * h;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "messages per minute" });
  for (const tick of [0, Math.ceil(max / 2), max]) {
    svg.append(el("line", { x1: pad.left, x2: pad.left + w, y1: y(tick), y2: y(tick), class: "grid" }));
    svg.append(el("text", { x: pad.left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, String(tick)));
  }
  for (const i of [0, Math.floor(n / 2), n]) {
    if (labels[i] !== undefined) {
      svg.append(el("text", { x: x(i), y: height - 6, class: "tick", "text-anchor": "middle" }, labels[i]));
    }
  }
  series.forEach((s, k) => {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.append(el("polyline", { points, fill: "none", stroke: COLORS[k % COLORS.length], "stroke-width": 2,
      "data-series": s.name, "data-total": s.values.reduce((a, b) => a + b, 0) }));
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, k) => {
    const item = document.createElement("span");
    item.style.setProperty("--swatch", COLORS[k % COLORS.length]);
    item.textContent = `${s.name} (${s.values.reduce((a, b) => a + b, 0)})`;
    legend.append(item);
  });
  container.replaceChildren(svg, legend);
}
