// Inline SVG charts: stacked bars of finished jobs per bucket, and the error rate as a line.
import { h, svg, number } from "./ui.js";

const W = 600;
const H = 140;
const PAD = { left: 36, right: 8, top: 8, bottom: 20 };

function label(date, minutes) {
  const d = new Date(date);
  const hh = String(d.getUTCHours()).padStart(2, "0");
  const mm = String(d.getUTCMinutes()).padStart(2, "0");
  return minutes >= 60 * 24 ? d.toISOString().slice(5, 10) : `${hh}:${mm}`;
}

// buckets: [{start, completed, failed, cancelled, errorRate}]
export function throughputChart(series, title) {
  const buckets = series.buckets;
  const max = Math.max(1, ...buckets.map((b) => b.completed + b.failed + b.cancelled));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const step = plotW / Math.max(buckets.length, 1);
  const barW = Math.max(step - 1, 1);
  const y = (v) => PAD.top + plotH - (v / max) * plotH;
  const parts = [];
  parts.push(svg("line", { x1: PAD.left, y1: PAD.top + plotH, x2: W - PAD.right, y2: PAD.top + plotH, class: "axis" }));
  parts.push(svg("text", { x: PAD.left - 4, y: PAD.top + 8, class: "tick", "text-anchor": "end" }, number(max)));
  parts.push(svg("text", { x: PAD.left - 4, y: PAD.top + plotH, class: "tick", "text-anchor": "end" }, "0"));
  buckets.forEach((b, i) => {
    const x = PAD.left + i * step;
    let base = 0;
    for (const [key, cls] of [["completed", "ok"], ["failed", "bad"], ["cancelled", "meh"]]) {
      const v = b[key];
      if (!v) continue;
      const top = y(base + v);
      const rect = svg("rect", { x: x.toFixed(1), y: top.toFixed(1), width: barW.toFixed(1), height: (y(base) - top).toFixed(1), class: cls });
      rect.append(svg("title", {}, `${label(b.start, 0)}: ${v} ${key}`));
      parts.push(rect);
      base += v;
    }
  });
  const every = Math.ceil(buckets.length / 6);
  buckets.forEach((b, i) => {
    if (i % every === 0) {
      parts.push(svg("text", { x: PAD.left + i * step, y: H - 4, class: "tick" }, label(b.start, 0)));
    }
  });
  const totals = buckets.reduce(
    (t, b) => ({ completed: t.completed + b.completed, failed: t.failed + b.failed, cancelled: t.cancelled + b.cancelled }),
    { completed: 0, failed: 0, cancelled: 0 },
  );
  const judged = totals.completed + totals.failed;
  const rate = judged ? ((100 * totals.failed) / judged).toFixed(1) + "%" : "–";
  const summary = `${number(totals.completed)} completed, ${number(totals.failed)} failed, ${number(totals.cancelled)} cancelled; error rate ${rate}`;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `${title}: ${summary}` }, ...parts);
  return h(
    "figure",
    { class: "chart-box" },
    h("figcaption", {}, h("strong", {}, title), " — ", h("span", { class: "chart-summary" }, summary), ` (${series.bucketMinutes}-minute buckets)`),
    chart,
    errorRateLine(buckets),
  );
}

function errorRateLine(buckets) {
  const plotW = W - PAD.left - PAD.right;
  const hgt = 50;
  const step = plotW / Math.max(buckets.length, 1);
  const points = [];
  buckets.forEach((b, i) => {
    if (b.errorRate === null || b.errorRate === undefined) return;
    points.push(`${(PAD.left + i * step + step / 2).toFixed(1)},${(4 + (hgt - 8) * (1 - b.errorRate / 100)).toFixed(1)}`);
  });
  const parts = [
    svg("line", { x1: PAD.left, y1: hgt - 4, x2: W - PAD.right, y2: hgt - 4, class: "axis" }),
    svg("text", { x: PAD.left - 4, y: 10, class: "tick", "text-anchor": "end" }, "100%"),
    svg("text", { x: PAD.left - 4, y: hgt - 4, class: "tick", "text-anchor": "end" }, "0%"),
  ];
  if (points.length) parts.push(svg("polyline", { points: points.join(" "), class: "rate" }));
  for (const p of points) {
    const [cx, cy] = p.split(",");
    parts.push(svg("circle", { cx, cy, r: 2, class: "rate-dot" }));
  }
  return svg("svg", { viewBox: `0 0 ${W} ${hgt}`, class: "chart rate-chart", role: "img", "aria-label": "error rate per bucket" }, ...parts);
}
