// (c) A session revoked elsewhere ends in the browser at once: a password change made from
// another device closes this tab's socket (4001) and the app shows the sign-in form.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, signUp, until } from './harness.mjs';

let server, browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a password change on another device signs this browser out', async () => {
  const { page } = await newPage(browser, server.base);
  await signUp(page, 'sam', 'Sam');
  await until(async () => (await page.evaluate(() => window.__pychat?.socket?.status)) === 'open', {
    what: 'socket open',
  });

  // Another device: signs in over the API and changes the password.
  const json = { 'Content-Type': 'application/json' };
  const login = await fetch(`${server.base}/api/auth/login`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({ username: 'sam', password: 'correct horse battery' }),
  });
  assert.equal(login.status, 200);
  const { access_token } = await login.json();
  const changed = await fetch(`${server.base}/api/me/password`, {
    method: 'PUT',
    headers: { ...json, Authorization: `Bearer ${access_token}` },
    body: JSON.stringify({ current_password: 'correct horse battery', new_password: 'a brand new secret' }),
  });
  assert.equal(changed.status, 204);

  const started = Date.now();
  await page.getByTestId('auth-submit').waitFor({ timeout: 5_000 });
  assert.equal(await page.getByTestId('me-name').count(), 0);
  console.log(`signed out ${Date.now() - started} ms after the password change`);
});
