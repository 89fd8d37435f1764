// Small DOM helpers. Everything user- or server-supplied goes in as text
// nodes, never as HTML.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const stateClass = {
  succeeded: 'ok', ready: 'ok', healthy: 'ok',
  creating: 'busy', updating: 'busy', starting: 'busy', provisioning: 'busy', pending: 'busy',
  deleting: 'warn', stopping: 'warn', canceled: 'muted',
  failed: 'bad', unhealthy: 'bad',
};

export function badge(state) {
  const s = String(state || 'Unknown');
  return h('span', { class: `badge badge-${stateClass[s.toLowerCase()] || 'muted'}` }, s);
}

export function statusBadge(status) {
  const cls = status >= 500 ? 'bad' : status >= 400 ? 'warn' : status >= 200 && status < 300 ? 'ok' : 'muted';
  return h('span', { class: `badge badge-${cls} status-code`, 'data-testid': 'answer-status' }, String(status));
}

export function copyButton(text, label = 'Copy') {
  const b = h('button', { class: 'btn btn-ghost btn-sm', type: 'button', title: 'Copy to clipboard' }, label);
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = 'Copied';
    } catch {
      b.textContent = 'Copy failed';
    }
    setTimeout(() => { b.textContent = label; }, 1500);
  });
  return b;
}

export function errorBox(err, title = 'Something went wrong') {
  return h('div', { class: 'callout callout-bad', role: 'alert' },
    h('strong', {}, title), h('div', { class: 'callout-body' }, err && err.message ? err.message : String(err)));
}

export function empty(title, ...body) {
  return h('div', { class: 'empty' }, h('div', { class: 'empty-title' }, title), h('div', { class: 'muted' }, body));
}

export function timeAgo(iso) {
  const t = Date.parse(iso);
  if (!t || t < 0) return '—';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function fmtNumber(v, digits = 2) {
  if (v == null || Number.isNaN(v)) return '—';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1).replace(/\.0$/, '');
  return v.toFixed(digits).replace(/\.?0+$/, '');
}

export function fmtMs(v) {
  if (v == null) return '—';
  if (v >= 1000) return `${fmtNumber(v / 1000)} s`;
  return `${fmtNumber(v)} ms`;
}

export function clockTime(t) {
  return new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}
