// The MRR chart: a step line drawn as SVG; drag across it to zoom into that stretch of time.
import { h, fill } from "./dom.js";
import { day, money } from "./format.js";

const HEIGHT = 260;
const PAD = { left: 70, right: 16, top: 14, bottom: 28 };

/** Return [{t (ms), mrr}] ascending: the MRR after each movement, with a last point at `now`. */
export function stepSeries(movements, now = Date.now()) {
  const points = movements
    .map((m) => ({ t: new Date(m.date).getTime(), mrr: Number(m["activity-mrr"]) || 0 }))
    .filter((p) => !Number.isNaN(p.t))
    .sort((a, b) => a.t - b.t);
  if (!points.length) return [];
  const last = points[points.length - 1];
  if (now > last.t) points.push({ t: now, mrr: last.mrr });
  return points;
}

/** Return a round upper bound for the y axis (1, 2, 2.5 or 5 times a power of ten). */
export function niceMax(value) {
  if (!(value > 0)) return 100;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** Return the MRR in force at time t (the last step at or before it). */
export function valueAt(points, t) {
  let value = 0;
  for (const p of points) { if (p.t <= t) value = p.mrr; else break; }
  return value;
}

export function mrrChart(container, { currency }) {
  let points = [];
  let domain = null; // [from, to] in ms when zoomed
  const reset = h("button", { type: "button", class: "link-button", id: "chart-reset", hidden: true }, "Reset zoom");
  const hint = h("span", { class: "chart-hint" }, "Drag across the chart to zoom into a period.");
  const svgHolder = h("div", { class: "chart-wrap", id: "mrr-chart" });
  fill(container, svgHolder, h("div", { class: "inline-form" }, hint, reset));
  reset.addEventListener("click", () => { domain = null; draw(); });

  function draw() {
    const width = Math.max(svgHolder.clientWidth || 0, 320);
    const svg = h("svg:svg", { class: "chart", viewBox: `0 0 ${width} ${HEIGHT}`, width, height: HEIGHT, role: "img",
      "aria-label": "MRR over time" });
    fill(svgHolder, svg);
    reset.hidden = !domain;
    if (!points.length) {
      svg.append(h("svg:text", { x: width / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "tick" }, "No MRR yet"));
      return;
    }
    const [from, to] = domain || [points[0].t, points[points.length - 1].t];
    const span = Math.max(to - from, 86400000);
    const visible = points.filter((p) => p.t >= from && p.t <= to);
    const shown = [{ t: from, mrr: valueAt(points, from) }, ...visible, { t: to, mrr: valueAt(points, to) }];
    const top = niceMax(Math.max(...shown.map((p) => p.mrr)));
    const x = (t) => PAD.left + ((t - from) / span) * (width - PAD.left - PAD.right);
    const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);

    for (let i = 0; i <= 4; i += 1) {
      const value = (top / 4) * i;
      svg.append(h("svg:line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value) }),
        h("svg:text", { class: "tick", x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" }, money(value, currency)));
    }
    const ticks = Math.max(2, Math.min(6, Math.floor((width - PAD.left) / 110)));
    for (let i = 0; i <= ticks; i += 1) {
      const t = from + (span * i) / ticks;
      const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
      svg.append(h("svg:text", { class: "tick", x: x(t), y: HEIGHT - 8, "text-anchor": anchor }, day(t)));
    }
    let path = "";
    shown.forEach((p, index) => {
      path += index === 0 ? `M${x(p.t)},${y(p.mrr)}` : `H${x(p.t)}V${y(p.mrr)}`;
    });
    const area = `${path}V${y(0)}H${x(shown[0].t)}Z`;
    svg.append(h("svg:path", { class: "area", d: area }), h("svg:path", { class: "line", d: path }),
      h("svg:line", { class: "axis", x1: PAD.left, x2: width - PAD.right, y1: y(0), y2: y(0) }));
    for (const p of visible) {
      svg.append(h("svg:circle", { class: "dot", cx: x(p.t), cy: y(p.mrr), r: 3 },
        h("svg:title", {}, `${day(p.t)}: ${money(p.mrr, currency)}`)));
    }
    brush(svg, width, (x0, x1) => {
      const t = (px) => from + ((px - PAD.left) / (width - PAD.left - PAD.right)) * span;
      const start = t(Math.max(PAD.left, Math.min(x0, x1)));
      const end = t(Math.min(width - PAD.right, Math.max(x0, x1)));
      if (end - start >= 3600000) { domain = [start, end]; draw(); }
    });
  }

  function brush(svg, width, done) {
    let startX = null;
    const rect = h("svg:rect", { class: "brush", x: 0, y: PAD.top, width: 0, height: HEIGHT - PAD.top - PAD.bottom, visibility: "hidden" });
    svg.append(rect);
    const local = (event) => {
      const box = svg.getBoundingClientRect();
      return ((event.clientX - box.left) / box.width) * width;
    };
    svg.addEventListener("mousedown", (event) => { startX = local(event); rect.setAttribute("x", startX); rect.setAttribute("width", 0); rect.setAttribute("visibility", "visible"); });
    svg.addEventListener("mousemove", (event) => {
      if (startX === null) return;
      const now = local(event);
      rect.setAttribute("x", Math.min(startX, now));
      rect.setAttribute("width", Math.abs(now - startX));
    });
    const finish = (event) => {
      if (startX === null) return;
      const endX = local(event);
      const begin = startX;
      startX = null;
      rect.setAttribute("visibility", "hidden");
      if (Math.abs(endX - begin) > 4) done(begin, endX);
    };
    svg.addEventListener("mouseup", finish);
    svg.addEventListener("mouseleave", finish);
  }

  return {
    set(movements) { points = stepSeries(movements); draw(); },
    draw,
    zoomed: () => domain,
  };
}
