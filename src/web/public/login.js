/* global document, location, URLSearchParams */
import { api, errorText, showMessage } from './common.js';

function nextPath() {
  const next = new URLSearchParams(location.search).get('next') || '/';
  // Local paths only: never follow ?next=//elsewhere.example.
  return /^\/(?![/\\])/.test(next) ? next : '/';
}

document.getElementById('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const message = document.getElementById('message');
  const button = document.getElementById('login');
  showMessage(message, 'error', '');
  button.disabled = true;
  try {
    await api('POST', '/api/login', {
      username: document.getElementById('username').value,
      password: document.getElementById('password').value,
    });
    location.assign(nextPath());
  } catch (err) {
    showMessage(message, 'error', err.status === 401 ? 'Wrong user name or password.' : errorText(err));
    button.disabled = false;
  }
});
