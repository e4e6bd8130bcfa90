// Sign-in: email and password, then the one-time code when the account has MFA on.

import { signIn, currentSession, ApiError } from './api.js';
import { h, mount, field, showFormError, clearFormError } from './ui.js';

/** Shows the sign-in form in `main`; calls `done(session)` once signed in. */
export function renderSignIn(main, message, done) {
  const email = h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true, autofocus: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const otp = h('input', {
    name: 'otp', type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 12, spellcheck: 'false',
  });
  const otpField = h('div', { hidden: true },
    field('One-time code', otp, 'The 6-digit code of your authenticator app, or one of your recovery codes.'));
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'stack', 'aria-labelledby': 'signin-title', novalidate: true },
    field('Email', email), field('Password', password), otpField, h('div', { class: 'actions' }, submit));
  mount(main, h('div', { class: 'signin card' },
    h('h1', { id: 'signin-title' }, h('img', { src: '/assets/favicon.svg', alt: '', width: 28, height: 28 }), 'Sign in'),
    message ? h('p', { class: 'muted', role: 'status' }, message) : null,
    form));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormError(form);
    submit.disabled = true;
    try {
      await signIn(email.value.trim(), password.value, otp.value.trim() || undefined);
      const session = await currentSession();
      if (!session) throw new ApiError(401, { error: { message: 'The session was not kept; are cookies allowed?', code: 'no_session' } });
      done(session);
    } catch (error) {
      if (error instanceof ApiError && error.code === 'mfa_required') {
        otpField.hidden = false;
        clearFormError(form);
        const note = h('p', { class: 'form-error muted', role: 'status' }, 'Enter the one-time code to finish signing in.');
        form.prepend(note);
        otp.focus();
      } else {
        if (error instanceof ApiError && error.code === 'invalid_otp') otp.value = '';
        showFormError(form, error);
      }
    } finally {
      submit.disabled = false;
    }
  });
  email.focus();
}
