/* global history, URLSearchParams */
import { renderChart } from './chart.js';
import {
  api,
  byId,
  clear,
  el,
  emptyRow,
  errorText,
  fmtAgo,
  initPage,
  params,
  showMessage,
} from './common.js';

const destroyers = new Map();

function errRate(succ, err) {
  const total = succ + err;
  return total === 0 ? '—' : `${((100 * err) / total).toFixed(1)} %`;
}

function renderStatus(s) {
  const tbody = clear(byId('status'));
  const select = byId('host');
  const selected = select.value;
  select.replaceChildren(el('option', { value: '', text: 'all hosts' }));
  if (s.hosts.length === 0) tbody.append(emptyRow(7, 'This route has no hosts and no statistics.'));
  for (const h of s.hosts) {
    const value = `${h.ip}:${h.port}`;
    select.append(
      el('option', {
        value,
        text: h.id === null ? `${value} (removed)` : value,
        selected: value === selected,
      }),
    );
    if (h.callers.length === 0) {
      tbody.append(
        el(
          'tr',
          {},
          el('td', { class: 'mono', text: value }),
          el('td', { class: 'empty', colspan: 6, text: 'no report yet' }),
        ),
      );
      continue;
    }
    h.callers.forEach((c, i) => {
      tbody.append(
        el(
          'tr',
          { class: c.overload ? 'overloaded' : '' },
          el('td', { class: 'mono', text: i === 0 ? value : '' }),
          el('td', { class: 'mono', text: c.caller }),
          el('td', { class: 'num', text: c.succ }),
          el('td', { class: 'num', text: c.err }),
          el('td', { class: 'num', text: errRate(c.succ, c.err) }),
          el(
            'td',
            {},
            el('span', {
              class: `badge ${c.overload ? 'bad' : 'ok'}`,
              text: c.overload ? 'overloaded' : 'idle',
            }),
          ),
          el('td', { text: fmtAgo(c.ts, s.now) }),
        ),
      );
    });
  }
}

async function loadChart(range, modid, cmdid, host) {
  const container = byId(`chart-${range}`);
  const q = new URLSearchParams({ modid, cmdid, range });
  if (host) {
    const i = host.lastIndexOf(':');
    q.set('ip', host.slice(0, i));
    q.set('port', host.slice(i + 1));
  }
  const h = await api('GET', `/api/health/history?${q}`);
  destroyers.get(range)?.();
  destroyers.set(range, renderChart(container, h));
}

async function show() {
  const modid = byId('modid').value.trim();
  const cmdid = byId('cmdid').value.trim();
  const host = byId('host').value;
  if (modid === '' || cmdid === '') return;
  const q = new URLSearchParams({ modid, cmdid });
  if (host) q.set('host', host);
  history.replaceState(null, '', `/health?${q}`);
  showMessage(byId('message'), 'error', '');
  try {
    const [status, mods, cmds] = await Promise.all([
      api('GET', `/api/health/status?modid=${encodeURIComponent(modid)}&cmdid=${encodeURIComponent(cmdid)}`),
      api('GET', '/api/modids'),
      api('GET', '/api/cmdids'),
    ]);
    byId('title').textContent = `Call health of route ${status.modid}/${status.cmdid}`;
    const md = mods.modids.find((m) => m.modid === status.modid);
    const cd = cmds.cmdids.find((c) => c.cmdid === status.cmdid);
    byId('subtitle').textContent =
      [md && md.content, cd && cd.content].filter(Boolean).join(' · ') ||
      'Latest counters reported by each agent, and history from the reporter.';
    renderStatus(status);
    await Promise.all([loadChart('hour', modid, cmdid, host), loadChart('day', modid, cmdid, host)]);
  } catch (err) {
    showMessage(byId('message'), 'error', errorText(err));
  }
}

byId('route-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void show();
});
byId('host').addEventListener('change', () => void show());

const p = params();
byId('modid').value = p.get('modid') || '';
byId('cmdid').value = p.get('cmdid') || '';
if (p.get('host'))
  byId('host').append(el('option', { value: p.get('host'), text: p.get('host'), selected: true }));
await initPage('routes');
await show();
