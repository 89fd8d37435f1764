// The console's entry point: a hash router (#/login, #/, #/endpoints/NAME/TAB)
// that mounts one view at a time and disposes of the previous one (its
// timers and observers).

import { session, onUnauthorized } from './api.js';
import { h, replace } from './dom.js';
import { loginView } from './views/login.js';
import { endpointsView } from './views/endpoints.js';
import { endpointView } from './views/endpoint.js';

const app = document.getElementById('app');
const crumbs = document.getElementById('crumbs');
const sessionEl = document.getElementById('session');
let current = null;

const routes = [
  [/^#\/login$/, () => loginView({ next: '#/' })],
  [/^#\/endpoints\/([^/]+)(?:\/(overview|metrics|logs|test))?$/, (m) => endpointView(decodeURIComponent(m[1]), m[2] || 'overview')],
  [/^(?:#\/?)?(?:endpoints)?$/, () => endpointsView()],
];

let rejected = false;

onUnauthorized(() => {
  session.signOut();
  rejected = true;
  if (location.hash !== '#/login') location.hash = '#/login';
});

function render() {
  const hash = location.hash || '#/';
  if (!session.signedIn && hash !== '#/login') {
    location.hash = '#/login';
    return;
  }
  if (current && current.dispose) current.dispose();
  let view = null;
  for (const [re, make] of routes) {
    const m = hash.match(re);
    if (m) { view = make(m); break; }
  }
  if (!view) view = { el: h('div', { class: 'empty' }, 'No such page. ', h('a', { href: '#/' }, 'Back to endpoints')), crumbs: [] };
  if (hash === '#/login' && rejected) {
    view.notice = 'The server rejected the credential. Sign in again.';
    rejected = false;
    if (view.setNotice) view.setNotice(view.notice);
  }
  current = view;
  replace(app, view.el);
  replace(crumbs, (view.crumbs || []).map((c, i) => [
    i ? h('span', { class: 'crumb-sep', 'aria-hidden': 'true' }, '/') : null,
    c.href ? h('a', { href: c.href }, c.label) : h('span', { class: 'crumb-current' }, c.label),
  ]));
  replace(sessionEl, session.signedIn
    ? [h('span', { class: 'session-dot', title: 'Signed in with the admin credential' }), h('span', { class: 'muted' }, 'Admin'),
      h('button', { class: 'btn btn-ghost btn-sm', type: 'button', 'data-testid': 'sign-out', onclick: signOut }, 'Sign out')]
    : []);
  document.title = view.title ? `${view.title} · moe console` : 'moe console';
  window.scrollTo(0, 0);
}

function signOut() {
  session.signOut();
  location.hash = '#/login';
}

window.addEventListener('hashchange', render);
render();
