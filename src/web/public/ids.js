/* global document, confirm */
import { api, clear, el, emptyRow, errorText, initPage, showMessage } from './common.js';

/** One panel per kind (modid, cmdid): list, add, edit in place, delete. */
function setupPanel(panel) {
  const kind = panel.dataset.kind;
  const tbody = panel.querySelector('tbody');
  const message = panel.querySelector('.message');
  const form = panel.querySelector('.add-form');

  function viewRow(r) {
    const row = el(
      'tr',
      { dataset: { value: String(r[kind]) } },
      el('td', { class: 'num', text: r[kind] }),
      el('td', { class: 'content', text: r.content }),
      el(
        'td',
        { class: 'actions' },
        el('button', {
          type: 'button',
          class: 'small',
          text: 'Edit',
          onclick: () => row.replaceWith(editRow(r)),
        }),
        el('button', { type: 'button', class: 'small danger', text: 'Delete', onclick: () => remove(r) }),
      ),
    );
    return row;
  }

  function editRow(r) {
    const input = el('input', { value: r.content, maxlength: '255', 'aria-label': 'description' });
    const row = el(
      'tr',
      {},
      el('td', { class: 'num', text: r[kind] }),
      el('td', {}, input),
      el(
        'td',
        { class: 'actions' },
        el('button', {
          type: 'button',
          class: 'small primary',
          text: 'Save',
          onclick: async () => {
            try {
              await api('PUT', `/api/${kind}s/${r[kind]}`, { content: input.value });
              showMessage(message, 'ok', `Saved ${kind} ${r[kind]}.`);
              await load();
            } catch (err) {
              showMessage(message, 'error', errorText(err));
            }
          },
        }),
        el('button', {
          type: 'button',
          class: 'small',
          text: 'Cancel',
          onclick: () => row.replaceWith(viewRow(r)),
        }),
      ),
    );
    return row;
  }

  async function remove(r) {
    if (!confirm(`Delete the description of ${kind} ${r[kind]}?`)) return;
    try {
      await api('DELETE', `/api/${kind}s/${r[kind]}`);
      showMessage(message, 'ok', `Deleted ${kind} ${r[kind]}.`);
      await load();
    } catch (err) {
      showMessage(message, 'error', errorText(err));
    }
  }

  async function load() {
    try {
      const data = await api('GET', `/api/${kind}s`);
      const rows = data[`${kind}s`];
      clear(tbody);
      if (rows.length === 0) tbody.append(emptyRow(3, `No ${kind} described yet.`));
      for (const r of rows) tbody.append(viewRow(r));
    } catch (err) {
      showMessage(message, 'error', errorText(err));
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = form.elements.value.value.trim();
    const content = form.elements.content.value;
    try {
      await api('POST', `/api/${kind}s`, { [kind]: value, content });
      showMessage(message, 'ok', `Added ${kind} ${value}.`);
      form.reset();
      await load();
    } catch (err) {
      showMessage(message, 'error', errorText(err));
    }
  });

  return load;
}

await initPage('ids');
await Promise.all([...document.querySelectorAll('[data-kind]')].map((panel) => setupPanel(panel)()));
