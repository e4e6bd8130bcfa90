// Administration: clients (platform admins), a client's settings, its users (roles and
// lifecycle: deactivate, reactivate, unlock, reset two-factor, end sessions; and, for
// one user chosen with `?user=ID`, its sessions listed and ended one by one and a
// temporary password set) and its applications: creating one shows its API key once;
// revoking one stops the key.

import { get, post, patch, del, query } from './api.js';
import { h, mount, when, money, badge, table, field, select, onSubmit, confirmDialog, flash, pageHeader, isPlatformAdmin, ROLE_NAMES, COMMON_TIME_ZONES } from './ui.js';

const CLIENT_ROLES = ['client_admin', 'operator', 'viewer'];

export async function renderAdmin(view, ctx) {
  const platform = isPlatformAdmin(ctx.user);
  const clients = (await get('/v1/clients')).data;
  const chosen = platform ? Number(ctx.query.get('client')) || (clients[0] && clients[0].id) : ctx.user.client_id;
  const client = clients.find((c) => c.id === chosen);

  const parts = [pageHeader('Administration')];
  if (platform) parts.push(clientsSection(clients, chosen, ctx));
  if (client) {
    const [users, apps] = await Promise.all([
      get(`/v1/users${query({ client_id: client.id, limit: 100 })}`),
      get(`/v1/clients/${client.id}/applications`),
    ]);
    parts.push(settingsSection(client, ctx), usersSection(client, users.data, ctx));
    const managed = users.data.find((u) => String(u.id) === ctx.query.get('user') && manages(u, ctx));
    if (managed) {
      const sessions = await get(`/v1/users/${managed.id}/sessions`);
      parts.push(accessSection(client, managed, sessions.data, ctx));
    }
    parts.push(applicationsSection(client, apps.data, ctx));
  } else if (platform) {
    parts.push(h('p', { class: 'empty' }, 'Create a client to manage its users and applications.'));
  }
  mount(view, parts);
}

function clientsSection(clients, chosen, ctx) {
  const form = h('form', { class: 'row', 'aria-label': 'Create a client' },
    field('New client name', h('input', { name: 'name', required: true, maxlength: 200 })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create client')));
  onSubmit(form, (v) => post('/v1/clients', { name: v.name }), (c) => {
    flash(`Client ${c.name} created.`);
    ctx.navigate(`#/admin?client=${c.id}`);
  });
  return h('section', { class: 'card', 'aria-labelledby': 'clients-title' },
    h('h2', { id: 'clients-title' }, 'Clients'),
    table([
      ['Client', (c) => (c.id === chosen
        ? h('strong', { 'aria-current': 'true' }, `${c.name} (selected)`)
        : h('a', { href: `#/admin?client=${c.id}` }, c.name))],
      ['Users', (c) => String(c.user_count ?? '')],
      ['Volume (captured)', (c) => (c.volume || []).map((v) => money(v.captured, v.currency)).join(', ') || '—'],
      ['Created', (c) => when(c.created_at)],
    ], clients, { empty: 'No client yet.' }),
    form);
}

function settingsSection(client, ctx) {
  const form = h('form', { class: 'stack', 'aria-labelledby': 'settings-title' },
    h('div', { class: 'row' },
      field('Time zone', h('input', { name: 'time_zone', value: client.time_zone || 'UTC', required: true, list: 'time-zone-names', maxlength: 64, autocomplete: 'off', spellcheck: 'false' }), 'Reports\' and the dashboard\'s days and the cut-over follow it, daylight saving time included: a name such as Europe/Paris, or a fixed offset such as +01:00.'),
      h('datalist', { id: 'time-zone-names' }, COMMON_TIME_ZONES.map((name) => h('option', { value: name }))),
      field('Daily settlement cut-over', h('input', { name: 'settlement_cutover', type: 'time', value: client.settlement_cutover || '' }), 'Open batches close by themselves after it; empty: never.'),
      field('Allowed currencies', h('input', { name: 'allowed_currencies', value: (client.allowed_currencies || []).join(', '), placeholder: 'all' }), 'ISO codes, comma-separated; empty: all.')),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'mfa_required', checked: Boolean(client.mfa_required) }), ' Every user must use two-factor sign-in'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save settings')));
  onSubmit(form, (v) => {
    const codes = (v.allowed_currencies || '').split(',').map((c) => c.trim().toUpperCase()).filter(Boolean);
    return patch(`/v1/clients/${client.id}`, {
      time_zone: v.time_zone.trim(),
      settlement_cutover: v.settlement_cutover ? v.settlement_cutover.slice(0, 5) : null,
      allowed_currencies: codes.length ? codes : null,
      mfa_required: v.mfa_required === 'on',
    });
  }, () => {
    flash(`Settings of ${client.name} saved.`);
    ctx.refresh();
  });
  return h('section', { class: 'card', 'aria-labelledby': 'settings-title' },
    h('h2', { id: 'settings-title' }, `Settings of ${client.name}`), form);
}

/** A user's state as words: deactivated, locked, to change the password, or active. */
function userState(u) {
  if (u.active === false) return badge('deactivated');
  if (u.locked) return badge('locked');
  if (u.password_change_required) return badge('password_change');
  return badge('active');
}

/** Whether the caller manages `u`'s lifecycle (never its own account, nor a platform admin). */
function manages(u, ctx) {
  return u.id !== ctx.user.id && u.role !== 'admin';
}

/** The lifecycle buttons of a user the caller manages. */
function lifecycleCell(u, client, ctx) {
  if (!manages(u, ctx)) return '';
  const act = (label, title, body, confirmText, run, done, danger = false) => {
    const button = h('button', { type: 'button', class: danger ? 'danger' : '', 'aria-label': `${label} ${u.email}` }, `${label}…`);
    button.addEventListener('click', async () => {
      const ok = await confirmDialog({ title, danger, confirm: confirmText, body: h('p', {}, body) });
      if (!ok) return;
      try {
        await run();
        flash(done);
        ctx.refresh();
      } catch (error) {
        flash(`${error.message} (${error.code})`, 'error');
      }
    });
    return button;
  };
  const buttons = [];
  if (u.active === false) {
    buttons.push(act('Reactivate', `Reactivate ${u.email}?`, 'They can sign in again.', 'Reactivate',
      () => post(`/v1/users/${u.id}/reactivate`), `${u.email} reactivated.`));
  } else {
    buttons.push(act('Deactivate', `Deactivate ${u.email}?`, 'Their sessions end now and they cannot sign in until reactivated.', 'Deactivate',
      () => post(`/v1/users/${u.id}/deactivate`), `${u.email} deactivated.`, true));
  }
  if (u.locked) {
    buttons.push(act('Unlock', `Unlock ${u.email}?`, 'Their account was locked after failed sign-ins; confirm who they are first.', 'Unlock',
      () => post(`/v1/users/${u.id}/unlock`), `${u.email} unlocked.`));
  }
  if (u.mfa_enabled) {
    buttons.push(act('Reset two-factor', `Reset two-factor sign-in of ${u.email}?`, 'For a lost authenticator: they sign in with the password alone and set it up again.', 'Reset',
      () => post(`/v1/users/${u.id}/mfa/reset`), `Two-factor sign-in of ${u.email} reset.`, true));
  }
  buttons.push(act('End sessions', `End every session of ${u.email}?`, 'They are signed out everywhere.', 'End sessions',
    () => del(`/v1/users/${u.id}/sessions`), `Sessions of ${u.email} ended.`));
  buttons.push(h('a', { href: `#/admin${query({ client: client.id, user: u.id })}`, 'aria-label': `Sessions and password of ${u.email}` }, 'Sessions and password'));
  return h('div', { class: 'actions' }, buttons);
}

/**
 * One user's access: the sessions that have not ended, each ended on its own (the
 * others go on), and a temporary password the user must change at the next sign-in
 * (every session ends with it).
 */
function accessSection(client, u, sessions, ctx) {
  const back = `#/admin${query({ client: client.id })}`;
  const endCell = (s) => {
    const button = h('button', { type: 'button', class: 'danger', 'aria-label': `End session ${s.id}` }, 'End…');
    button.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `End this session of ${u.email}?`, danger: true, confirm: 'End session',
        body: h('p', {}, `The session begun ${when(s.created_at)} is refused from its next request; their other sessions go on.`),
      });
      if (!ok) return;
      try {
        await del(`/v1/users/${u.id}/sessions/${s.id}`);
        flash(`A session of ${u.email} ended.`);
        ctx.refresh();
      } catch (error) {
        flash(`${error.message} (${error.code})`, 'error');
      }
    });
    return button;
  };
  const reset = h('form', { class: 'stack', 'aria-labelledby': 'temporary-title' },
    h('h3', { id: 'temporary-title' }, 'Set a temporary password'),
    field('Temporary password', h('input', { name: 'password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' }),
      'At least 12 characters, not a common one; give it to them safely. They must change it at their next sign-in, and their sessions end now.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Set temporary password')));
  onSubmit(reset, async (v) => {
    const ok = await confirmDialog({
      title: `Set a temporary password for ${u.email}?`, danger: true, confirm: 'Set password',
      body: h('p', {}, 'Their current password stops working and every session of theirs ends.'),
    });
    return ok ? post(`/v1/users/${u.id}/password`, { password: v.password }) : null;
  }, (changed) => {
    if (!changed) return;
    flash(`Temporary password of ${u.email} set; they must change it at their next sign-in.`);
    ctx.refresh();
  });
  return h('section', { class: 'card', 'aria-labelledby': 'access-title' },
    h('div', { class: 'spread' }, h('h2', { id: 'access-title' }, `Sessions and password of ${u.email}`), h('a', { href: back }, 'Close')),
    table([
      ['Session', (s) => h('code', {}, s.id)],
      ['Began', (s) => when(s.created_at)],
      ['Ends', (s) => when(s.expires_at)],
      ['', endCell],
    ], sessions, { empty: 'No session: they are not signed in anywhere.', caption: 'Sessions that have not ended, newest first' }),
    reset);
}

function usersSection(client, users, ctx) {
  const platform = isPlatformAdmin(ctx.user);
  const roleCell = (u) => {
    if (u.id === ctx.user.id || u.role === 'admin') return ROLE_NAMES[u.role];
    const form = h('form', { class: 'row', 'aria-label': `Role of ${u.email}` },
      select('role', CLIENT_ROLES.map((r) => [r, ROLE_NAMES[r]]), u.role, { 'aria-label': `Role of ${u.email}` }),
      h('button', { type: 'submit' }, 'Change'));
    onSubmit(form, (v) => patch(`/v1/users/${u.id}`, { role: v.role }), (changed) => {
      flash(`${changed.email} is now ${ROLE_NAMES[changed.role]}.`);
      ctx.refresh();
    });
    return form;
  };
  const roles = platform ? [...CLIENT_ROLES, 'admin'] : CLIENT_ROLES;
  const create = h('form', { class: 'stack', 'aria-labelledby': 'new-user-title' },
    h('h3', { id: 'new-user-title' }, 'Add a user'),
    field('Email', h('input', { name: 'email', type: 'email', required: true, autocomplete: 'off' })),
    field('Password', h('input', { name: 'password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' }), 'At least 12 characters, not a common one; give it to the person safely.'),
    field('Role', select('role', roles.map((r) => [r, r === 'admin' ? 'Platform admin (no client)' : ROLE_NAMES[r]]), 'viewer')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add user')));
  onSubmit(create, (v) => post('/v1/users', {
    email: v.email, password: v.password, role: v.role, client_id: v.role === 'admin' ? undefined : client.id,
  }), (u) => {
    flash(`${u.email} added as ${ROLE_NAMES[u.role]}.`);
    ctx.refresh();
  });
  return h('section', { class: 'card', 'aria-labelledby': 'users-title' },
    h('h2', { id: 'users-title' }, `Users of ${client.name}`),
    table([
      ['Email', (u) => (u.id === ctx.user.id ? `${u.email} (you)` : u.email)],
      ['Role', roleCell],
      ['Two-factor', (u) => badge(u.mfa_enabled ? 'on' : 'off')],
      ['Status', userState],
      ['Added', (u) => when(u.created_at)],
      ['', (u) => lifecycleCell(u, client, ctx)],
    ], users, { empty: 'No user yet.' }),
    create);
}

function applicationsSection(client, apps, ctx) {
  const shown = h('div', { 'aria-live': 'polite' });
  const create = h('form', { class: 'row', 'aria-label': 'Create an application' },
    field('New application name', h('input', { name: 'name', required: true, maxlength: 200 })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create application and key')));
  onSubmit(create, (v) => post(`/v1/clients/${client.id}/applications`, { name: v.name }), (app) => {
    create.reset();
    const key = h('code', { id: 'new-api-key' }, app.api_key);
    const copy = h('button', { type: 'button' }, 'Copy');
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(app.api_key);
        copy.textContent = 'Copied';
      } catch (e) {
        getSelection().selectAllChildren(key);
      }
    });
    const done = h('button', { type: 'button', class: 'primary' }, 'I have stored it');
    done.addEventListener('click', () => ctx.refresh());
    mount(shown, h('div', { class: 'secret-box', role: 'alert' },
      h('p', {}, h('strong', {}, `API key of ${app.name}. `), 'It is shown only now: store it where the application reads it. The service keeps only a hash.'),
      h('p', {}, key), h('div', { class: 'actions' }, copy, done)));
    done.focus();
  });
  const revokeCell = (a) => {
    if (a.revoked_at) return '';
    const button = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${a.name}` }, 'Revoke…');
    button.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Revoke ${a.name}?`, danger: true, confirm: 'Revoke key',
        body: h('p', {}, `Its key (${a.key_hint}…) is refused from now on; whatever uses it stops working.`),
      });
      if (!ok) return;
      try {
        await del(`/v1/clients/${client.id}/applications/${a.id}`);
        flash(`${a.name} revoked.`);
        ctx.refresh();
      } catch (error) {
        flash(`${error.message} (${error.code})`, 'error');
      }
    });
    return button;
  };
  return h('section', { class: 'card', 'aria-labelledby': 'apps-title' },
    h('h2', { id: 'apps-title' }, `Applications of ${client.name}`),
    h('p', { class: 'muted' }, 'An application\'s API key acts for the client as an operator: payments, batches, reports, tickets, device heartbeats.'),
    table([
      ['Application', (a) => a.name],
      ['Key', (a) => h('code', {}, `${a.key_hint}…`)],
      ['Status', (a) => badge(a.revoked_at ? 'revoked' : 'active')],
      ['Created', (a) => when(a.created_at)],
      ['', revokeCell],
    ], apps, { empty: 'No application yet.' }),
    shown, create);
}
