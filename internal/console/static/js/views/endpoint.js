import { getEndpoint, listDeployments, listKeys } from '../api.js';
import { h, replace, badge, copyButton, errorBox, empty, timeAgo } from '../dom.js';
import { trafficChips } from './endpoints.js';
import { metricsTab } from './metrics.js';
import { logsTab } from './logs.js';
import { testTab } from './test.js';

const TABS = [
  ['overview', 'Overview'],
  ['metrics', 'Metrics'],
  ['logs', 'Logs'],
  ['test', 'Test'],
];
const REFRESH_MS = 5000;

export function endpointView(name, tab) {
  const head = h('div', {}, h('p', { class: 'muted loading' }, 'Loading endpoint…'));
  const content = h('div', { class: 'tab-content' });
  const base = `#/endpoints/${encodeURIComponent(name)}`;
  const el = h('div', {},
    head,
    h('nav', { class: 'tabs', role: 'tablist' }, TABS.map(([id, label]) =>
      h('a', { href: `${base}/${id}`, role: 'tab', class: `tab${id === tab ? ' active' : ''}`, 'aria-selected': id === tab ? 'true' : 'false', 'data-tab': id }, label))),
    content);

  let disposed = false;
  let child = null;
  let keysShown = false;
  let state = { endpoint: null, deployments: [] };

  async function load() {
    try {
      const [ep, deps] = await Promise.all([getEndpoint(name), listDeployments(name)]);
      if (disposed) return;
      state = { endpoint: ep, deployments: deps || [] };
      renderHead();
      if (tab === 'overview') renderOverview();
      if (child && child.setDeployments) child.setDeployments(state.deployments);
    } catch (err) {
      if (disposed || err.status === 401) return;
      replace(head, errorBox(err, err.status === 404 ? `Endpoint ${name} not found` : `Could not load endpoint ${name}`));
    }
  }

  const keysPanel = h('div', { class: 'keys-panel', hidden: true, 'data-testid': 'keys' });

  async function toggleKeys(btn) {
    if (keysShown) {
      keysShown = false;
      keysPanel.hidden = true;
      keysPanel.replaceChildren(); // drop the keys from the page
      btn.textContent = 'Show keys';
      return;
    }
    btn.disabled = true;
    try {
      const k = await listKeys(name);
      keysShown = true;
      keysPanel.hidden = false;
      replace(keysPanel,
        h('div', { class: 'callout callout-warn' }, 'Anyone with a key can score this endpoint. Keys stay on screen until you hide them.'),
        [['Primary key', k.primaryKey], ['Secondary key', k.secondaryKey]].map(([label, v]) =>
          h('div', { class: 'kv-row' }, h('span', { class: 'kv-label' }, label), h('code', { class: 'mono key' }, v), copyButton(v))));
      btn.textContent = 'Hide keys';
    } catch (err) {
      keysPanel.hidden = false;
      replace(keysPanel, errorBox(err, 'Could not list keys'));
    } finally {
      btn.disabled = false;
    }
  }

  let keysBtn = null;
  function renderHead() {
    const e = state.endpoint;
    if (!keysBtn) {
      keysBtn = h('button', { class: 'btn', type: 'button', 'data-testid': 'show-keys' }, 'Show keys');
      keysBtn.addEventListener('click', () => toggleKeys(keysBtn));
    }
    keysBtn.hidden = e.auth_mode !== 'key';
    replace(head,
      h('div', { class: 'page-head' },
        h('div', {},
          h('div', { class: 'title-row' }, h('h1', { 'data-testid': 'endpoint-name' }, e.name), badge(e.provisioning_state)),
          h('p', { class: 'muted meta' },
            h('span', {}, 'Auth ', h('span', { class: 'tag' }, e.auth_mode)),
            h('span', {}, 'Location ', h('b', {}, e.location || '—')),
            h('span', {}, 'Network ', h('b', {}, e.public_network_access || '—')),
            h('span', { title: e.created_at }, `Created ${timeAgo(e.created_at)}`),
            e.description ? h('span', {}, e.description) : null)),
        h('div', { class: 'page-actions' }, keysBtn)),
      h('div', { class: 'card uri-card' },
        uriRow('Scoring URI', e.scoring_uri, 'scoring-uri'),
        uriRow('Swagger URI', e.openapi_uri)),
      keysPanel);
  }

  function renderOverview() {
    const e = state.endpoint;
    const deps = state.deployments;
    const traffic = e.traffic || {};
    const mirror = e.mirror_traffic || {};
    const names = [...new Set([...Object.keys(traffic), ...Object.keys(mirror), ...deps.map((d) => d.name)])].sort();
    const byName = Object.fromEntries(deps.map((d) => [d.name, d]));
    replace(content,
      h('div', { class: 'grid-2' },
        h('section', { class: 'card' }, h('h2', {}, 'Traffic'), trafficChips(traffic, 'traffic'),
          h('p', { class: 'muted small' }, 'Share of live requests each deployment answers.')),
        h('section', { class: 'card' }, h('h2', {}, 'Mirror traffic'), trafficChips(mirror, 'mirror'),
          h('p', { class: 'muted small' }, 'Copies of live requests sent to a deployment; its answers are discarded.'))),
      h('h2', { class: 'section-title' }, 'Deployments ', h('span', { class: 'count' }, String(deps.length))),
      deps.length ? names.filter((n) => byName[n]).map((n) => deploymentCard(byName[n], traffic[n] || 0, mirror[n] || 0))
        : h('div', { class: 'card' }, empty('No deployments',
          'Add one with ', h('code', {}, `moe online-deployment create -f blue.yml --endpoint-name ${e.name} --all-traffic`), '.')));
  }

  function mountTab() {
    if (tab === 'overview') {
      replace(content, h('p', { class: 'muted loading' }, 'Loading…'));
      return;
    }
    const make = { metrics: metricsTab, logs: logsTab, test: testTab }[tab];
    child = make(name);
    replace(content, child.el);
  }

  mountTab();
  load();
  const timer = setInterval(load, REFRESH_MS);
  return {
    el,
    title: name,
    crumbs: [{ label: 'Endpoints', href: '#/' }, { label: name }],
    dispose() {
      disposed = true;
      clearInterval(timer);
      if (child && child.dispose) child.dispose();
    },
  };
}

function uriRow(label, uri, testid) {
  return h('div', { class: 'kv-row' },
    h('span', { class: 'kv-label' }, label),
    h('code', { class: 'mono uri', 'data-testid': testid }, uri || '—'),
    uri ? copyButton(uri) : null);
}

function deploymentCard(d, traffic, mirror) {
  const ready = d.ready_instances ?? 0;
  const total = d.total_instances ?? (d.instances || []).length;
  const instances = d.instances || [];
  return h('section', { class: 'card deployment', 'data-deployment': d.name },
    h('div', { class: 'dep-head' },
      h('div', { class: 'title-row' }, h('h3', {}, d.name), badge(d.provisioning_state),
        h('span', { class: `pill ${ready === total && total > 0 ? 'pill-ok' : ready === 0 && total > 0 ? 'pill-bad' : ''}` }, `${ready}/${total} ready`)),
      h('div', { class: 'dep-stats' },
        stat('Traffic', `${traffic}%`), stat('Mirror', `${mirror}%`),
        stat('Instance type', d.instance_type || '—'), stat('Instances', String(d.instance_count ?? total)),
        stat('Generation', d.active_generation && d.active_generation !== d.generation ? `${d.active_generation} → ${d.generation}` : String(d.generation ?? '—')))),
    h('dl', { class: 'dep-details' },
      detail('Model', refText(d.model)),
      detail('Code', d.code_configuration ? `${d.code_configuration.code} · ${d.code_configuration.scoring_script}` : '—'),
      detail('Environment', refText(d.environment)),
      detail('Updated', timeAgo(d.updated_at))),
    d.error ? h('div', { class: 'callout callout-bad', 'data-testid': 'deployment-error' }, h('strong', {}, 'Last error'), h('pre', { class: 'callout-pre' }, d.error)) : null,
    instances.length ? h('table', { class: 'table table-compact' },
      h('thead', {}, h('tr', {}, ['Instance', 'State', 'Reason', 'Generation', 'Restarts', 'Started'].map((c) => h('th', {}, c)))),
      h('tbody', {}, instances.map((i) => h('tr', {},
        h('td', { class: 'mono small' }, i.id),
        h('td', {}, badge(i.state)),
        h('td', { class: 'reason' }, i.reason || h('span', { class: 'muted' }, '—')),
        h('td', {}, String(i.generation)),
        h('td', { class: i.restarts > 0 ? 'warn-text' : '' }, String(i.restarts)),
        h('td', { class: 'muted small nowrap', title: i.started_at }, timeAgo(i.started_at))))))
      : h('p', { class: 'muted small' }, 'No instances running.'));
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
}

function detail(label, value) {
  return [h('dt', {}, label), h('dd', { class: 'mono small' }, value)];
}

function refText(v) {
  if (!v) return '—';
  if (typeof v === 'string') return v;
  if (v.name) return v.version ? `${v.name}:${v.version}` : v.name;
  return v.path || v.image || v.conda_file || JSON.stringify(v);
}
