// chart.js: a small line chart drawn as inline SVG (no library): time on x, a value on y,
// one line per series, with axes, gridlines, a legend and a text alternative.

import { h, s } from "./dom.js";

const W = 640, H = 240, PAD = { l: 64, r: 12, t: 10, b: 28 };

function ticks(lo, hi, n) {
  if (hi <= lo) return [lo];
  const step = (hi - lo) / n;
  return Array.from({ length: n + 1 }, (_, i) => lo + i * step);
}

/**
 * series: [{name, points: [[unixMs, value], ...]}]; format(value) → text.
 * Returns a figure with the SVG, a legend and a caption that says what is drawn.
 */
export function lineChart(title, series, format) {
  const all = series.flatMap((x) => x.points);
  const figure = h("figure", { class: "figure" });
  if (!all.length) {
    figure.append(h("p", { class: "muted" }, `${title}: no trades yet.`));
    return figure;
  }
  let [t0, t1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [v0, v1] = [0, Math.max(...all.map((p) => p[1]))];
  if (t1 === t0) { t0 -= 60_000; t1 += 60_000; }
  if (v1 === v0) v1 = v0 + 1;
  v1 *= 1.1;
  const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - ((v - v0) / (v1 - v0)) * (H - PAD.t - PAD.b);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title },
    s("title", null, title));
  for (const v of ticks(v0, v1, 4)) {
    svg.append(s("line", { class: "grid", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  for (const t of ticks(t0, t1, 3)) {
    const label = new Date(t).toISOString().slice(11, t1 - t0 < 600_000 ? 19 : 16);
    svg.append(s("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, label));
  }
  svg.append(s("line", { class: "axis", x1: PAD.l, x2: PAD.l, y1: PAD.t, y2: H - PAD.b }));
  svg.append(s("line", { class: "axis", x1: PAD.l, x2: W - PAD.r, y1: H - PAD.b, y2: H - PAD.b }));
  series.forEach((ser, i) => {
    const pts = [...ser.points].sort((a, b) => a[0] - b[0]);
    const d = pts.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    svg.append(s("path", { class: `line s${i % 6}`, d, fill: "none" }));
    for (const p of pts.slice(-60)) svg.append(s("circle", { class: `s${i % 6}`, cx: x(p[0]), cy: y(p[1]), r: 2.5 }));
  });
  const legend = h("ul", { class: "legend" }, series.map((ser, i) => {
    const lastPoint = ser.points[ser.points.length - 1];
    return h("li", null, h("span", { class: `swatch sw${i % 6}`, "aria-hidden": "true" }),
      `${ser.name}: ${lastPoint ? format(lastPoint[1]) : "—"}`);
  }));
  figure.append(svg, legend, h("figcaption", { class: "muted" }, title));
  return figure;
}
