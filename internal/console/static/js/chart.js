// A small time-series line chart drawn on <canvas>: nice y ticks, time
// ticks, gaps where a value is null, dashed series, a hover crosshair and a
// tooltip. No library.

import { h, clockTime } from './dom.js';

const HEIGHT = 190;
const PAD = { left: 52, right: 14, top: 12, bottom: 26 };

export class LineChart {
  // opts: { title, format(v) → string, testid }
  constructor(opts) {
    this.opts = opts;
    this.data = { start: 0, end: 1, series: [] };
    this.hover = null;
    this.canvas = h('canvas', { class: 'chart-canvas', role: 'img', 'aria-label': opts.title });
    this.tooltip = h('div', { class: 'chart-tooltip', hidden: true });
    this.legend = h('div', { class: 'chart-legend' });
    this.el = h('section', { class: 'card chart', 'data-testid': opts.testid },
      h('div', { class: 'chart-head' }, h('h3', {}, opts.title), this.legend),
      h('div', { class: 'chart-body' }, this.canvas, this.tooltip));
    this.canvas.addEventListener('mousemove', (e) => this.onMove(e));
    this.canvas.addEventListener('mouseleave', () => { this.hover = null; this.tooltip.hidden = true; this.draw(); });
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.canvas);
  }

  // data: { start: ms, end: ms, series: [{ name, color, dash, fill, points: [[ms, value|null]] }] }
  update(data) {
    this.data = data;
    this.legend.replaceChildren(...data.series.map((s) =>
      h('span', { class: 'legend-item' },
        h('span', { class: `legend-swatch${s.dash ? ' dashed' : ''}`, 'data-color': s.color }), s.name)));
    for (const sw of this.legend.querySelectorAll('.legend-swatch')) {
      sw.style.borderColor = sw.dataset.color; // CSSOM, allowed by the CSP
    }
    this.draw();
  }

  dispose() { this.resize.disconnect(); }

  geometry() {
    const w = this.canvas.clientWidth || 600;
    return { w, ht: HEIGHT, x0: PAD.left, x1: w - PAD.right, y0: HEIGHT - PAD.bottom, y1: PAD.top };
  }

  scaleY() {
    let max = 0;
    for (const s of this.data.series) for (const [, v] of s.points) if (v != null && v > max) max = v;
    const ticks = niceTicks(max || 1, 4);
    return { max: ticks[ticks.length - 1], ticks };
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const g = this.geometry();
    this.canvas.style.height = `${g.ht}px`;
    if (this.canvas.width !== Math.round(g.w * dpr) || this.canvas.height !== Math.round(g.ht * dpr)) {
      this.canvas.width = Math.round(g.w * dpr);
      this.canvas.height = Math.round(g.ht * dpr);
    }
    const c = this.canvas.getContext('2d');
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, g.w, g.ht);
    const { start, end, series } = this.data;
    const { max, ticks } = this.scaleY();
    const X = (t) => g.x0 + ((t - start) / Math.max(end - start, 1)) * (g.x1 - g.x0);
    const Y = (v) => g.y0 - (v / max) * (g.y0 - g.y1);
    const fmt = this.opts.format || String;

    c.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    c.lineWidth = 1;
    // horizontal grid and y labels
    c.textAlign = 'right';
    c.textBaseline = 'middle';
    for (const v of ticks) {
      const y = Math.round(Y(v)) + 0.5;
      c.strokeStyle = v === 0 ? '#cbd5e1' : '#eef2f6';
      c.beginPath(); c.moveTo(g.x0, y); c.lineTo(g.x1, y); c.stroke();
      c.fillStyle = '#64748b';
      c.fillText(fmt(v), g.x0 - 8, y);
    }
    // time labels
    c.textAlign = 'center';
    c.textBaseline = 'top';
    for (const t of timeTicks(start, end, (g.x1 - g.x0) / 90)) {
      const x = Math.round(X(t)) + 0.5;
      c.strokeStyle = '#eef2f6';
      c.beginPath(); c.moveTo(x, g.y1); c.lineTo(x, g.y0); c.stroke();
      c.fillStyle = '#64748b';
      c.fillText(hhmm(t), x, g.y0 + 7);
    }
    // series
    c.save();
    c.beginPath(); c.rect(g.x0, g.y1 - 2, g.x1 - g.x0, g.y0 - g.y1 + 4); c.clip();
    for (const s of series) {
      const segs = segments(s.points);
      if (s.fill) {
        c.fillStyle = withAlpha(s.color, 0.1);
        for (const seg of segs) {
          if (seg.length < 2) continue;
          c.beginPath();
          c.moveTo(X(seg[0][0]), g.y0);
          for (const [t, v] of seg) c.lineTo(X(t), Y(v));
          c.lineTo(X(seg[seg.length - 1][0]), g.y0);
          c.closePath(); c.fill();
        }
      }
      c.strokeStyle = s.color;
      c.fillStyle = s.color;
      c.lineWidth = 1.75;
      c.lineJoin = 'round';
      c.setLineDash(s.dash ? [5, 4] : []);
      for (const seg of segs) {
        if (seg.length === 1) { // a lone point: draw a dot so it shows
          c.beginPath(); c.arc(X(seg[0][0]), Y(seg[0][1]), 2.2, 0, 2 * Math.PI); c.fill();
          continue;
        }
        c.beginPath();
        seg.forEach(([t, v], i) => (i ? c.lineTo(X(t), Y(v)) : c.moveTo(X(t), Y(v))));
        c.stroke();
      }
      c.setLineDash([]);
    }
    c.restore();
    // hover crosshair
    if (this.hover != null) {
      const x = Math.round(X(this.hover)) + 0.5;
      c.strokeStyle = '#94a3b8';
      c.lineWidth = 1;
      c.beginPath(); c.moveTo(x, g.y1); c.lineTo(x, g.y0); c.stroke();
      for (const s of series) {
        const p = s.points.find(([t]) => t === this.hover);
        if (p && p[1] != null) {
          c.fillStyle = '#fff'; c.strokeStyle = s.color; c.lineWidth = 2;
          c.beginPath(); c.arc(X(p[0]), Y(p[1]), 3.5, 0, 2 * Math.PI); c.fill(); c.stroke();
        }
      }
    }
    if (!series.some((s) => s.points.some(([, v]) => v != null && v !== 0))) {
      c.fillStyle = '#94a3b8';
      c.textAlign = 'center';
      c.textBaseline = 'middle';
      c.font = '13px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
      c.fillText('No requests in this period', (g.x0 + g.x1) / 2, (g.y0 + g.y1) / 2);
    }
  }

  onMove(e) {
    const g = this.geometry();
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const { start, end, series } = this.data;
    const pts = series.length ? series[0].points : [];
    if (!pts.length || x < g.x0 || x > g.x1) {
      this.hover = null; this.tooltip.hidden = true; this.draw(); return;
    }
    const t = start + ((x - g.x0) / (g.x1 - g.x0)) * (end - start);
    let best = pts[0][0];
    for (const [pt] of pts) if (Math.abs(pt - t) < Math.abs(best - t)) best = pt;
    this.hover = best;
    this.draw();
    const fmt = this.opts.format || String;
    this.tooltip.replaceChildren(h('div', { class: 'tt-time' }, clockTime(best)),
      ...series.map((s) => {
        const p = s.points.find(([pt]) => pt === best);
        const sw = h('span', { class: 'legend-swatch' });
        sw.style.borderColor = s.color;
        return h('div', { class: 'tt-row' }, sw, h('span', { class: 'tt-name' }, s.name),
          h('span', { class: 'tt-val' }, p && p[1] != null ? fmt(p[1]) : '—'));
      }));
    this.tooltip.hidden = false;
    const left = Math.min(Math.max(x + 14, 0), g.w - this.tooltip.offsetWidth - 4);
    this.tooltip.style.left = `${left > x ? left : x - this.tooltip.offsetWidth - 14}px`;
    this.tooltip.style.top = `${PAD.top}px`;
  }
}

function segments(points) {
  const out = [];
  let cur = [];
  for (const p of points) {
    if (p[1] == null) { if (cur.length) out.push(cur); cur = []; } else cur.push(p);
  }
  if (cur.length) out.push(cur);
  return out;
}

// niceTicks returns 0..≥max in about n steps of 1, 2 or 5 × 10^k.
export function niceTicks(max, n) {
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const ticks = [];
  for (let v = 0; v <= max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks.length < 2) ticks.push(step);
  return ticks;
}

const TIME_STEPS = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map((s) => s * 1000);

function timeTicks(start, end, maxTicks) {
  const span = end - start;
  const step = TIME_STEPS.find((s) => span / s <= maxTicks) || TIME_STEPS[TIME_STEPS.length - 1];
  const out = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) out.push(t);
  return out;
}

function hhmm(t) {
  const d = new Date(t);
  const p = (n) => String(n).padStart(2, '0');
  return d.getSeconds() ? `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` : `${p(d.getHours())}:${p(d.getMinutes())}`;
}

function withAlpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}
