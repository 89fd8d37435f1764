import { invoke } from '../api.js';
import { h, replace, errorBox, statusBadge, fmtMs } from '../dom.js';

const SAMPLE = '{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}';
const drafts = new Map(); // endpoint → request body, kept while the tab lives

export function testTab(endpoint) {
  const depSel = h('select', { class: 'input', id: 'test-deployment', 'data-testid': 'test-deployment' },
    h('option', { value: '' }, 'Traffic rules (no deployment header)'));
  const body = h('textarea', { class: 'input mono', id: 'test-body', rows: 10, spellcheck: 'false', 'data-testid': 'test-body' });
  body.value = drafts.get(endpoint) ?? SAMPLE;
  body.addEventListener('input', () => drafts.set(endpoint, body.value));
  const send = h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'test-send' }, 'Send request');
  const format = h('button', { class: 'btn btn-ghost btn-sm', type: 'button', title: 'Pretty-print the JSON body' }, 'Format JSON');
  const result = h('div', { class: 'test-result', 'data-testid': 'test-result' },
    h('div', { class: 'empty' }, h('div', { class: 'empty-title' }, 'No request sent yet'),
      h('div', { class: 'muted' }, 'The answer’s status, headers and body show here.')));

  format.addEventListener('click', () => {
    try { body.value = JSON.stringify(JSON.parse(body.value), null, 2); drafts.set(endpoint, body.value); } catch { /* leave as is */ }
  });

  const form = h('form', { class: 'card test-form' },
    h('h2', {}, 'Request'),
    h('label', { class: 'label', for: 'test-deployment' }, 'Deployment'),
    depSel,
    h('div', { class: 'label-row' }, h('label', { class: 'label', for: 'test-body' }, 'Body (application/json)'), format),
    body,
    h('div', { class: 'form-actions' }, send,
      h('span', { class: 'muted small' }, 'Sent by the server with the endpoint’s key; the key is not shown.')));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    send.disabled = true;
    send.textContent = 'Sending…';
    try {
      const res = await invoke(endpoint, depSel.value, body.value);
      renderAnswer(res);
    } catch (err) {
      if (err.status !== 401) replace(result, errorBox(err, 'The request could not be sent'));
    } finally {
      send.disabled = false;
      send.textContent = 'Send request';
    }
  });

  function renderAnswer(res) {
    let text = res.body;
    let kind = 'text';
    if (res.body_base64) {
      kind = 'base64';
    } else {
      try { text = JSON.stringify(JSON.parse(res.body), null, 2); kind = 'json'; } catch { /* not JSON */ }
    }
    const headers = Object.entries(res.headers || {}).sort((a, b) => a[0].localeCompare(b[0]));
    const deployment = (res.headers && (res.headers['Azureml-Model-Deployment'] || [])[0]) || '';
    replace(result,
      h('div', { class: 'card' },
        h('div', { class: 'answer-head' },
          h('h2', {}, 'Answer'), statusBadge(res.status),
          h('span', { class: 'muted small' }, fmtMs(res.duration_ms)),
          deployment ? h('span', { class: 'muted small' }, 'from ', h('b', {}, deployment)) : null),
        h('h3', { class: 'sub' }, kind === 'base64' ? 'Body (base64, not UTF-8)' : 'Body'),
        h('pre', { class: 'code', 'data-testid': 'answer-body' }, text || '(empty)'),
        h('h3', { class: 'sub' }, 'Headers'),
        h('table', { class: 'table table-compact', 'data-testid': 'answer-headers' },
          h('tbody', {}, headers.map(([k, vs]) => h('tr', {}, h('th', { class: 'mono small' }, k), h('td', { class: 'mono small' }, vs.join(', '))))))));
  }

  const el = h('div', { class: 'test-grid' }, form, result);
  return {
    el,
    setDeployments(deps) {
      const have = new Set([...depSel.options].map((o) => o.value));
      for (const d of deps) if (!have.has(d.name)) depSel.append(h('option', { value: d.name }, d.name));
    },
  };
}
