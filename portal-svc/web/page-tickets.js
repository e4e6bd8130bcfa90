// Support tickets: the list (newest first), opening one, and a ticket's page with its
// comments, status changes along the allowed transitions, assignment to one of the
// client's users (shown by email), and notes.

import { get, post, patch, query } from './api.js';
import { h, mount, can, when, badge, table, field, select, onSubmit, flash, pageHeader } from './ui.js';
import { notesPanel } from './notes.js';

const STATUSES = ['open', 'in_progress', 'waiting', 'resolved', 'closed'];
/** The service's state machine (a change it refuses is a 409 shown as such). */
const NEXT = {
  open: ['in_progress', 'waiting', 'resolved', 'closed'],
  in_progress: ['open', 'waiting', 'resolved'],
  waiting: ['open', 'in_progress', 'resolved'],
  resolved: ['open', 'closed'],
  closed: [],
};
const VERB = { open: 'Reopen', in_progress: 'Start work', waiting: 'Wait for reply', resolved: 'Resolve', closed: 'Close' };

export async function renderTickets(view, ctx) {
  const status = ctx.query.get('status') || '';
  const before = ctx.query.get('before') || '';
  const page = await get(`/v1/tickets${query({ status, limit: 50, starting_after: before })}`);

  const filter = h('form', { class: 'row', 'aria-label': 'Filter tickets' },
    field('Status', select('status', [['', 'Any'], ...STATUSES.map((s) => [s, s.replace('_', ' ')])], status)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  filter.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.navigate(`#/tickets${query(Object.fromEntries(new FormData(filter).entries()))}`);
  });

  let open = null;
  if (can(ctx.user, 'operator')) {
    open = h('form', { class: 'stack card', 'aria-labelledby': 'new-ticket-title' },
      h('h2', { id: 'new-ticket-title' }, 'Open a ticket'),
      field('Subject', h('input', { name: 'subject', required: true, maxlength: 200 })),
      field('What happened', h('textarea', { name: 'body', required: true, rows: 4 })),
      field('Priority', select('priority', [['low', 'Low'], ['normal', 'Normal'], ['high', 'High'], ['urgent', 'Urgent']], 'normal')),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Open ticket')));
    onSubmit(open, (v) => post('/v1/tickets', { subject: v.subject, body: v.body, priority: v.priority }), (t) => {
      flash(`Ticket #${t.id} opened.`);
      ctx.navigate(`#/tickets/${t.id}`);
    });
  }
  const here = (extra) => `#/tickets${query({ status, ...extra })}`;
  mount(view,
    pageHeader('Support tickets'),
    h('section', { class: 'card', 'aria-label': 'Tickets' },
      filter,
      table([
        ['Ticket', (t) => h('a', { href: `#/tickets/${t.id}` }, `#${t.id} ${t.subject}`)],
        ['Status', (t) => badge(t.status)],
        ['Priority', (t) => t.priority],
        ['Assignee', (t) => (t.assignee ? t.assignee.email : '—')],
        ['Opened by', (t) => t.created_by],
        ['Updated', (t) => when(t.updated_at)],
      ], page.data, { empty: 'No ticket.' }),
      h('div', { class: 'pager' },
        before ? h('a', { href: here({}) }, '« Newest') : null,
        page.has_more && page.data.length ? h('a', { href: here({ before: page.data[page.data.length - 1].id }) }, 'Older »') : null)),
    open);
}

export async function renderTicket(view, ctx) {
  const [id] = ctx.params;
  const operator = can(ctx.user, 'operator');
  const [ticket, candidates] = await Promise.all([
    get(`/v1/tickets/${id}`), operator ? get('/v1/tickets/assignees') : Promise.resolve({ data: [] }),
  ]);
  const change = async (body, message) => {
    try {
      await patch(`/v1/tickets/${id}`, body);
      flash(message);
      ctx.refresh();
    } catch (error) {
      flash(`${error.message} (${error.code})`, 'error');
    }
  };
  const statusButtons = operator
    ? NEXT[ticket.status].map((to) => {
      const button = h('button', { type: 'button', class: to === 'closed' ? 'danger' : null }, VERB[to]);
      button.addEventListener('click', () => change({ status: to }, `Ticket #${id} is ${to.replace('_', ' ')}.`));
      return button;
    })
    : [];
  // Assignment: one of the client's active users, by email (the current assignee kept
  // in the list even if deactivated since), or nobody.
  let assign = null;
  if (operator) {
    const people = candidates.data.map((u) => [u.id, u.id === ctx.user.id ? `${u.email} (you)` : u.email]);
    if (ticket.assignee && !candidates.data.some((u) => u.id === ticket.assignee.id)) people.push([ticket.assignee.id, ticket.assignee.email]);
    assign = h('form', { class: 'row', 'aria-label': 'Assign the ticket' },
      field('Assignee', select('assignee_id', [['', 'Nobody'], ...people], ticket.assignee_id)),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Assign')));
    assign.addEventListener('submit', (event) => {
      event.preventDefault();
      const chosen = new FormData(assign).get('assignee_id');
      const who = people.find(([uid]) => String(uid) === chosen);
      change({ assignee_id: chosen ? Number(chosen) : null }, who ? `Assigned to ${who[1]}.` : 'Unassigned.');
    });
  }
  let comment = null;
  if (operator && ticket.status !== 'closed') {
    comment = h('form', { class: 'stack' },
      field('Comment', h('textarea', { name: 'body', required: true, rows: 3 })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add comment')));
    onSubmit(comment, (v) => post(`/v1/tickets/${id}/comments`, { body: v.body }), () => {
      flash('Comment added.');
      ctx.refresh();
    });
  }
  mount(view,
    pageHeader(`#${ticket.id} ${ticket.subject}`, badge(ticket.status)),
    h('section', { class: 'card' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'Status'), h('dd', { id: 'ticket-status' }, badge(ticket.status)),
        h('dt', {}, 'Priority'), h('dd', {}, ticket.priority),
        h('dt', {}, 'Opened by'), h('dd', {}, `${ticket.created_by}, ${when(ticket.created_at)}`),
        h('dt', {}, 'Assignee'), h('dd', { id: 'ticket-assignee' }, ticket.assignee ? `${ticket.assignee.email}${ticket.assignee.id === ctx.user.id ? ' (you)' : ''}` : 'nobody')),
      h('h2', {}, 'Description'),
      h('pre', {}, ticket.body),
      statusButtons.length ? h('div', { class: 'actions', 'aria-label': 'Change the ticket' }, statusButtons) : null,
      assign),
    h('section', { class: 'card', 'aria-labelledby': 'comments-title' },
      h('h2', { id: 'comments-title' }, 'Comments'),
      ticket.comments.length
        ? h('ol', { class: 'comments' }, ticket.comments.map((c) => h('li', {},
          h('div', { class: 'muted' }, `${c.author} · ${when(c.created_at)}`), h('pre', {}, c.body))))
        : h('p', { class: 'empty' }, 'No comment yet.'),
      comment),
    notesPanel(ctx.user, 'ticket', ticket.id));
}
