import { session, checkCredential } from '../api.js';
import { h, replace } from '../dom.js';

export function loginView({ next }) {
  const input = h('input', {
    id: 'credential', type: 'password', class: 'input mono', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'Paste the admin credential', 'aria-describedby': 'credential-help', required: true,
  });
  const notice = h('div', { class: 'login-notice', 'aria-live': 'polite' });
  const button = h('button', { class: 'btn btn-primary btn-block', type: 'submit', 'data-testid': 'sign-in' }, 'Sign in');
  const form = h('form', { class: 'login-form', autocomplete: 'off' },
    h('label', { for: 'credential', class: 'label' }, 'Admin credential'),
    input,
    h('p', { id: 'credential-help', class: 'help' },
      h('code', {}, 'moe serve'), ' writes it to ', h('code', {}, '<data dir>/admin.token'),
      ' — by default ', h('code', {}, '~/.local/share/moe/admin.token'), ', or ', h('code', {}, '$MOE_HOME/admin.token'),
      '. It is kept in this browser tab only, until you sign out or close the tab.'),
    notice,
    button);
  const setNotice = (msg) => replace(notice, msg ? h('div', { class: 'callout callout-bad' }, msg) : null);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    button.textContent = 'Signing in…';
    setNotice('');
    try {
      await checkCredential(token);
      session.signIn(token);
      input.value = '';
      location.hash = next;
    } catch (err) {
      setNotice(err.status === 401 ? 'That credential was not accepted. Copy it again from admin.token.'
        : err.status === 403 ? 'That is the read-only credential; the console needs the admin credential.'
          : err.message);
    } finally {
      button.disabled = false;
      button.textContent = 'Sign in';
    }
  });

  const el = h('div', { class: 'login' },
    h('div', { class: 'card login-card' },
      h('div', { class: 'login-head' },
        h('img', { src: 'favicon.svg', alt: '', width: 40, height: 40 }),
        h('div', {}, h('h1', {}, 'Sign in to moe'), h('p', { class: 'muted' }, 'Endpoints, deployments, metrics and logs of this server.'))),
      form));
  setTimeout(() => input.focus(), 0);
  return { el, title: 'Sign in', crumbs: [], setNotice };
}
