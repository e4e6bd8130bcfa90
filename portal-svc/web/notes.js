// Notes on a transaction, device or ticket: the list, and a form for those who may
// write them (operators and up).

import { get, post, query } from './api.js';
import { h, can, mount, when, onSubmit, field, errorBox, flash } from './ui.js';

export function notesPanel(user, resourceType, resourceId) {
  const list = h('div', { class: 'notes-list' });
  const panel = h('section', { class: 'card', 'aria-labelledby': `notes-${resourceType}` },
    h('h2', { id: `notes-${resourceType}` }, 'Notes'), list);

  async function load() {
    try {
      const page = await get(`/v1/notes${query({ resource_type: resourceType, resource_id: resourceId, limit: 100 })}`);
      mount(list, page.data.length
        ? h('ul', { class: 'notes' }, page.data.map((n) => h('li', {},
          h('div', {}, n.body), h('div', { class: 'muted' }, `${n.author} · ${when(n.created_at)}`))))
        : h('p', { class: 'empty' }, 'No notes yet.'));
    } catch (error) {
      mount(list, errorBox(error));
    }
  }

  if (can(user, 'operator')) {
    const body = h('textarea', { name: 'body', required: true, maxlength: 10000, rows: 3 });
    const form = h('form', { class: 'stack' },
      field('Add a note', body),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add note')));
    onSubmit(form, (values) => post('/v1/notes', {
      resource_type: resourceType, resource_id: String(resourceId), body: values.body,
    }), async () => {
      form.reset();
      flash('Note added.');
      await load();
    });
    panel.append(form);
  }
  load();
  return panel;
}
