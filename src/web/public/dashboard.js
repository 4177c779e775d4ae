import {
  api,
  byId,
  clear,
  el,
  emptyRow,
  errorText,
  fmtAgo,
  fmtTime,
  initPage,
  routeLink,
  setVersion,
  showMessage,
} from './common.js';

const REFRESH_MS = 10_000;

function text(id, value) {
  byId(id).textContent = value;
}

function render(d) {
  setVersion(d.version);
  text('c-version', String(d.version));
  text('c-version-time', fmtTime(d.version));
  text('c-routes', String(d.routes));
  text('c-hosts', String(d.hosts));
  text('c-overloaded', String(d.overloaded.total));
  text('c-overloaded-note', `reported in the last ${Math.round(d.overloaded.freshnessS / 60)} min`);
  byId('c-overloaded-card').classList.toggle('bad', d.overloaded.total > 0);
  const agents = d.dns.agentsConnected;
  text('c-agents', agents === null ? 'unknown' : String(agents));
  text(
    'c-agents-note',
    d.dns.instances.length === 0
      ? 'no dns instance running'
      : `${d.dns.instances.length} dns instance${d.dns.instances.length === 1 ? '' : 's'}${d.dns.partial ? ', some unreachable' : ''}`,
  );

  const overloaded = clear(byId('overloaded'));
  if (d.overloaded.hosts.length === 0) overloaded.append(emptyRow(4, 'No host is overloaded.'));
  for (const h of d.overloaded.hosts) {
    overloaded.append(
      el(
        'tr',
        {},
        el('td', {}, routeLink(h.modid, h.cmdid)),
        el(
          'td',
          { class: 'mono' },
          el('a', { href: `/health?modid=${h.modid}&cmdid=${h.cmdid}`, text: `${h.ip}:${h.port}` }),
        ),
        el('td', { class: 'num', text: h.callers }),
        el('td', { text: fmtAgo(h.lastReport, d.now) }),
      ),
    );
  }

  const changes = clear(byId('changes'));
  if (d.recentChanges.length === 0) changes.append(emptyRow(4, 'No changes yet.'));
  for (const c of d.recentChanges) {
    changes.append(
      el(
        'tr',
        {},
        el('td', { class: 'num', text: c.id }),
        el('td', {}, routeLink(c.modid, c.cmdid)),
        el('td', { class: 'num', text: c.version }),
        el('td', { text: fmtTime(c.version) }),
      ),
    );
  }

  const dns = clear(byId('dns'));
  if (d.dns.instances.length === 0)
    dns.append(emptyRow(6, 'No live dns instance is registered in the database.'));
  for (const i of d.dns.instances) {
    const unknown = (v) => (v === null ? 'unknown' : String(v));
    dns.append(
      el(
        'tr',
        {},
        el('td', { class: 'mono', text: i.id }),
        el('td', { class: 'mono', text: `${i.host}:${i.port}` }),
        el(
          'td',
          {},
          el('span', {
            class: `badge ${i.reachable ? (i.status === 'ok' ? 'ok' : 'bad') : 'unknown'}`,
            text: i.reachable ? i.status || 'ok' : 'unknown',
            title: i.reason,
          }),
        ),
        el('td', { class: 'num', text: unknown(i.connections) }),
        el('td', { class: 'num', text: unknown(i.subscriptions) }),
        el('td', { class: 'num', text: unknown(i.version) }),
      ),
    );
  }
}

async function refresh() {
  try {
    render(await api('GET', '/api/dashboard'));
    showMessage(byId('message'), 'error', '');
  } catch (err) {
    showMessage(byId('message'), 'error', errorText(err));
  }
}

await initPage('dashboard');
await refresh();
setInterval(refresh, REFRESH_MS);
