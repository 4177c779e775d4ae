/* global history, URLSearchParams, confirm */
import {
  api,
  byId,
  clear,
  el,
  emptyRow,
  errorText,
  initPage,
  params,
  setVersion,
  showMessage,
} from './common.js';

const PAGE = 100;
const COLUMNS = 9;
// serverNow - Date.now() at the last load: lease expiries are shown against the server's clock.
const state = { modid: '', cmdid: '', offset: 0, total: 0, skew: 0 };
let modDesc = new Map();
let cmdDesc = new Map();

function idCell(value, desc) {
  const d = desc.get(value);
  return el('td', {}, String(value), d ? el('div', { class: 'desc clamp', text: d, title: d }) : null);
}

async function loadDescriptions() {
  try {
    const [m, c] = await Promise.all([api('GET', '/api/modids'), api('GET', '/api/cmdids')]);
    modDesc = new Map(m.modids.map((r) => [r.modid, r.content]));
    cmdDesc = new Map(c.cmdids.map((r) => [r.cmdid, r.content]));
  } catch {
    // Descriptions are decoration; the list works without them.
  }
}

function syncUrl() {
  const q = new URLSearchParams();
  if (state.modid !== '') q.set('modid', state.modid);
  if (state.cmdid !== '') q.set('cmdid', state.cmdid);
  const s = q.toString();
  history.replaceState(null, '', s ? `/routes?${s}` : '/routes');
}

// Issue 15: weight, origin (manual or registered) and the lease of a registered instance.
function weightCell(h) {
  const title =
    h.manualWeight != null
      ? 'set by an operator'
      : h.lease
        ? 'declared by the registered instance'
        : 'default';
  return el('td', { class: 'num', title, text: String(h.weight ?? 1) });
}

function leaseCell(h) {
  if (!h.lease) return el('td', { text: '—' });
  const s = Math.round((h.lease.expiresAt - (Date.now() + state.skew)) / 1000);
  const when = s >= 0 ? `expires in ${s} s` : `expired ${-s} s ago`;
  return el(
    'td',
    { class: 'mono', title: `ttl ${h.lease.ttlS} s` },
    h.lease.agent,
    el('div', { class: 'desc', text: when }),
  );
}

function viewRow(h) {
  const row = el(
    'tr',
    { dataset: { id: String(h.id) } },
    el('td', { class: 'num', text: h.id }),
    idCell(h.modid, modDesc),
    idCell(h.cmdid, cmdDesc),
    el('td', { class: 'mono', text: h.ip }),
    el('td', { class: 'num', text: h.port }),
    weightCell(h),
    el('td', { text: h.origin ?? 'manual' }),
    leaseCell(h),
    el(
      'td',
      { class: 'actions' },
      el('a', { href: `/health?modid=${h.modid}&cmdid=${h.cmdid}`, text: 'Health' }),
      el('button', {
        type: 'button',
        class: 'small',
        text: 'Edit',
        onclick: () => row.replaceWith(editRow(h)),
      }),
      el('button', { type: 'button', class: 'small danger', text: 'Delete', onclick: () => remove(h) }),
    ),
  );
  return row;
}

function editRow(h) {
  const input = (name, value, cls) =>
    el('input', { name, value: String(value), class: cls, 'aria-label': name });
  const modid = input('modid', h.modid, 'narrow');
  const cmdid = input('cmdid', h.cmdid, 'narrow');
  const ip = input('ip', h.ip, '');
  const port = input('port', h.port, 'narrow');
  // Empty: no manual weight (the instance's own, else 1).
  const weight = input('weight', h.manualWeight ?? '', 'narrow');
  weight.placeholder = h.lease ? String(h.lease.weight) : '1';
  const row = el(
    'tr',
    { dataset: { id: String(h.id) }, class: 'editing' },
    el('td', { class: 'num', text: h.id }),
    el('td', {}, modid),
    el('td', {}, cmdid),
    el('td', {}, ip),
    el('td', {}, port),
    el('td', {}, weight),
    el('td', { text: h.origin ?? 'manual' }),
    leaseCell(h),
    el(
      'td',
      { class: 'actions' },
      el('button', {
        type: 'button',
        class: 'small primary',
        text: 'Save',
        onclick: async () => {
          try {
            const r = await api('PUT', `/api/routes/${h.id}`, {
              modid: modid.value,
              cmdid: cmdid.value,
              ip: ip.value,
              port: port.value,
              weight: weight.value.trim() === '' ? null : weight.value.trim(),
            });
            setVersion(r.version);
            showMessage(
              byId('list-message'),
              'ok',
              r.changed ? `Saved host ${h.id}; version ${r.version}.` : 'Nothing changed.',
            );
            await load();
          } catch (err) {
            showMessage(byId('list-message'), 'error', errorText(err));
          }
        },
      }),
      el('button', {
        type: 'button',
        class: 'small',
        text: 'Cancel',
        onclick: () => row.replaceWith(viewRow(h)),
      }),
    ),
  );
  return row;
}

async function remove(h) {
  const note = h.lease
    ? "\n\nA running instance registers this host: it comes back at its agent's next renewal unless the instance stops."
    : '';
  if (!confirm(`Delete host ${h.ip}:${h.port} from route ${h.modid}/${h.cmdid}?${note}`)) return;
  try {
    const r = await api('DELETE', `/api/routes/${h.id}`);
    setVersion(r.version);
    showMessage(
      byId('list-message'),
      'ok',
      `Deleted ${h.ip}:${h.port} from route ${h.modid}/${h.cmdid}; version ${r.version}.`,
    );
    await load();
  } catch (err) {
    showMessage(byId('list-message'), 'error', errorText(err));
  }
}

async function load() {
  const q = new URLSearchParams({ limit: String(PAGE), offset: String(state.offset) });
  if (state.modid !== '') q.set('modid', state.modid);
  if (state.cmdid !== '') q.set('cmdid', state.cmdid);
  const tbody = byId('hosts');
  try {
    const r = await api('GET', `/api/routes?${q}`);
    setVersion(r.version);
    state.total = r.total;
    if (typeof r.now === 'number') state.skew = r.now - Date.now();
    clear(tbody);
    if (r.hosts.length === 0)
      tbody.append(
        emptyRow(
          COLUMNS,
          state.modid || state.cmdid ? 'No host matches.' : 'No routes yet: add a host above.',
        ),
      );
    for (const h of r.hosts) tbody.append(viewRow(h));
    const filter = [
      state.modid !== '' ? `modid ${state.modid}` : '',
      state.cmdid !== '' ? `cmdid ${state.cmdid}` : '',
    ]
      .filter(Boolean)
      .join(', ');
    byId('list-title').textContent = filter ? `Hosts with ${filter}` : 'All hosts';
    const first = r.total === 0 ? 0 : state.offset + 1;
    byId('page-info').textContent = `${first}–${state.offset + r.hosts.length} of ${r.total}`;
    byId('prev').disabled = state.offset === 0;
    byId('next').disabled = state.offset + r.hosts.length >= r.total;
  } catch (err) {
    showMessage(byId('list-message'), 'error', errorText(err));
  }
}

byId('search-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  state.modid = byId('search-modid').value.trim();
  state.cmdid = byId('search-cmdid').value.trim();
  state.offset = 0;
  showMessage(byId('list-message'), 'error', '');
  syncUrl();
  await load();
});

byId('search-clear').addEventListener('click', async () => {
  byId('search-modid').value = '';
  byId('search-cmdid').value = '';
  state.modid = state.cmdid = '';
  state.offset = 0;
  syncUrl();
  await load();
});

byId('add-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = {
    modid: byId('add-modid').value.trim(),
    cmdid: byId('add-cmdid').value.trim(),
    ip: byId('add-ip').value.trim(),
    port: byId('add-port').value.trim(),
  };
  const weight = byId('add-weight').value.trim();
  if (weight !== '') body.weight = weight;
  try {
    const r = await api('POST', '/api/routes', body);
    setVersion(r.version);
    showMessage(
      byId('add-message'),
      'ok',
      `Added ${body.ip}:${body.port} to route ${body.modid}/${body.cmdid} (id ${r.id}); version ${r.version}.`,
    );
    byId('add-ip').value = '';
    byId('add-port').value = '';
    await load();
  } catch (err) {
    showMessage(byId('add-message'), 'error', errorText(err));
  }
});

byId('prev').addEventListener('click', () => {
  state.offset = Math.max(0, state.offset - PAGE);
  void load();
});
byId('next').addEventListener('click', () => {
  state.offset += PAGE;
  void load();
});

const p = params();
state.modid = p.get('modid') || '';
state.cmdid = p.get('cmdid') || '';
byId('search-modid').value = state.modid;
byId('search-cmdid').value = state.cmdid;
if (state.modid) byId('add-modid').value = state.modid;
if (state.cmdid) byId('add-cmdid').value = state.cmdid;
await initPage('routes');
await loadDescriptions();
await load();
