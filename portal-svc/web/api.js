// The one way the pages talk to the service: same-origin fetches of the public HTTP
// API, signed in by the HttpOnly session cookie (the page never sees the session
// token), with the session's CSRF token on every request that changes something, and
// every failure turned into an ApiError carrying the API's own error body.

/** An error answered by the API (`{"error": {type, code, message, param}}`), or a
 *  network failure (status 0). */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || (status ? `The service answered ${status}.` : 'The service could not be reached.'));
    this.status = status;
    this.type = error.type || (status ? 'api_error' : 'network_error');
    this.code = error.code || (status ? `http_${status}` : 'network_error');
    this.param = error.param || null;
  }
}

let csrfToken = null;
let onSignedOut = () => {};

/** Called when a request finds the session gone (401): the app shows the sign-in. */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export function setCsrf(token) {
  csrfToken = token;
}

const CHANGES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Sends a request to the API; resolves with the parsed JSON body (or null). */
export async function request(method, path, body, options = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (CHANGES.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  if (options.idempotencyKey) headers['Idempotency-Key'] = options.idempotencyKey;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, null);
  }
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      parsed = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, parsed);
    if (response.status === 401 && !options.signingIn) onSignedOut(error);
    throw error;
  }
  return parsed;
}

export const get = (path) => request('GET', path);
export const post = (path, body, options) => request('POST', path, body === undefined ? {} : body, options);
export const put = (path, body) => request('PUT', path, body);
export const patch = (path, body) => request('PATCH', path, body);
export const del = (path) => request('DELETE', path);

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** Signs in for a cookie session; resolves with the session, or throws ApiError
 *  (`mfa_required` asks for the one-time code). */
export async function signIn(email, password, otp) {
  const body = { email, password };
  if (otp) body.otp = otp;
  const session = await request('POST', '/v1/auth/session', body, { signingIn: true });
  csrfToken = session.csrf_token;
  return session;
}

/** The current cookie session (with the user), or null when signed out. */
export async function currentSession() {
  try {
    const session = await request('GET', '/v1/auth/session', undefined, { signingIn: true });
    csrfToken = session.csrf_token;
    return session;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return null;
    throw e;
  }
}

export async function signOut() {
  try {
    await request('POST', '/v1/auth/logout', {}, { signingIn: true });
  } finally {
    csrfToken = null;
  }
}

/** A fresh key for a money request started from a page, so that sending it twice
 *  (a double click, a retry after a lost answer) moves money once. */
export function idempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** Follows the client's new events (`GET /v1/events/stream`, server-sent events over
 *  the session cookie) and calls `onEvent(event)` for each of `types`. Returns a
 *  function that stops following. The browser reconnects by itself when the stream
 *  ends; `lagged` (events were missed) is passed on as `{type: 'lagged'}`. */
export function followEvents(types, onEvent) {
  if (typeof EventSource === 'undefined') return () => {};
  const source = new EventSource('/v1/events/stream');
  const deliver = (message) => {
    let event = null;
    try {
      event = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    onEvent(event);
  };
  for (const type of types) source.addEventListener(type, deliver);
  source.addEventListener('lagged', () => onEvent({ type: 'lagged' }));
  return () => source.close();
}
