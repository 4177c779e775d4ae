/* global document, fetch, location, URLSearchParams */
/**
 * Shared by every page: the API client (session cookie + CSRF header), the header (user, version,
 * logout) and small DOM helpers. Text is always set with textContent, never parsed as HTML, so
 * descriptions and other stored text cannot inject markup.
 */

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}

/** Calls the JSON API; a lost session sends the user to the login page. */
export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = cookie('lars_csrf');
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (res.status === 401 && path !== '/api/login') {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(401, 'LARS_ERR_AUTH', 'not logged in');
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: 'HTTP_' + res.status, message: res.statusText };
    throw new ApiError(res.status, err.code, err.message);
  }
  return data;
}

/** el('td', {class: 'num', text: '3'}, child, ...): builds DOM without HTML parsing. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = String(v);
    else if (k === 'class') node.className = v;
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function emptyRow(cols, text) {
  return el('tr', {}, el('td', { class: 'empty', colspan: cols, text }));
}

export function showMessage(node, kind, text) {
  if (!node) return;
  node.className = `message ${kind}`;
  node.textContent = text || '';
}

export function errorText(err) {
  return err instanceof ApiError ? err.message : `request failed: ${err && err.message ? err.message : err}`;
}

export function fmtTime(unixS) {
  if (unixS === null || unixS === undefined) return '';
  const d = new Date(unixS * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtAgo(unixS, nowS = Date.now() / 1000) {
  const s = Math.max(0, Math.round(nowS - unixS));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function setVersion(v) {
  const node = byId('version');
  if (node) node.textContent = String(v);
}

export function params() {
  return new URLSearchParams(location.search);
}

export function routeLink(modid, cmdid) {
  return el('a', { href: `/routes?modid=${modid}&cmdid=${cmdid}`, text: `${modid}/${cmdid}` });
}

/** Header: active nav entry, user name, version, logout. Resolves with the session. */
export async function initPage(active) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === active) a.classList.add('active');
  }
  byId('logout').addEventListener('click', async () => {
    try {
      await api('POST', '/api/logout');
    } finally {
      location.assign('/login');
    }
  });
  const [session, version] = await Promise.all([api('GET', '/api/session'), api('GET', '/api/version')]);
  byId('user').textContent = session.user.name;
  setVersion(version.version);
  return session;
}
