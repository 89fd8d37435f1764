import { getStats } from '../api.js';
import { h, replace, errorBox, fmtNumber, fmtMs, clockTime } from '../dom.js';
import { LineChart } from '../chart.js';

const RANGES = [['5m', '5 minutes', '1s'], ['15m', '15 minutes', '5s'], ['1h', '1 hour', '10s']];
const PALETTE = ['#2563eb', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#db2777', '#65a30d', '#7c3aed'];
const REFRESH_MS = 10000;

export function metricsTab(endpoint) {
  let range = RANGES[2];
  let deployment = '';
  let pct = 'p90';
  let last = null;

  const rangeSel = h('select', { class: 'input input-sm', 'aria-label': 'Time range' },
    RANGES.map(([v, label]) => h('option', { value: v, selected: v === range[0] }, `Last ${label}`)));
  const depSel = h('select', { class: 'input input-sm', 'aria-label': 'Deployment' }, h('option', { value: '' }, 'All deployments'));
  const pctSeg = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Percentile' },
    ['p50', 'p90', 'p99'].map((p) => h('button', { type: 'button', class: p === pct ? 'active' : '', 'data-p': p }, p)));
  const stamp = h('span', { class: 'muted small' });
  const tiles = h('div', { class: 'tiles' });
  const error = h('div', {});

  const fmtRate = (v) => fmtNumber(v);
  const rps = new LineChart({ title: 'Requests per second', format: fmtRate, testid: 'chart-rps' });
  const latency = new LineChart({ title: 'Latency p90 — overhead vs model', format: fmtMs, testid: 'chart-latency' });
  const errors = new LineChart({ title: 'Errors per second', format: fmtRate, testid: 'chart-errors' });

  rangeSel.addEventListener('change', () => { range = RANGES.find((r) => r[0] === rangeSel.value); load(); });
  depSel.addEventListener('change', () => { deployment = depSel.value; render(); });
  pctSeg.addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b) return;
    pct = b.dataset.p;
    for (const x of pctSeg.children) x.classList.toggle('active', x === b);
    render();
  });

  const el = h('div', {},
    h('div', { class: 'toolbar' }, rangeSel, depSel, h('span', { class: 'toolbar-label' }, 'Latency'), pctSeg, h('span', { class: 'spacer' }), stamp),
    error, tiles,
    h('div', { class: 'charts' }, rps.el, latency.el, errors.el),
    h('p', { class: 'muted small' }, 'From the in-memory history of this server (last hour, per second). Overhead is gateway and queue time; model is host and run() time. Requests rejected before a deployment was picked (e.g. 401) count under the endpoint only.'));

  function setDeployments(deps) {
    const have = new Set([...depSel.options].map((o) => o.value));
    for (const d of deps) {
      if (!have.has(d.name)) depSel.append(h('option', { value: d.name }, d.name));
    }
  }

  async function load() {
    try {
      last = await getStats(endpoint, range[0], range[2]);
      stamp.textContent = `Updated ${clockTime(Date.now())}`;
      replace(error);
      setDeployments(last.deployments.filter((d) => d.deployment));
      render();
    } catch (err) {
      if (err.status !== 401) replace(error, errorBox(err, 'Could not load metrics'));
    }
  }

  function render() {
    if (!last) return;
    const start = Date.parse(last.start);
    const end = Date.parse(last.end);
    const sel = deployment ? last.deployments.find((d) => d.deployment === deployment) : last.all;
    const pts = sel ? sel.points : last.all.points.map((p) => ({ time: p.time, seconds: p.seconds, requests: 0, rps: 0, ok_per_s: 0, errors_4xx_per_s: 0, errors_5xx_per_s: 0 }));
    const t = (p) => Date.parse(p.time);

    // tiles
    const reqs = pts.reduce((a, p) => a + p.requests, 0);
    const secs = pts.reduce((a, p) => a + p.seconds, 0) || 1;
    const errs = pts.reduce((a, p) => a + (p.errors_4xx_per_s + p.errors_5xx_per_s) * p.seconds, 0);
    const lastLat = [...pts].reverse().find((p) => p.total_ms);
    replace(tiles,
      tile('Requests', reqs.toLocaleString(), `in the last ${range[1]}`),
      tile('Average rate', `${fmtNumber(reqs / secs)}/s`, 'requests per second'),
      tile('Error rate', reqs ? `${fmtNumber((100 * errs) / reqs)}%` : '—', '4xx and 5xx answers'),
      tile(`Latest ${pct} latency`, lastLat ? fmtMs(lastLat.total_ms[pct]) : '—',
        lastLat && lastLat.model_ms ? `model ${fmtMs(lastLat.model_ms[pct])} · overhead ${fmtMs(lastLat.overhead_ms[pct])}` : 'total'));

    // requests per second: one line per deployment, or one filled line
    let rpsSeries;
    if (!deployment && last.deployments.length > 1) {
      let i = 0;
      rpsSeries = last.deployments.map((d) => ({
        name: d.deployment || '(rejected before routing)', color: d.deployment ? PALETTE[i++ % PALETTE.length] : '#94a3b8',
        points: d.points.map((p) => [t(p), p.rps]),
      }));
    } else {
      rpsSeries = [{ name: deployment || 'All deployments', color: PALETTE[0], fill: true, points: pts.map((p) => [t(p), p.rps]) }];
    }
    rps.update({ start, end, series: rpsSeries });

    latency.el.querySelector('h3').textContent = `Latency ${pct} — overhead vs model`;
    const lat = (key) => pts.map((p) => [t(p), p[key] ? p[key][pct] : null]);
    latency.update({ start, end, series: [
      { name: 'Total', color: '#475569', points: lat('total_ms') },
      { name: 'Model', color: '#2563eb', points: lat('model_ms') },
      { name: 'Overhead', color: '#ea580c', dash: true, points: lat('overhead_ms') },
    ] });

    errors.update({ start, end, series: [
      { name: '5xx', color: '#dc2626', fill: true, points: pts.map((p) => [t(p), p.errors_5xx_per_s]) },
      { name: '4xx', color: '#d97706', points: pts.map((p) => [t(p), p.errors_4xx_per_s]) },
    ] });
  }

  load();
  const timer = setInterval(load, REFRESH_MS);
  return {
    el,
    setDeployments,
    dispose() {
      clearInterval(timer);
      rps.dispose(); latency.dispose(); errors.dispose();
    },
  };
}

function tile(label, value, sub) {
  return h('div', { class: 'card tile' }, h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, value), h('div', { class: 'tile-sub muted' }, sub));
}
