import { getLogs } from '../api.js';
import { h, replace, errorBox, clockTime } from '../dom.js';

export function logsTab(endpoint) {
  const depSel = h('select', { class: 'input input-sm', 'aria-label': 'Deployment', 'data-testid': 'logs-deployment' });
  const containerSel = h('select', { class: 'input input-sm', 'aria-label': 'Container' },
    h('option', { value: 'inference-server' }, 'inference-server (host and workers)'),
    h('option', { value: 'storage-initializer' }, 'storage-initializer (provisioning)'));
  const tailInput = h('input', { class: 'input input-sm input-num', type: 'number', min: 1, max: 10000, value: '200', 'aria-label': 'Lines' });
  const refresh = h('button', { class: 'btn btn-primary btn-sm', type: 'button' }, 'Fetch logs');
  const stamp = h('span', { class: 'muted small' });
  const out = h('pre', { class: 'logs', 'data-testid': 'logs' }, 'Pick a deployment.');
  const error = h('div', {});
  let loaded = false;

  async function load() {
    const d = depSel.value;
    if (!d) return;
    refresh.disabled = true;
    try {
      const res = await getLogs(endpoint, d, containerSel.value, Number(tailInput.value) || 200);
      replace(error);
      out.textContent = res.content || '(no log lines yet)';
      out.scrollTop = out.scrollHeight;
      stamp.textContent = `Fetched ${clockTime(Date.now())}`;
    } catch (err) {
      if (err.status !== 401) replace(error, errorBox(err, 'Could not fetch logs'));
    } finally {
      refresh.disabled = false;
    }
  }

  refresh.addEventListener('click', load);
  depSel.addEventListener('change', load);
  containerSel.addEventListener('change', load);

  const el = h('div', {},
    h('div', { class: 'toolbar' }, depSel, containerSel, h('label', { class: 'toolbar-label' }, 'Lines ', tailInput), refresh, h('span', { class: 'spacer' }), stamp),
    error,
    out);

  return {
    el,
    setDeployments(deps) {
      const have = new Set([...depSel.options].map((o) => o.value));
      for (const d of deps) if (!have.has(d.name)) depSel.append(h('option', { value: d.name }, d.name));
      if (!deps.length && !loaded) out.textContent = 'This endpoint has no deployments.';
      if (!loaded && depSel.value) { loaded = true; load(); }
    },
  };
}
