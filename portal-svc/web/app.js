// The portal's entry point: the session, the navigation the user's role allows, and a
// hash router (`#/transactions/tx_...`) that renders one page at a time into <main>.

import { currentSession, signOut, whenSignedOut, ApiError } from './api.js';
import { h, mount, can, isPlatformAdmin, ROLE_NAMES, clearFlash, errorBox } from './ui.js';
import { renderSignIn } from './page-signin.js';
import { renderAccount } from './page-account.js';
import { renderDashboard } from './page-dashboard.js';
import { renderTransactions, renderTransaction } from './page-transactions.js';
import { renderBatches, renderBatch } from './page-batches.js';
import { renderReports } from './page-reports.js';
import { renderDevices, renderDevice, renderGroup } from './page-devices.js';
import { renderTickets, renderTicket } from './page-tickets.js';
import { renderAdmin } from './page-admin.js';
import { renderActivity } from './page-activity.js';
import { renderApi } from './page-api.js';
import { renderWebhooks, renderWebhook } from './page-webhooks.js';

const member = (user) => can(user, 'viewer');
const manager = (user) => can(user, 'client_admin') || isPlatformAdmin(user);
const anyone = () => true;
/** Webhooks are a client's own configuration: its client admins. */
const clientAdmin = (user) => can(user, 'client_admin');

/** Pages: path pattern, who sees it, the renderer, and its navigation entry. */
const ROUTES = [
  { path: /^\/$/, who: member, render: renderDashboard, nav: 'Dashboard', href: '#/' },
  { path: /^\/transactions$/, who: member, render: renderTransactions, nav: 'Transactions', href: '#/transactions' },
  { path: /^\/transactions\/([\w-]+)$/, who: member, render: renderTransaction, section: '#/transactions' },
  { path: /^\/batches$/, who: member, render: renderBatches, nav: 'Batches', href: '#/batches' },
  { path: /^\/batches\/(\d+)$/, who: member, render: renderBatch, section: '#/batches' },
  { path: /^\/reports$/, who: member, render: renderReports, nav: 'Reports', href: '#/reports' },
  { path: /^\/devices$/, who: member, render: renderDevices, nav: 'Devices', href: '#/devices' },
  { path: /^\/devices\/(\d+)$/, who: member, render: renderDevice, section: '#/devices' },
  { path: /^\/groups\/(\d+)$/, who: member, render: renderGroup, section: '#/devices' },
  { path: /^\/tickets$/, who: member, render: renderTickets, nav: 'Support', href: '#/tickets' },
  { path: /^\/tickets\/(\d+)$/, who: member, render: renderTicket, section: '#/tickets' },
  { path: /^\/webhooks$/, who: clientAdmin, render: renderWebhooks, nav: 'Webhooks', href: '#/webhooks' },
  { path: /^\/webhooks\/(\d+)$/, who: clientAdmin, render: renderWebhook, section: '#/webhooks' },
  { path: /^\/admin$/, who: manager, render: renderAdmin, nav: 'Administration', href: '#/admin' },
  { path: /^\/activity$/, who: manager, render: renderActivity, nav: 'Activity', href: '#/activity' },
  { path: /^\/account$/, who: anyone, render: renderAccount, title: 'Account', href: '#/account' },
  { path: /^\/api$/, who: anyone, render: renderApi, nav: 'API', href: '#/api' },
];

let user = null;
/** What the session must do before anything else (`password_change`, `mfa_enrollment`). */
let restriction = null;
let leaving = [];
let renderCount = 0;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = raw.split('?');
  return { path: path || '/', query: new URLSearchParams(search) };
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function home() {
  return isPlatformAdmin(user) ? '#/admin' : '#/';
}

function renderShell() {
  const topbar = document.getElementById('topbar');
  const nav = document.getElementById('nav');
  topbar.hidden = false;
  mount(nav, ROUTES.filter((r) => r.nav && r.who(user)).map((r) => h('a', { href: r.href }, r.nav)));
  const out = h('button', { type: 'button', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', async () => {
    try {
      await signOut();
    } catch (error) {
      // The session is gone either way; the sign-in page says so.
    }
    user = null;
    showSignIn('You are signed out.');
  });
  mount(document.getElementById('whoami'),
    h('a', { href: '#/account', id: 'account-link', title: 'Your account and two-factor sign-in' },
      h('span', { class: 'hide-narrow' }, `${user.email} · `), ROLE_NAMES[user.role] || user.role), out);
}

function markCurrent(href) {
  for (const a of document.querySelectorAll('#nav a, #account-link')) {
    if (a.getAttribute('href') === href) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  if (!user) return;
  for (const stop of leaving) stop();
  leaving = [];
  const nav = document.getElementById('nav');
  nav.classList.remove('open');
  document.getElementById('menu-toggle').setAttribute('aria-expanded', 'false');
  const { path, query } = parseHash();
  const main = document.getElementById('main');
  const match = ROUTES.map((r) => [r, path.match(r.path)]).find(([, m]) => m);
  if (!match) {
    mount(main, h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. ', h('a', { href: home() }, 'Go home.')));
    return;
  }
  const [page, m] = match;
  // A restricted session may only use its account page until it has done what it must.
  if (restriction && path !== '/account') return navigate('#/account');
  if (!page.who(user)) {
    if (path === '/') return navigate(home());
    mount(main, h('h1', {}, 'Not available'), h('p', {}, 'Your role does not give access to this page.'));
    return;
  }
  markCurrent(page.href || page.section);
  document.title = `${page.nav || page.title || page.section.replace('#/', '').replace(/^./, (c) => c.toUpperCase())} · Payments portal`;
  const count = ++renderCount;
  main.setAttribute('aria-busy', 'true');
  mount(main, h('p', { class: 'loading' }, 'Loading…'));
  const view = h('div', {});
  const ctx = {
    user,
    params: m.slice(1).map(decodeURIComponent),
    query,
    navigate,
    restriction,
    // After the account page lifted the restriction: read the session again, and go
    // home when `goHome` (not after an MFA enrolment, whose recovery codes are on screen).
    lifted: async (goHome) => {
      const session = await currentSession();
      restriction = session ? session.restriction || null : null;
      if (goHome) navigate(home());
    },
    refresh: () => route(),
    onLeave: (stop) => leaving.push(stop),
    current: () => count === renderCount,
  };
  try {
    await page.render(view, ctx);
    if (count !== renderCount) return;
    mount(main, view);
  } catch (error) {
    if (count !== renderCount) return;
    if (error instanceof ApiError && error.status === 401) return;
    mount(main, h('h1', {}, 'Something went wrong'), errorBox(error));
  } finally {
    if (count === renderCount) main.removeAttribute('aria-busy');
  }
  if (!document.activeElement || document.activeElement === document.body) main.focus({ preventScroll: true });
}

function showSignIn(message) {
  for (const stop of leaving) stop();
  leaving = [];
  document.getElementById('topbar').hidden = true;
  document.title = 'Sign in · Payments portal';
  clearFlash();
  renderSignIn(document.getElementById('main'), message, async (session) => {
    user = session.user;
    restriction = session.restriction || null;
    renderShell();
    clearFlash();
    const target = !location.hash || location.hash === '#' ? home() : location.hash;
    navigate(target);
  });
}

async function start() {
  document.getElementById('menu-toggle').addEventListener('click', (event) => {
    const nav = document.getElementById('nav');
    const open = nav.classList.toggle('open');
    event.currentTarget.setAttribute('aria-expanded', String(open));
  });
  whenSignedOut(() => {
    if (!user) return;
    user = null;
    showSignIn('Your session has ended. Sign in again to continue.');
  });
  window.addEventListener('hashchange', () => {
    clearFlash();
    route();
  });
  let session;
  try {
    session = await currentSession();
  } catch (error) {
    mount(document.getElementById('main'), h('h1', {}, 'The portal is unreachable'), errorBox(error));
    return;
  }
  if (!session) {
    showSignIn();
    return;
  }
  user = session.user;
  restriction = session.restriction || null;
  renderShell();
  if (!location.hash) location.hash = home();
  else await route();
}

start();
