// The control-plane API client. The admin credential lives in this tab's
// sessionStorage only; it is sent in the Authorization header and never
// written anywhere else (not to the console, not to the URL).

const TOKEN_KEY = 'moe.console.credential';

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY) || ''; },
  signIn(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  signOut() { sessionStorage.removeItem(TOKEN_KEY); },
  get signedIn() { return this.token !== ''; },
};

export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};

// onUnauthorized sets what happens when the API rejects the credential.
export function onUnauthorized(f) { unauthorized = f; }

async function call(method, path, body, token = session.token) {
  const headers = { Accept: 'application/json', Authorization: 'Bearer ' + token };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new APIError(0, 'NetworkError', `cannot reach the moe server (${e.message}); is \`moe serve\` running?`);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) {
    const err = new APIError(resp.status, (data && data.code) || resp.statusText,
      (data && data.message) || text.trim() || `${method} ${path}: ${resp.status} ${resp.statusText}`);
    if (resp.status === 401 && token === session.token) unauthorized(err);
    throw err;
  }
  return data;
}

const e = encodeURIComponent;
const ep = (name) => `/v1/endpoints/${e(name)}`;

// checkCredential tries token without storing it.
export const checkCredential = (token) => call('GET', '/v1/endpoints', undefined, token);

export const listEndpoints = () => call('GET', '/v1/endpoints');
export const getEndpoint = (name) => call('GET', ep(name));
export const listDeployments = (name) => call('GET', `${ep(name)}/deployments`);
export const listKeys = (name) => call('POST', `${ep(name)}/listKeys`);
export const getLogs = (name, deployment, containerType, tail) =>
  call('POST', `${ep(name)}/deployments/${e(deployment)}/getLogs`, { containerType, tail });
export const getStats = (name, since, step) =>
  call('GET', `/v1/stats?endpoint=${e(name)}&since=${e(since)}&step=${e(step)}`);
export const invoke = (endpoint, deployment, body) =>
  call('POST', '/console/api/invoke', { endpoint, deployment: deployment || undefined, body });
