// Devices and groups: the terminals (registering one, putting it in a group, its
// diagnostics and notes), groups with their shared configuration, and firmware
// rollouts whose progress the page follows while they run.

import { get, post, put, patch, query, ApiError } from './api.js';
import { h, mount, can, when, badge, table, field, select, onSubmit, confirmDialog, flash, pageHeader, errorBox, liveUpdates } from './ui.js';
import { notesPanel } from './notes.js';

/** How often a running rollout's progress is fetched again. */
const WATCH_MS = 3000;

function firmware(d) {
  if (!d.firmware_version && !d.target_firmware) return '—';
  return d.target_firmware && d.target_firmware !== d.firmware_version
    ? `${d.firmware_version || 'unknown'} → ${d.target_firmware}`
    : d.firmware_version;
}

function progress(r) {
  const p = r.progress;
  return h('span', {},
    h('progress', { max: Math.max(p.total, 1), value: p.installed, 'aria-label': `Rollout ${r.version} progress` }),
    ` ${p.installed}/${p.total} installed`, p.failed ? `, ${p.failed} failed` : '', p.pending ? `, ${p.pending} pending` : '');
}

/** Parses a JSON object typed into a form, as the API would refuse anything else. */
function configArg(text) {
  const invalid = (message) => new ApiError(400, { error: { type: 'invalid_request_error', code: 'invalid_config', message, param: 'config' } });
  let value;
  try {
    value = JSON.parse(text || '{}');
  } catch (e) {
    throw invalid(`The configuration is not valid JSON: ${e.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid('The configuration must be a JSON object, like {"tips": true}.');
  }
  return value;
}

export async function renderDevices(view, ctx) {
  const status = ctx.query.get('status') || '';
  const groupId = ctx.query.get('group_id') || '';
  const after = ctx.query.get('after') || '';
  const [devices, groups] = await Promise.all([
    get(`/v1/devices${query({ status, group_id: groupId, limit: 50, starting_after: after })}`),
    get('/v1/device-groups?limit=100'),
  ]);
  const groupName = new Map(groups.data.map((g) => [g.id, g.name]));
  const manager = can(ctx.user, 'client_admin');

  const filter = h('form', { class: 'row', 'aria-label': 'Filter devices' },
    field('Status', select('status', [['', 'Any'], ['online', 'Online'], ['offline', 'Offline']], status)),
    field('Group', select('group_id', [['', 'Any'], ...groups.data.map((g) => [g.id, g.name])], groupId)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  filter.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.navigate(`#/devices${query(Object.fromEntries(new FormData(filter).entries()))}`);
  });

  let register = null;
  if (manager) {
    register = h('form', { class: 'stack', 'aria-labelledby': 'register-title' },
      h('h2', { id: 'register-title' }, 'Register a device'),
      field('Serial number', h('input', { name: 'serial', required: true, maxlength: 64, autocomplete: 'off' })),
      field('Model', h('input', { name: 'model', required: true, maxlength: 100 })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Register')));
    onSubmit(register, (v) => post('/v1/devices', { serial: v.serial, model: v.model }), (d) => {
      flash(`Device ${d.serial} registered.`);
      ctx.refresh();
    });
  }

  let newGroup = null;
  if (manager) {
    newGroup = h('form', { class: 'stack', 'aria-labelledby': 'group-title' },
      h('h2', { id: 'group-title' }, 'Create a group'),
      field('Name', h('input', { name: 'name', required: true, maxlength: 100 })),
      field('Configuration (JSON object)', h('textarea', { name: 'config', rows: 3, class: 'mono', value: '{}' }), 'Sent to the group\'s devices with every heartbeat.'),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create group')));
    onSubmit(newGroup, (v) => post('/v1/device-groups', { name: v.name, config: configArg(v.config) }), (g) => {
      flash(`Group ${g.name} created.`);
      ctx.refresh();
    });
  }

  const here = (extra) => `#/devices${query({ status, group_id: groupId, ...extra })}`;
  // Devices going offline and rollouts completing show by themselves (the event stream).
  const live = liveUpdates(ctx, ['device.offline', 'rollout.completed'], { message: 'Devices changed.' });
  mount(view,
    pageHeader('Devices'),
    live,
    h('section', { class: 'card', 'aria-label': 'Devices' },
      filter,
      table([
        ['Serial', (d) => h('a', { href: `#/devices/${d.id}` }, d.serial)],
        ['Model', (d) => d.model],
        ['Status', (d) => badge(d.status)],
        ['Last seen', (d) => (d.last_seen ? when(d.last_seen) : 'never')],
        ['Firmware', firmware],
        ['Group', (d) => (d.group_id ? h('a', { href: `#/groups/${d.group_id}` }, groupName.get(d.group_id) || `#${d.group_id}`) : '—')],
      ], devices.data, { empty: 'No device.' }),
      h('div', { class: 'pager' },
        after ? h('a', { href: here({}) }, '« First page') : null,
        devices.has_more && devices.data.length ? h('a', { href: here({ after: devices.data[devices.data.length - 1].id }) }, 'Next page »') : null)),
    h('section', { class: 'card', 'aria-labelledby': 'groups-title' },
      h('h2', { id: 'groups-title' }, 'Groups'),
      table([
        ['Group', (g) => h('a', { href: `#/groups/${g.id}` }, g.name)],
        ['Devices', (g) => String(g.device_count), { num: true }],
        ['Latest rollout', (g) => (g.latest_rollout ? h('span', {}, `${g.latest_rollout.version} `, badge(g.latest_rollout.status)) : '—')],
        ['Configuration', (g) => h('code', {}, JSON.stringify(g.config))],
      ], groups.data, { empty: 'No group yet.' })),
    manager ? h('div', { class: 'grid' }, h('section', { class: 'card' }, register), h('section', { class: 'card' }, newGroup)) : null);
}

export async function renderDevice(view, ctx) {
  const [id] = ctx.params;
  const [device, groups, diagnostics] = await Promise.all([
    get(`/v1/devices/${id}`), get('/v1/device-groups?limit=100'), get(`/v1/devices/${id}/diagnostics?limit=20`),
  ]);
  const group = groups.data.find((g) => g.id === device.group_id);
  let assign = null;
  if (can(ctx.user, 'client_admin')) {
    assign = h('form', { class: 'row', 'aria-label': 'Group' },
      field('Group', select('group_id', [['', 'No group'], ...groups.data.map((g) => [g.id, g.name])], device.group_id ?? '')),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save group')));
    onSubmit(assign, (v) => put(`/v1/devices/${id}/group`, { group_id: v.group_id ? Number(v.group_id) : null }), (d) => {
      flash(d.group_id ? `Device ${d.serial} is in ${groups.data.find((g) => g.id === d.group_id)?.name}.` : `Device ${d.serial} is in no group.`);
      ctx.refresh();
    });
  }
  mount(view,
    pageHeader(`Device ${device.serial}`, badge(device.status)),
    h('section', { class: 'card' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'Model'), h('dd', {}, device.model),
        h('dt', {}, 'Status'), h('dd', {}, badge(device.status)),
        h('dt', {}, 'Last seen'), h('dd', {}, device.last_seen ? when(device.last_seen) : 'never'),
        h('dt', {}, 'Firmware'), h('dd', { id: 'device-firmware' }, firmware(device)),
        h('dt', {}, 'Group'), h('dd', {}, group ? h('a', { href: `#/groups/${group.id}` }, group.name) : '—'),
        h('dt', {}, 'Registered'), h('dd', {}, when(device.created_at)),
        h('dt', {}, 'Transactions'), h('dd', {}, h('a', { href: `#/transactions?device_id=${device.id}` }, 'Payments taken on this device'))),
      assign),
    h('section', { class: 'card', 'aria-labelledby': 'diag-title' },
      h('h2', { id: 'diag-title' }, 'Diagnostics'),
      h('p', { class: 'muted' }, 'What the device reported with its latest heartbeats, newest first.'),
      table([
        ['Received', (b) => when(b.received_at)],
        ['Firmware', (b) => b.firmware_version],
        ['Diagnostics', (b) => h('pre', {}, JSON.stringify(b.diagnostics, null, 2))],
      ], diagnostics.data, { empty: 'The device has not reported yet.' })),
    notesPanel(ctx.user, 'device', device.id));
}

export async function renderGroup(view, ctx) {
  const [id] = ctx.params;
  const [group, devices] = await Promise.all([get(`/v1/device-groups/${id}`), get(`/v1/devices?group_id=${id}&limit=100`)]);
  const manager = can(ctx.user, 'client_admin');
  const rollouts = h('div', { 'aria-live': 'polite' });
  let watching = null;

  async function loadRollouts() {
    const page = await get(`/v1/device-groups/${id}/rollouts?limit=10`);
    const running = page.data.find((r) => r.status === 'in_progress');
    mount(rollouts,
      table([
        ['Rollout', (r) => `#${r.id}`],
        ['Version', (r) => r.version],
        ['Status', (r) => badge(r.status)],
        ['Progress', progress],
        ['Scheduled by', (r) => r.created_by],
        ['Updated', (r) => when(r.updated_at)],
      ], page.data, { empty: 'No firmware rollout yet.' }),
      running ? [
        h('h3', {}, `Rollout of ${running.version}, device by device`),
        table([
          ['Device', (d) => h('a', { href: `#/devices/${d.device_id}` }, `#${d.device_id}`)],
          ['Status', (d) => badge(d.status)],
          ['Updated', (d) => when(d.updated_at)],
        ], running.devices),
        h('p', { class: 'muted' }, `Watching: updated every ${WATCH_MS / 1000} s as devices report.`),
      ] : null);
    return Boolean(running);
  }

  function watch(running) {
    if (watching || !running) return;
    watching = setInterval(async () => {
      if (!ctx.current() || document.hidden) return;
      try {
        if (!(await loadRollouts())) {
          clearInterval(watching);
          watching = null;
          // Done: the devices' firmware changed too.
          ctx.refresh();
        }
      } catch (error) {
        mount(rollouts, errorBox(error));
      }
    }, WATCH_MS);
  }
  ctx.onLeave(() => watching && clearInterval(watching));

  let schedule = null;
  let editConfig = null;
  if (manager) {
    schedule = h('form', { class: 'row', 'aria-label': 'Schedule a firmware rollout' },
      field('Firmware version', h('input', { name: 'version', required: true, maxlength: 64 })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Schedule rollout…')));
    onSubmit(schedule, async (v) => {
      const ok = await confirmDialog({
        title: `Roll out firmware ${v.version.trim()}?`, confirm: 'Schedule',
        body: h('p', {}, `Every device of ${group.name} (${group.device_count}) installs it at its next heartbeat. A rollout in progress is cancelled.`),
      });
      return ok ? post(`/v1/device-groups/${id}/firmware`, { version: v.version.trim() }) : null;
    }, async (r) => {
      if (!r) return;
      schedule.reset();
      flash(`Rollout of ${r.version} scheduled.`);
      watch(await loadRollouts());
    });
    editConfig = h('form', { class: 'stack', 'aria-label': 'Configuration' },
      field('Configuration (JSON object)', h('textarea', { name: 'config', rows: 4, class: 'mono', value: JSON.stringify(group.config, null, 2) })),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save configuration')));
    onSubmit(editConfig, (v) => patch(`/v1/device-groups/${id}`, { config: configArg(v.config) }), () => {
      flash('Configuration saved.');
      ctx.refresh();
    });
  }

  mount(view,
    pageHeader(`Group ${group.name}`),
    h('section', { class: 'card' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'Devices'), h('dd', {}, String(group.device_count)),
        h('dt', {}, 'Configuration'), h('dd', {}, h('pre', {}, JSON.stringify(group.config, null, 2))),
        h('dt', {}, 'Updated'), h('dd', {}, when(group.updated_at))),
      editConfig),
    h('section', { class: 'card', 'aria-labelledby': 'rollouts-title' },
      h('h2', { id: 'rollouts-title' }, 'Firmware rollouts'), schedule, rollouts),
    h('section', { class: 'card', 'aria-labelledby': 'members-title' },
      h('h2', { id: 'members-title' }, 'Devices in this group'),
      table([
        ['Serial', (d) => h('a', { href: `#/devices/${d.id}` }, d.serial)],
        ['Status', (d) => badge(d.status)],
        ['Firmware', firmware],
        ['Last seen', (d) => (d.last_seen ? when(d.last_seen) : 'never')],
      ], devices.data, { empty: 'No device in this group: assign devices from their pages.' })));
  watch(await loadRollouts());
}
