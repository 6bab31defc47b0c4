// Small SVG charts, our own code: a line chart with axes and a sparkline. No dependency.
// Colours are Okabe-Ito (safe for colour-blind readers); series also differ by dash pattern,
// and every chart carries a text summary for screen readers.

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
const DASHES = ["", "6 3", "2 3", "8 3 2 3"];
let uid = 0;

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const first = Math.floor(lo / step) * step;
  const ticks = [];
  for (let v = first; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumSignificantDigits: 3 });

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23" });
}

/**
 * A line chart as a <figure>: `series` = [{name, points: [[x, y], ...]}], x numbers or epoch ms.
 * Options: title, xLabel, yLabel, time (x is epoch ms), yFormat, zeroBased, id.
 */
export function lineChart({ title, series, xLabel = "", yLabel = "", time = false,
  yFormat = (v) => compact.format(v), zeroBased = false, id }) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  if (id) figure.id = id;
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const drawn = series.filter((s) => s.points.length > 0);
  if (drawn.length === 0) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "No data yet.";
    figure.append(caption, empty);
    return figure;
  }
  // Drawn at about its on-screen width, so that the text stays readable on a phone.
  const W = Math.round(Math.min(640, Math.max(300, window.innerWidth - 56)));
  const H = W < 480 ? 210 : 240, M = { l: 60, r: 30, t: 12, b: 40 };
  const maxXTicks = Math.max(2, Math.floor((W - M.l - M.r) / 80));
  const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
  const ys = drawn.flatMap((s) => s.points.map((p) => p[1]));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (time && x1 - x0 < 60_000) { // at least a minute wide, the points in the middle
    const mid = (x0 + x1) / 2;
    [x0, x1] = [mid - 30_000, mid + 30_000];
  }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  const yTicks = niceTicks(zeroBased ? Math.min(0, ...ys) : Math.min(...ys), Math.max(...ys));
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const px = (x) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
  const py = (y) => H - M.b - ((y - y0) / (y1 - y0 || 1)) * (H - M.t - M.b);
  const titleId = `chart-${++uid}-title`, descId = `chart-${uid}-desc`;
  const summary = drawn.map((s) => {
    const first = s.points[0][1], last = s.points[s.points.length - 1][1];
    return `${s.name}: ${s.points.length} points, from ${yFormat(first)} to ${yFormat(last)}`;
  }).join("; ");
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${titleId} ${descId}`,
    preserveAspectRatio: "xMidYMid meet" },
  svg("title", { id: titleId }, title), svg("desc", { id: descId }, summary));
  const axes = svg("g", { class: "axes" });
  for (const t of yTicks) {
    axes.append(svg("line", { x1: M.l, x2: W - M.r, y1: py(t), y2: py(t), class: "grid" }),
      svg("text", { x: M.l - 6, y: py(t) + 4, "text-anchor": "end" }, yFormat(t)));
  }
  const xTicks = time ? timeTicks(x0, x1, maxXTicks)
    : niceTicks(x0, x1, maxXTicks).filter((t) => t >= x0 && t <= x1);
  for (const t of xTicks) {
    axes.append(svg("line", { x1: px(t), x2: px(t), y1: H - M.b, y2: H - M.b + 4, class: "tick" }),
      svg("text", { x: px(t), y: H - M.b + 16, "text-anchor": "middle" },
        time ? clock(t) : compact.format(t)));
  }
  axes.append(svg("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, class: "axis" }),
    svg("line", { x1: M.l, x2: M.l, y1: M.t, y2: H - M.b, class: "axis" }),
    svg("text", { x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle", class: "label" }, xLabel),
    svg("text", { x: 12, y: (M.t + H - M.b) / 2, "text-anchor": "middle", class: "label",
      transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})` }, yLabel));
  root.append(axes);
  drawn.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const d = s.points.map((p, k) => `${k ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join("");
    root.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2.5,
      "stroke-dasharray": DASHES[i % DASHES.length] || null, "stroke-linejoin": "round",
      class: "series", "data-series": s.name }));
    if (s.points.length <= 40) {
      for (const p of s.points) {
        root.append(svg("circle", { cx: px(p[0]), cy: py(p[1]), r: 3, fill: color }));
      }
    }
  });
  figure.append(caption, root);
  if (drawn.length > 1) figure.append(legend(drawn));
  return figure;
}

function legend(series) {
  const list = document.createElement("ul");
  list.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("li");
    const color = s.color || PALETTE[i % PALETTE.length];
    item.append(svg("svg", { width: 28, height: 10, "aria-hidden": "true" },
      svg("line", { x1: 0, x2: 28, y1: 5, y2: 5, stroke: color, "stroke-width": 3,
        "stroke-dasharray": DASHES[i % DASHES.length] || null })), ` ${s.name}`);
    list.append(item);
  });
  return list;
}

function timeTicks(x0, x1, most) {
  const span = x1 - x0;
  const steps = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400]
    .map((s) => s * 1000);
  const step = steps.find((s) => span / s <= most) || steps[steps.length - 1];
  const ticks = [];
  for (let t = Math.ceil(x0 / step) * step; t <= x1; t += step) ticks.push(t);
  return ticks;
}

/** A tiny trend line of `values` (0..max) with its last point marked; `label` is read out. */
export function sparkline(values, { max = 100, label = "" } = {}) {
  const W = 96, H = 24;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    class: "sparkline", "aria-label": label });
  root.append(svg("title", {}, label));
  root.append(svg("line", { x1: 0, x2: W, y1: H - 1, y2: H - 1, class: "axis" }));
  if (values.length === 0) return root;
  const step = values.length > 1 ? W / (values.length - 1) : 0;
  const y = (v) => H - 2 - (Math.min(Math.max(v, 0), max) / max) * (H - 4);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${y(v).toFixed(1)}`);
  if (values.length > 1) {
    root.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: PALETTE[0],
      "stroke-width": 1.8 }));
  }
  const last = values[values.length - 1];
  root.append(svg("circle", { cx: (values.length - 1) * step, cy: y(last), r: 2.5, fill: PALETTE[1] }));
  return root;
}

/** A horizontal bar (0..1) as SVG, with the value written beside it by the caller. */
export function bar(fraction, { color = PALETTE[0], label = "" } = {}) {
  const W = 120, H = 12;
  const f = Math.min(Math.max(fraction || 0, 0), 1);
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "bar", role: "img",
    "aria-label": label },
  svg("rect", { x: 0, y: 0, width: W, height: H, class: "bar-bg" }),
  svg("rect", { x: 0, y: 0, width: (W * f).toFixed(1), height: H, fill: color }));
}

/** One bar split into parts [{value, color, label}] (e.g. busy / idle / other energy). */
export function stackedBar(parts, { label = "" } = {}) {
  const W = 240, H = 14;
  const total = parts.reduce((sum, p) => sum + Math.max(0, p.value), 0);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "stacked", role: "img",
    preserveAspectRatio: "none", "aria-label": label },
  svg("rect", { x: 0, y: 0, width: W, height: H, class: "bar-bg" }));
  let x = 0;
  for (const p of parts) {
    const w = total > 0 ? (W * Math.max(0, p.value)) / total : 0;
    root.append(svg("rect", { x: x.toFixed(1), y: 0, width: w.toFixed(1), height: H, fill: p.color },
      svg("title", {}, p.label)));
    x += w;
  }
  return root;
}

/** A small colour key square, for text that names a part of a chart. */
export function swatch(color) {
  return svg("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true", class: "swatch" },
    svg("rect", { x: 0.5, y: 0.5, width: 11, height: 11, fill: color, stroke: "#1b1f24" }));
}
