import { listEndpoints } from '../api.js';
import { h, replace, badge, copyButton, errorBox, empty, timeAgo, clockTime } from '../dom.js';

const REFRESH_MS = 10000;

export function trafficChips(traffic, kind) {
  const entries = Object.entries(traffic || {}).filter(([, p]) => kind === 'traffic' || p > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (!entries.length) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'chips' }, entries.map(([d, p]) =>
    h('span', { class: `chip${p > 0 ? '' : ' chip-zero'}${kind === 'mirror' ? ' chip-mirror' : ''}` }, h('span', {}, d), h('b', {}, `${p}%`))));
}

export function endpointsView() {
  const body = h('div', {}, h('p', { class: 'muted loading' }, 'Loading endpoints…'));
  const stamp = h('span', { class: 'muted small' });
  const el = h('div', {},
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Endpoints'), h('p', { class: 'muted' }, 'Managed online endpoints served by this moe server.')),
      h('div', { class: 'page-actions' }, stamp, h('button', { class: 'btn', type: 'button', onclick: () => load() }, 'Refresh'))),
    body);

  async function load() {
    try {
      const eps = await listEndpoints();
      stamp.textContent = `Updated ${clockTime(Date.now())}`;
      if (!eps.length) {
        replace(body, h('div', { class: 'card' }, empty('No endpoints yet',
          'Create one with ', h('code', {}, 'moe online-endpoint create -f endpoint.yml'), ', then add a deployment with ',
          h('code', {}, 'moe online-deployment create -f blue.yml --all-traffic'), '.')));
        return;
      }
      replace(body, h('div', { class: 'card card-flush' }, h('table', { class: 'table', 'data-testid': 'endpoints' },
        h('thead', {}, h('tr', {}, ['Name', 'State', 'Auth', 'Traffic', 'Mirror', 'Scoring URI', 'Updated'].map((c) => h('th', {}, c)))),
        h('tbody', {}, eps.map((e) => {
          const href = `#/endpoints/${encodeURIComponent(e.name)}`;
          return h('tr', { class: 'row-link', 'data-endpoint': e.name, onclick: (ev) => { if (!ev.target.closest('button,a')) location.hash = href; } },
            h('td', {}, h('a', { href, class: 'strong' }, e.name), e.description ? h('div', { class: 'muted small' }, e.description) : null),
            h('td', {}, badge(e.provisioning_state)),
            h('td', {}, h('span', { class: 'tag' }, e.auth_mode)),
            h('td', {}, trafficChips(e.traffic, 'traffic')),
            h('td', {}, trafficChips(e.mirror_traffic, 'mirror')),
            h('td', {}, h('div', { class: 'uri-cell' }, h('span', { class: 'mono small uri', title: e.scoring_uri }, e.scoring_uri || '—'), e.scoring_uri ? copyButton(e.scoring_uri) : null)),
            h('td', { class: 'muted small nowrap', title: e.updated_at }, timeAgo(e.updated_at)));
        })))));
    } catch (err) {
      if (err.status !== 401) replace(body, errorBox(err, 'Could not list endpoints'));
    }
  }

  load();
  const timer = setInterval(load, REFRESH_MS);
  return { el, title: 'Endpoints', crumbs: [{ label: 'Endpoints' }], dispose: () => clearInterval(timer) };
}
