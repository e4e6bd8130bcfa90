// End-to-end tests of the web portal in headless Chromium (Debian's `chromium`,
// driven by playwright-core; no browser is downloaded). Started by
// scripts/web-e2e.sh against the real portal-svc binary on an empty data directory.
//
// A scenario a person would follow: sign in (with the keyboard), see the dashboard,
// refund in the page a payment made through the API, close the batch and reconcile
// it, export a report as CSV, register a device and follow a firmware rollout, open a
// ticket and add a note, see a new payment appear live, add a webhook endpoint (its
// secret shown once), rotate and disable it, create and revoke an API key, set the client's settings,
// deactivate and reactivate a user, find the refused refund in the activity page and
// export it, turn on two-factor sign-in
// and sign in again with a code; then what a viewer may not do, the platform admin's
// view, a phone-sized screen, and the CSRF token refused missing from the page
// itself. Every page is saved as a screenshot. Any console error, failed asset or
// Content-Security-Policy violation fails the run.

import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

const BASE = must('PORTAL_URL');
const ADMIN_EMAIL = must('PORTAL_ADMIN_EMAIL');
const ADMIN_PASSWORD = must('PORTAL_ADMIN_PASSWORD');
const SHOTS = must('SCREENSHOT_DIR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PASSWORD = 'an e2e password of some length';
const TIMEOUT_MS = 15000;

function must(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/web-e2e.sh)`);
  return value;
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// ---------------------------------------------------------------------------------
// The API, as a terminal or a back office would call it.

async function api(method, path, { token, body, key, expect } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (key) headers['Idempotency-Key'] = key;
  const response = await fetch(`${BASE}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (expect !== undefined && response.status !== expect) {
    throw new Error(`${method} ${path}: expected ${expect}, got ${response.status} ${text}`);
  }
  return { status: response.status, body: json };
}

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of a base32 secret at `secs`. */
function totp(secret, secs) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(secs / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(code).padStart(6, '0');
}

// ---------------------------------------------------------------------------------
// The browser

const problems = [];
let shotCount = 0;
const started = Date.now();

async function newPage(browser, options = {}) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 }, ...options });
  context.setDefaultTimeout(TIMEOUT_MS);
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const where = message.location().url || '';
    // A refused API request is logged by the browser; the page shows it to the user.
    if (message.text().startsWith('Failed to load resource') && where.includes('/v1/')) return;
    problems.push(`console error: ${message.text()} (${where})`);
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (response.status() >= 400 && !url.pathname.startsWith('/v1/')) {
      problems.push(`${response.status()} for ${url.pathname}`);
    }
  });
  return page;
}

async function shot(page, name) {
  shotCount += 1;
  const file = join(SHOTS, `${String(shotCount).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function step(name, page, body) {
  const t0 = Date.now();
  try {
    await body();
  } catch (error) {
    if (page) await page.screenshot({ path: join(SHOTS, `FAILED-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
    error.message = `${name}: ${error.message}`;
    throw error;
  }
  console.log(`  ok  ${name} (${Date.now() - t0} ms)`);
}

async function signIn(page, email, password, { otp } = {}) {
  await page.goto(`${BASE}/`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  // Keyboard only: the email field has focus; Tab to the password; Enter submits.
  await page.keyboard.type(email);
  await page.keyboard.press('Tab');
  await page.keyboard.type(password);
  await page.keyboard.press('Enter');
  if (otp) {
    await page.getByLabel('One-time code').waitFor();
    await page.getByLabel('One-time code').fill(otp());
    await page.keyboard.press('Enter');
  }
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Waits until the page, done loading, shows `n` table rows. */
async function rows(page, n) {
  await page.waitForFunction((count) => !document.getElementById('main').hasAttribute('aria-busy')
    && document.querySelectorAll('#main tbody tr').length === count, n);
}

const nav = (page, name) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });

async function confirm(page, buttonName) {
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await dialog.getByRole('button', { name: buttonName }).click();
  await dialog.waitFor({ state: 'detached' });
}

async function main() {
  await mkdir(SHOTS, { recursive: true });
  // The world before the browser: a client, its people and its till.
  const admin = (await api('POST', '/v1/auth/login', { body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD }, expect: 200 })).body.token;
  const client = (await api('POST', '/v1/clients', { token: admin, body: { name: 'Corner Cafe' }, expect: 201 })).body;
  for (const [email, role] of [['manager@cafe.test', 'client_admin'], ['viewer@cafe.test', 'viewer']]) {
    await api('POST', '/v1/users', { token: admin, body: { email, password: PASSWORD, role, client_id: client.id }, expect: 201 });
  }
  const managerToken = (await api('POST', '/v1/auth/login', { body: { email: 'manager@cafe.test', password: PASSWORD }, expect: 200 })).body.token;
  const till = (await api('POST', `/v1/clients/${client.id}/applications`, { token: admin, body: { name: 'till' }, expect: 201 })).body.api_key;
  const sale = (await api('POST', '/v1/transactions', { token: till, key: 'order-1001', body: { kind: 'payment', amount: '12.50', currency: 'USD', description: 'Two flat whites' }, expect: 201 })).body;
  const auth = (await api('POST', '/v1/transactions', { token: till, key: 'order-1002', body: { kind: 'payment', amount: '40.00', currency: 'USD', capture: false, description: 'Catering deposit' }, expect: 201 })).body;
  await api('POST', '/v1/transactions', { token: till, key: 'order-1003', body: { kind: 'payment', amount: '8.00', currency: 'EUR' }, expect: 201 });

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  try {
    const page = await newPage(browser);

    await step('sign in with the keyboard; the session is an HttpOnly SameSite=Strict cookie', page, async () => {
      await page.goto(`${BASE}/`);
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      await shot(page, 'sign-in');
      await signIn(page, 'manager@cafe.test', PASSWORD);
      const cookies = await page.context().cookies();
      const session = cookies.find((c) => c.name === 'portal_session');
      check(session && session.httpOnly && session.sameSite === 'Strict' && session.path === '/', `cookie ${JSON.stringify(session)}`);
      check((await page.evaluate(() => document.cookie)) === '', 'no script can read the session');
    });

    await step('the dashboard shows today, the chart, open batches and offline devices', page, async () => {
      await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
      const usd = page.getByRole('region', { name: 'Today in USD' });
      await usd.locator('[data-stat="today-volume"]').filter({ hasText: '12.50 USD' }).waitFor();
      await usd.locator('[data-stat="today-net"]').filter({ hasText: '12.50 USD' }).waitFor();
      await usd.locator('[data-stat="today-refunds"]').filter({ hasText: '0.00 USD' }).waitFor();
      await page.getByRole('img', { name: 'Volume by day, EUR' }).or(page.getByRole('img', { name: 'Volume by day, USD' })).waitFor();
      await page.getByRole('region', { name: 'Open batches' }).getByRole('link', { name: 'USD' }).waitFor();
      // The top value's label is whole, inside the chart (it was cut to "37.26 EUR").
      for (const label of await page.locator('svg.chart text.axis-max').all()) {
        const x = await label.evaluate((t) => t.getBBox().x);
        check(x >= 0, `the label ${await label.textContent()} starts at x=${x}, outside the chart`);
      }
      await shot(page, 'dashboard');
    });

    await step('the transactions list filters', page, async () => {
      await nav(page, 'Transactions').click();
      await page.locator(`a[title="${sale.id}"]`).waitFor();
      await rows(page, 3);
      await shot(page, 'transactions');
      await page.getByLabel('Status').selectOption('authorized');
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.waitForURL(/status=authorized/);
      await rows(page, 1);
      await page.locator(`a[title="${auth.id}"]`).waitFor();
      await page.getByLabel('Min amount').fill('50');
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.getByRole('alert').filter({ hasText: 'amount_min needs currency' }).waitFor();
      await shot(page, 'transactions-filter-error');
      // Found by its id; times carry their zone.
      await nav(page, 'Transactions').click();
      await page.waitForURL(/#\/transactions$/);
      await page.getByLabel('Transaction id').fill(sale.id);
      await page.getByLabel('Transaction id').press('Enter');
      await page.getByRole('heading', { name: 'Payment of 12.50 USD' }).waitFor();
      await page.getByText(sale.id, { exact: true }).waitFor();
      const created = await page.locator('dl.facts dd').nth(7).textContent();
      check(/(UTC|GMT|[A-Z]{2,5})([+-]\d{1,2}(:\d{2})?)?$/.test(created.trim()), `a time without its zone: ${created}`);
      await nav(page, 'Transactions').click();
    });

    await step('refund a payment made through the API, with confirmation', page, async () => {
      await page.goto(`${BASE}/#/transactions/${sale.id}`);
      await page.getByRole('heading', { name: 'Payment of 12.50 USD' }).waitFor();
      await shot(page, 'transaction');
      await page.getByLabel('Refund amount (USD)').fill('2.50');
      await page.getByRole('button', { name: 'Refund…' }).click();
      await page.getByRole('dialog').getByRole('heading', { name: 'Refund 2.50 USD?' }).waitFor();
      await shot(page, 'refund-confirmation');
      await confirm(page, 'Yes, do it');
      await page.locator('#tx-status').filter({ hasText: 'partially refunded' }).waitFor();
      await page.locator('#tx-refunded').filter({ hasText: '2.50 USD' }).waitFor();
      await page.getByRole('region', { name: 'History' }).getByRole('cell', { name: 'refund', exact: true }).waitFor();
      const after = (await api('GET', `/v1/transactions/${sale.id}`, { token: till, expect: 200 })).body;
      check(after.refunded === '2.50' && after.status === 'partially_refunded', JSON.stringify(after));
      // Too much: the API's own message, readable in the page.
      await page.getByLabel('Refund amount (USD)').fill('100.00');
      await page.getByRole('button', { name: 'Refund…' }).click();
      await confirm(page, 'Yes, do it');
      await page.getByRole('alert').filter({ hasText: 'refunds would exceed the captured amount' }).waitFor();
      await shot(page, 'refund-refused');
    });

    await step('capture an authorization', page, async () => {
      await page.goto(`${BASE}/#/transactions/${auth.id}`);
      await page.getByLabel('Capture amount (USD)').fill('30.00');
      await page.getByRole('button', { name: 'Capture…' }).click();
      await confirm(page, 'Yes, do it');
      await page.locator('#tx-status').filter({ hasText: 'captured' }).waitFor();
    });

    let batchId;
    await step('close the USD batch and see it reconcile', page, async () => {
      await nav(page, 'Batches').click();
      const close = page.getByRole('button', { name: 'Close the USD batch' });
      await close.waitFor();
      await shot(page, 'batches-open');
      await close.click();
      await confirm(page, 'Close batch');
      await page.getByText(/Batch #\d+ closed: net 40\.00 USD\./).waitFor();
      const closed = (await api('GET', '/v1/batches?status=closed', { token: till, expect: 200 })).body.data;
      check(closed.length === 1 && closed[0].currency === 'USD' && closed[0].net === '40.00', JSON.stringify(closed));
      batchId = closed[0].id;
      await shot(page, 'batches-closed');
      await page.getByRole('region', { name: 'Closed' }).getByRole('link', { name: `#${batchId}` }).click();
      await page.locator('#reconciliation-result').filter({ hasText: 'matches' }).waitFor();
      await shot(page, 'reconciliation');
    });

    await step('a report grouped by kind, exported as CSV', page, async () => {
      await nav(page, 'Reports').click();
      await page.getByLabel('Group by').selectOption('kind');
      await page.getByRole('button', { name: 'Show' }).click();
      await page.getByRole('region', { name: 'Totals' }).getByRole('cell', { name: 'refund', exact: true }).waitFor();
      await page.getByRole('img', { name: 'Net by kind, EUR' }).waitFor();
      await shot(page, 'report');
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export transactions (CSV)' }).click()]);
      const file = join(SHOTS, download.suggestedFilename());
      await download.saveAs(file);
      const lines = (await readFile(file, 'utf8')).trim().split('\n');
      check(lines[0] === 'id,created_at,kind,status,amount,currency,captured,refunded,ref_id,device_id,batch_id,seq', lines[0]);
      check(lines.length === 1 + 5 && lines.some((l) => l.startsWith(`${sale.id},`)) && lines.some((l) => l.includes(',refund,')), lines.join('\n'));
      check(/^transactions-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv$/.test(download.suggestedFilename()), download.suggestedFilename());
    });

    let deviceId;
    await step('register a device, group it, and read its diagnostics', page, async () => {
      await nav(page, 'Devices').click();
      await page.getByLabel('Serial number').fill('T-1001');
      await page.getByLabel('Model').fill('Countertop V400');
      await page.getByRole('button', { name: 'Register' }).click();
      await page.getByRole('link', { name: 'T-1001' }).waitFor();
      await page.getByRole('form', { name: 'Create a group' }).getByLabel('Name').fill('Front counter');
      await page.getByLabel('Configuration (JSON object)').fill('{"tip_prompt": true');
      await page.getByRole('button', { name: 'Create group' }).click();
      await page.getByRole('alert').filter({ hasText: 'not valid JSON' }).waitFor();
      await page.getByLabel('Configuration (JSON object)').fill('{"tip_prompt": true}');
      await page.getByRole('button', { name: 'Create group' }).click();
      await page.getByRole('link', { name: 'Front counter' }).waitFor();
      await shot(page, 'devices');
      deviceId = (await api('GET', '/v1/devices', { token: till, expect: 200 })).body.data.find((d) => d.serial === 'T-1001').id;
      await page.getByRole('link', { name: 'T-1001' }).click();
      await page.getByRole('heading', { name: 'Device T-1001' }).waitFor();
      await page.getByRole('form', { name: 'Group' }).getByLabel('Group').selectOption({ label: 'Front counter' });
      await page.getByRole('button', { name: 'Save group' }).click();
      await page.getByText('Device T-1001 is in Front counter.').waitFor();
      const beat = await api('POST', `/v1/devices/${deviceId}/heartbeat`, { token: till, body: { firmware_version: '1.0.0', diagnostics: { battery_pct: 87, wifi_dbm: -61, paper: 'ok' } }, expect: 200 });
      check(beat.body.config.tip_prompt === true, JSON.stringify(beat.body));
      await page.reload();
      await page.getByRole('region', { name: 'Diagnostics' }).getByText('"battery_pct": 87').waitFor();
      await shot(page, 'device');
    });

    await step('schedule a firmware rollout and watch it complete', page, async () => {
      await page.getByRole('link', { name: 'Front counter' }).first().click();
      await page.getByRole('heading', { name: 'Group Front counter' }).waitFor();
      await page.getByLabel('Firmware version').fill('1.1.0');
      await page.getByRole('button', { name: 'Schedule rollout…' }).click();
      await confirm(page, 'Schedule');
      await page.getByText('0/1 installed, 1 pending').waitFor();
      await shot(page, 'rollout-pending');
      const beat = await api('POST', `/v1/devices/${deviceId}/heartbeat`, { token: till, body: { firmware_version: '1.0.0', diagnostics: { battery_pct: 86 } }, expect: 200 });
      check(beat.body.target_firmware === '1.1.0', JSON.stringify(beat.body));
      await api('POST', `/v1/devices/${deviceId}/heartbeat`, { token: till, body: { firmware_version: '1.1.0', diagnostics: { battery_pct: 85 } }, expect: 200 });
      // No reload: the page follows the rollout by itself.
      await page.getByText('1/1 installed').waitFor();
      await page.getByRole('region', { name: 'Firmware rollouts' }).getByText('completed').waitFor();
      await page.getByRole('region', { name: 'Devices in this group' }).getByRole('cell', { name: '1.1.0', exact: true }).waitFor();
      await shot(page, 'rollout-completed');
    });

    let ticketId;
    await step('a transaction shows its device by serial, not its number', page, async () => {
      await api('POST', '/v1/transactions', { token: till, key: 'order-1050', body: { kind: 'payment', amount: '3.00', currency: 'USD', device_id: deviceId }, expect: 201 });
      await nav(page, 'Transactions').click();
      await page.getByRole('region', { name: 'Transactions' }).getByRole('link', { name: 'T-1001', exact: true }).waitFor();
    });

    await step('the transactions list shows a payment made meanwhile, without a reload (event stream)', page, async () => {
      await nav(page, 'Transactions').click();
      await page.getByRole('region', { name: 'Transactions' }).waitFor();
      await page.waitForFunction(() => !document.getElementById('main').hasAttribute('aria-busy'));
      await api('POST', '/v1/transactions', { token: till, key: 'order-1060', body: { kind: 'payment', amount: '6.60', currency: 'USD', description: 'Live croissant' }, expect: 201 });
      await page.getByRole('region', { name: 'Transactions' }).getByText('Live croissant').waitFor();
    });

    await step('webhooks: an endpoint added with its secret shown once, rotated, disabled', page, async () => {
      await nav(page, 'Webhooks').click();
      await page.getByLabel('URL').fill('https://hooks.example.invalid/cafe');
      await page.getByRole('button', { name: 'Add endpoint' }).click();
      const secret = page.getByLabel('Signing secret', { exact: true });
      await secret.waitFor();
      check((await secret.inputValue()).startsWith('whsec_'), 'the secret is shown once');
      await shot(page, 'webhooks');
      await page.getByRole('link', { name: 'https://hooks.example.invalid/cafe' }).click();
      await page.getByRole('heading', { name: 'Deliveries' }).waitFor();
      await page.getByRole('button', { name: 'Rotate secret' }).click();
      await confirm(page, 'Rotate');
      check((await page.getByLabel('Signing secret', { exact: true }).inputValue()).startsWith('whsec_'), 'the new secret is shown');
      await page.getByRole('button', { name: 'Disable' }).click();
      await confirm(page, 'Disable');
      await page.getByRole('region', { name: 'Endpoint' }).getByText('disabled').waitFor();
      await shot(page, 'webhook');
      const endpoints = (await api('GET', '/v1/webhook-endpoints', { token: managerToken, expect: 200 })).body.data;
      check(endpoints.length === 1 && !endpoints[0].active && !('secret' in endpoints[0]), JSON.stringify(endpoints));
    });

    await step('open a ticket, comment, start work and add a note', page, async () => {
      await nav(page, 'Support').click();
      await page.getByLabel('Subject').fill('T-1001 drops off the Wi-Fi');
      await page.getByLabel('What happened').fill('Since Monday the terminal loses the network about once an hour.');
      await page.getByLabel('Priority').selectOption('high');
      await page.getByRole('button', { name: 'Open ticket' }).click();
      await page.getByRole('heading', { name: /T-1001 drops off the Wi-Fi/ }).waitFor();
      ticketId = Number(page.url().split('/').pop());
      await page.getByRole('textbox', { name: 'Comment' }).fill('Router firmware updated; watching.');
      await page.getByRole('button', { name: 'Add comment' }).click();
      await page.getByText('Router firmware updated; watching.').waitFor();
      await page.getByRole('button', { name: 'Start work' }).click();
      await page.locator('#ticket-status').filter({ hasText: 'in progress' }).waitFor();
      await page.getByLabel('Add a note').fill('Called the cafe: the router sits behind the fridge.');
      await page.getByRole('button', { name: 'Add note' }).click();
      await page.getByRole('region', { name: 'Notes' }).getByText('the router sits behind the fridge').waitFor();
      const notes = (await api('GET', `/v1/notes?resource_type=ticket&resource_id=${ticketId}`, { token: till, expect: 200 })).body.data;
      check(notes.length === 1 && notes[0].author === 'manager@cafe.test', JSON.stringify(notes));
      const ticket = (await api('GET', `/v1/tickets/${ticketId}`, { token: till, expect: 200 })).body;
      check(ticket.status === 'in_progress' && ticket.priority === 'high' && ticket.comments.length === 1, JSON.stringify(ticket));
      // Assigned from the client's users, by email; shown by email, not by number.
      const assignForm = page.getByRole('form', { name: 'Assign the ticket' });
      const offered = await assignForm.getByLabel('Assignee').locator('option').allTextContents();
      check(JSON.stringify(offered) === JSON.stringify(['Nobody', 'manager@cafe.test (you)', 'viewer@cafe.test']), JSON.stringify(offered));
      await assignForm.getByLabel('Assignee').selectOption({ label: 'viewer@cafe.test' });
      await assignForm.getByRole('button', { name: 'Assign' }).click();
      await page.getByText('Assigned to viewer@cafe.test.').waitFor();
      await page.locator('#ticket-assignee').filter({ hasText: 'viewer@cafe.test' }).waitFor();
      const assigned = (await api('GET', `/v1/tickets/${ticketId}`, { token: till, expect: 200 })).body;
      check(assigned.assignee && assigned.assignee.email === 'viewer@cafe.test' && assigned.assignee_id === assigned.assignee.id, JSON.stringify(assigned));
      await shot(page, 'ticket');
      await nav(page, 'Support').click();
      await page.getByRole('link', { name: /T-1001 drops off the Wi-Fi/ }).waitFor();
      check((await page.getByRole('region', { name: 'Tickets' }).locator('tbody tr').first().textContent()).includes('viewer@cafe.test'), 'the list shows the assignee by email');
      await shot(page, 'tickets');
    });

    await step('the page itself cannot change anything without the CSRF token', page, async () => {
      const status = await page.evaluate(async () => {
        const r = await fetch('/v1/tickets', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ subject: 'x', body: 'y' }) });
        return [r.status, (await r.json()).error.code];
      });
      check(status[0] === 403 && status[1] === 'csrf_failed', JSON.stringify(status));
    });

    await step('administration: an API key shown once, then revoked', page, async () => {
      await nav(page, 'Administration').click();
      await page.getByRole('region', { name: 'Applications of Corner Cafe' }).getByRole('cell', { name: 'till', exact: true }).waitFor();
      await page.getByLabel('New application name').fill('web shop');
      await page.getByRole('button', { name: 'Create application and key' }).click();
      const key = (await page.locator('#new-api-key').textContent()).trim();
      check(/^sk_[0-9a-f]{64}$/.test(key), key);
      await api('GET', '/v1/balance', { token: key, expect: 200 });
      await shot(page, 'admin-key-shown-once');
      await page.getByRole('button', { name: 'I have stored it' }).click();
      check((await page.locator('#new-api-key').count()) === 0, 'the key is not shown again');
      await page.getByRole('button', { name: 'Revoke web shop' }).click();
      await confirm(page, 'Revoke key');
      await page.getByText('web shop revoked.').waitFor();
      await api('GET', '/v1/balance', { token: key, expect: 401 });
      await page.getByRole('form', { name: 'Role of viewer@cafe.test' }).getByRole('combobox').selectOption('operator');
      await page.getByRole('form', { name: 'Role of viewer@cafe.test' }).getByRole('button', { name: 'Change' }).click();
      await page.getByText('viewer@cafe.test is now Operator.').waitFor();
      await page.getByRole('form', { name: 'Role of viewer@cafe.test' }).getByRole('combobox').selectOption('viewer');
      await page.getByRole('form', { name: 'Role of viewer@cafe.test' }).getByRole('button', { name: 'Change' }).click();
      await page.getByText('viewer@cafe.test is now Viewer.').waitFor();

      // The client's settings.
      const settings = page.getByRole('region', { name: 'Settings of Corner Cafe' });
      // A time zone by name, offered in the list (any other name may be typed).
      await settings.getByLabel('Time zone').waitFor();
      check((await page.locator('#time-zone-names option[value="Europe/Paris"]').count()) === 1, 'common zones are offered');
      await settings.getByLabel('Time zone').fill('Europe/Pariss');
      await settings.getByRole('button', { name: 'Save settings' }).click();
      await page.getByText(/IANA time zone name/).waitFor();
      await settings.getByLabel('Time zone').fill('Europe/Paris');
      await settings.getByLabel('Allowed currencies').fill('usd, EUR');
      await settings.getByRole('button', { name: 'Save settings' }).click();
      await page.getByText('Settings of Corner Cafe saved.').waitFor();
      const shown = (await api('GET', `/v1/clients/${client.id}`, { token: admin, expect: 200 })).body;
      check(shown.time_zone === 'Europe/Paris' && JSON.stringify(shown.allowed_currencies) === '["USD","EUR"]' && shown.settlement_cutover === null && shown.mfa_required === false, JSON.stringify(shown));

      // A user's lifecycle: deactivated (refused at once), then reactivated.
      await page.getByRole('button', { name: 'Deactivate viewer@cafe.test' }).click();
      await confirm(page, 'Deactivate');
      await page.getByText('viewer@cafe.test deactivated.').waitFor();
      await api('POST', '/v1/auth/login', { body: { email: 'viewer@cafe.test', password: PASSWORD }, expect: 401 });
      await shot(page, 'admin-user-deactivated');
      await page.getByRole('button', { name: 'Reactivate viewer@cafe.test' }).click();
      await confirm(page, 'Reactivate');
      await page.getByText('viewer@cafe.test reactivated.').waitFor();
      await api('POST', '/v1/auth/login', { body: { email: 'viewer@cafe.test', password: PASSWORD }, expect: 200 });
      check((await page.getByRole('button', { name: /Deactivate manager@cafe\.test/ }).count()) === 0, 'nobody deactivates themselves');
      await shot(page, 'admin');
    });

    await step('administration: a user\'s sessions listed and ended one by one, a temporary password set', page, async () => {
      const user = (await api('POST', '/v1/users', { token: admin, body: { email: 'access@cafe.test', password: PASSWORD, role: 'operator', client_id: client.id }, expect: 201 })).body;
      const signInApi = async (password) => (await api('POST', '/v1/auth/login', { body: { email: 'access@cafe.test', password }, expect: 200 })).body.token;
      const sessionIds = async () => (await api('GET', `/v1/users/${user.id}/sessions`, { token: admin, expect: 200 })).body.data.map((s) => s.id);
      const kept = await signInApi(PASSWORD);
      const before = await sessionIds();
      const ended = await signInApi(PASSWORD);
      const endedId = (await sessionIds()).find((id) => !before.includes(id));
      check(endedId, 'the new session is listed');

      // The user was added behind the page's back: come to Administration afresh.
      await nav(page, 'Dashboard').click();
      await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
      await nav(page, 'Administration').click();
      await page.getByRole('link', { name: 'Sessions and password of access@cafe.test' }).click();
      const access = page.getByRole('region', { name: 'Sessions and password of access@cafe.test' });
      await access.waitFor();
      check((await access.locator('tbody tr').count()) === 2, 'both sessions are listed');
      await shot(page, 'admin-user-sessions');
      await access.getByRole('button', { name: `End session ${endedId}` }).click();
      await confirm(page, 'End session');
      await page.getByText('A session of access@cafe.test ended.').waitFor();
      await page.getByRole('region', { name: 'Sessions and password of access@cafe.test' }).waitFor();
      await page.waitForFunction(() => !document.getElementById('main').hasAttribute('aria-busy'));
      check((await page.getByRole('region', { name: 'Sessions and password of access@cafe.test' }).locator('tbody tr').count()) === 1, 'one session is left');
      await api('GET', '/v1/users/me', { token: ended, expect: 401 });
      await api('GET', '/v1/users/me', { token: kept, expect: 200 });

      // A weak one is refused in the form; then a temporary password ends the rest.
      const form = page.getByRole('form', { name: 'Set a temporary password' });
      await form.getByLabel('Temporary password').fill('password1234');
      await form.getByRole('button', { name: 'Set temporary password' }).click();
      await confirm(page, 'Set password');
      // The refusal itself: the field's help mentions common passwords too, so /common/
      // alone passed before the answer came (and two matches break strict mode after).
      await form.getByText(/among the most common ones/i).waitFor();
      await form.getByLabel('Temporary password').fill('temporary access pass 7');
      await form.getByRole('button', { name: 'Set temporary password' }).click();
      await confirm(page, 'Set password');
      await page.getByText('Temporary password of access@cafe.test set; they must change it at their next sign-in.').waitFor();
      await api('GET', '/v1/users/me', { token: kept, expect: 401 });
      await api('POST', '/v1/auth/login', { body: { email: 'access@cafe.test', password: PASSWORD }, expect: 401 });
      const temp = await signInApi('temporary access pass 7');
      const refused = (await api('GET', '/v1/transactions', { token: temp, expect: 403 })).body;
      check(refused.error.code === 'password_change_required', JSON.stringify(refused));
      for (const action of ['user.session_revoke', 'user.password_reset']) {
        const audit = (await api('GET', `/v1/audit?action=${action}`, { token: admin, expect: 200 })).body.data;
        check(audit.some((e) => e.resource_id === String(user.id) && e.outcome === 'ok'), `${action} audited: ${JSON.stringify(audit)}`);
      }
      await shot(page, 'admin-temporary-password');
    });

    await step('the activity page: the refused refund, filtered and exported as CSV', page, async () => {
      await nav(page, 'Activity').click();
      await page.getByRole('heading', { name: 'Activity' }).waitFor();
      await page.getByLabel('Action').selectOption('transaction.');
      await page.getByLabel('Outcome').selectOption('refused');
      await page.getByRole('button', { name: 'Show' }).click();
      await rows(page, 1);
      const row = page.getByRole('region', { name: 'Audit trail' }).locator('tbody tr');
      check((await row.textContent()).includes('transaction.refund') && (await row.textContent()).includes('refund_exceeds_captured'), await row.textContent());
      await shot(page, 'activity');
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export (CSV)' }).click()]);
      const file = join(SHOTS, 'activity.csv');
      await download.saveAs(file);
      const lines = (await readFile(file, 'utf8')).trim().split('\n');
      check(lines[0] === 'id,at,actor_type,actor_id,actor,client_id,action,resource_type,resource_id,outcome,detail', lines[0]);
      check(lines.length === 2 && lines[1].includes(',transaction.refund,') && lines[1].includes(',refused,'), lines.join('\n'));
    });

    await step('turn on two-factor sign-in with the QR code, sign out, sign in with a code', page, async () => {
      await page.getByRole('link', { name: /Client admin/ }).click();
      await page.getByRole('heading', { name: 'Account' }).waitFor();
      await page.getByRole('button', { name: 'Set up two-factor sign-in' }).click();
      const qr = page.getByRole('img', { name: 'QR code of the authenticator set-up link' });
      await qr.waitFor();
      check(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), 'the QR code renders under the CSP');
      const secret = (await page.locator('#mfa-secret').textContent()).trim();
      check((await page.locator('#recovery-codes li').count()) === 10, 'ten recovery codes');
      await shot(page, 'mfa-enrolment');
      const now = Date.now() / 1000;
      await page.getByLabel('Code from the app').fill(totp(secret, now));
      await page.getByRole('button', { name: 'Turn on' }).click();
      await page.getByText('Two-factor sign-in is on. Keep your recovery codes').waitFor();
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByText('You are signed out.').waitFor();
      check(!(await page.context().cookies()).some((c) => c.name === 'portal_session'), 'the cookie is cleared');
      await page.goto(`${BASE}/#/transactions`);
      await page.reload();
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      await page.keyboard.type('manager@cafe.test');
      await page.keyboard.press('Tab');
      await page.keyboard.type(PASSWORD);
      await page.keyboard.press('Enter');
      await page.getByLabel('One-time code').waitFor();
      await shot(page, 'sign-in-one-time-code');
      await page.getByLabel('One-time code').fill(totp(secret, now + 30));
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Transactions' }).waitFor();
    });

    await step('the API reference renders the service\'s own document, filtered as one types', null, async () => {
      const reader = await newPage(browser);
      await signIn(reader, 'viewer@cafe.test', PASSWORD);
      await nav(reader, 'API').click();
      await reader.getByRole('heading', { name: 'API reference' }).waitFor();
      const doc = (await api('GET', '/openapi.json')).body;
      const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).filter((k) => ['get', 'post', 'put', 'patch', 'delete'].includes(k)).length, 0);
      check((await reader.locator('.api-op').count()) === operations, `every operation of the document is shown (${operations})`);
      check((await reader.locator('.api-schema').count()) === Object.keys(doc.components.schemas).length, 'every schema is shown');
      await reader.getByLabel('Filter operations').fill('refunds');
      const refund = reader.locator('.api-op[data-method="post"][data-path="/v1/transactions/{id}/refunds"]');
      check((await refund.count()) === 1 && !(await refund.evaluate((card) => card.hidden)), 'the filter keeps the refund operation');
      const text = await refund.textContent();
      check(text.includes('refund_exceeds_captured') && text.includes('AmountBody') && text.includes('Transaction'), `its body, answer and error codes: ${text}`);
      check((await reader.locator('.api-op[hidden]').count()) > 0, 'the others are hidden');
      await shot(reader, 'api-reference');
      await reader.close();
    });

    await step('a viewer sees, and is offered nothing it may not do', null, async () => {
      const viewer = await newPage(browser);
      await signIn(viewer, 'viewer@cafe.test', PASSWORD);
      check((await nav(viewer, 'Administration').count()) === 0, 'no administration');
      check((await nav(viewer, 'Activity').count()) === 0, 'no activity');
      await viewer.goto(`${BASE}/#/transactions/${sale.id}`);
      await viewer.getByRole('region', { name: 'History' }).waitFor();
      check((await viewer.getByRole('button', { name: 'Refund…' }).count()) === 0, 'no refund');
      check((await viewer.getByLabel('Add a note').count()) === 0, 'no note');
      await shot(viewer, 'viewer-transaction');
      await viewer.goto(`${BASE}/#/batches`);
      await viewer.getByRole('region', { name: 'Open' }).waitFor();
      check((await viewer.getByRole('button', { name: /Close the/ }).count()) === 0, 'no batch close');
      await viewer.goto(`${BASE}/#/devices`);
      await viewer.getByRole('link', { name: 'T-1001' }).waitFor();
      check((await viewer.getByRole('button', { name: 'Register' }).count()) === 0, 'no registration');
      await viewer.goto(`${BASE}/#/tickets`);
      await viewer.getByRole('link', { name: /T-1001 drops/ }).waitFor();
      check((await viewer.getByRole('button', { name: 'Open ticket' }).count()) === 0, 'no new ticket');
      await viewer.goto(`${BASE}/#/admin`);
      await viewer.getByText('Your role does not give access to this page.').waitFor();
      await viewer.context().close();
    });

    await step('the platform admin manages clients', null, async () => {
      const root = await newPage(browser);
      await signIn(root, ADMIN_EMAIL, ADMIN_PASSWORD);
      await root.getByRole('region', { name: 'Clients' }).getByText('Corner Cafe (selected)').waitFor();
      // The cross-client view: each client's users and volume.
      const row = root.getByRole('region', { name: 'Clients' }).locator('tbody tr').filter({ hasText: 'Corner Cafe' });
      // The manager, the viewer and access@cafe.test (the temporary password step).
      check((await row.locator('td').nth(1).textContent()).trim() === '3', await row.textContent());
      check((await row.locator('td').nth(2).textContent()).includes('USD'), await row.textContent());
      await root.getByRole('link', { name: 'Activity' }).waitFor();
      check((await nav(root, 'Dashboard').count()) === 0, 'no client pages for the platform admin');
      await root.getByRole('region', { name: 'Users of Corner Cafe' }).getByText('manager@cafe.test').waitFor();
      await shot(root, 'platform-admin');
      await root.context().close();
    });

    await step('a chart keeps its top value label whole (4345.26 EUR)', page, async () => {
      await api('POST', '/v1/transactions', { token: till, key: 'order-1099', body: { kind: 'payment', amount: '4337.26', currency: 'EUR' }, expect: 201 });
      await page.goto(`${BASE}/#/`);
      const chart = page.getByRole('img', { name: 'Volume by day, EUR' });
      await chart.waitFor();
      const label = chart.locator('text.axis-max');
      const text = (await label.textContent()).trim();
      check(text === '4345.26 EUR', text);
      const x = await label.evaluate((t) => t.getBBox().x);
      check(x >= 0, `the label "${text}" starts at x=${x}, outside the chart`);
      await shot(page, 'dashboard-large-values');
    });

    await step('a temporary password set by an administrator must be changed first', null, async () => {
      const temp = (await api('POST', '/v1/users', { token: admin, body: { email: 'temp@cafe.test', password: PASSWORD, role: 'viewer', client_id: client.id }, expect: 201 })).body;
      await api('POST', `/v1/users/${temp.id}/password`, { token: admin, body: { password: 'temporary password 42' }, expect: 200 });
      const p = await newPage(browser);
      await signIn(p, 'temp@cafe.test', 'temporary password 42');
      await p.locator('#restriction').filter({ hasText: 'temporary password' }).waitFor();
      await shot(p, 'temporary-password');
      await p.goto(`${BASE}/#/transactions`);
      await p.getByRole('heading', { name: 'Account' }).waitFor();
      await p.locator('#restriction').waitFor();
      await p.getByLabel('Current password').fill('temporary password 42');
      await p.getByLabel('New password').fill('a password of my own');
      await p.getByRole('button', { name: 'Change password' }).click();
      await p.getByRole('heading', { name: 'Dashboard' }).waitFor();
      await api('POST', '/v1/auth/login', { body: { email: 'temp@cafe.test', password: 'a password of my own' }, expect: 200 });
      await p.context().close();
    });

    await step('a phone-sized screen', null, async () => {
      const phone = await newPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      await signIn(phone, 'viewer@cafe.test', PASSWORD);
      await phone.getByRole('heading', { name: 'Dashboard' }).waitFor();
      await phone.locator('[data-stat="today-volume"]').first().waitFor();
      check(!(await nav(phone, 'Reports').isVisible()), 'the navigation folds away');
      await shot(phone, 'phone-dashboard');
      await phone.getByRole('button', { name: 'Menu' }).click();
      await nav(phone, 'Reports').waitFor();
      await shot(phone, 'phone-menu');
      const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 1, `no sideways scrolling (${overflow}px)`);
      await phone.context().close();
    });

    check(problems.length === 0, `problems in the browser:\n${problems.join('\n')}`);
  } finally {
    await browser.close();
  }
  console.log(`web e2e: all steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s; ${shotCount} screenshots in ${SHOTS}`);
}

main().catch((error) => {
  console.error(`web e2e FAILED: ${error.stack || error}`);
  if (problems.length) console.error(`browser problems:\n${problems.join('\n')}`);
  process.exit(1);
});
