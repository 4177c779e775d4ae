import {
  api,
  byId,
  clear,
  el,
  emptyRow,
  errorText,
  fmtTime,
  initPage,
  routeLink,
  setVersion,
  showMessage,
} from './common.js';

const PAGE = 50;
let nextBefore = null;

async function load(before) {
  const q = before ? `?limit=${PAGE}&before=${before}` : `?limit=${PAGE}`;
  try {
    const r = await api('GET', `/api/changes${q}`);
    setVersion(r.version);
    const tbody = clear(byId('changes'));
    if (r.changes.length === 0) tbody.append(emptyRow(5, before ? 'No older changes.' : 'No changes yet.'));
    for (const c of r.changes) {
      tbody.append(
        el(
          'tr',
          {},
          el('td', { class: 'num', text: c.id }),
          el('td', {}, routeLink(c.modid, c.cmdid)),
          el('td', { class: 'num', text: c.version }),
          el('td', { text: fmtTime(c.version) }),
          el(
            'td',
            { class: 'actions' },
            el('a', { href: `/health?modid=${c.modid}&cmdid=${c.cmdid}`, text: 'Health' }),
          ),
        ),
      );
    }
    nextBefore = r.nextBefore;
    byId('older').disabled = nextBefore === null;
    byId('newest').disabled = !before;
  } catch (err) {
    showMessage(byId('message'), 'error', errorText(err));
  }
}

byId('older').addEventListener('click', () => void load(nextBefore));
byId('newest').addEventListener('click', () => void load(null));

await initPage('changes');
await load(null);
