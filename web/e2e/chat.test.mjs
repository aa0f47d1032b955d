// (a) Two users sign up in two browser contexts, chat both ways, reload: history, unread badges
// and read receipts are right.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, signUp, openChatWith, shot, copyToDocs, until, cspViolations, assertNoCspViolations } from './harness.mjs';

let server, browser;
const msg = (page, text) => page.locator('[data-testid="message"]', { hasText: text }).first();
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});
// The app must do nothing its own Content-Security-Policy forbids.
afterEach(assertNoCspViolations);

test('sign up, chat both ways, reload, unread badges and read receipts', async () => {
  const a = await newPage(browser, server.base);
  const b = await newPage(browser, server.base);
  await shot(a.page, 'auth-signin');

  // Per-field errors from the server.
  await a.page.goto('/');
  await a.page.getByTestId('auth-toggle').click();
  await a.page.getByTestId('auth-username').fill('_x');
  await a.page.getByTestId('auth-password').fill('short');
  await a.page.getByTestId('auth-submit').click();
  await a.page.getByTestId('error-username').waitFor();
  await a.page.getByTestId('error-password').waitFor();
  await shot(a.page, 'auth-errors');

  await signUp(a.page, 'alice', 'Alice Liddell');
  await signUp(b.page, 'bob', 'Bob Builder');

  // Alice starts a chat with Bob.
  await openChatWith(a.page, 'bob');
  const input = a.page.getByTestId('composer-input');
  await input.fill('Hi Bob! 👋');
  await input.press('Enter');
  await a.page.locator('[data-testid="delivery"][data-state="sent"]').first().waitFor();

  // Bob sees the conversation with an unread badge.
  const bobConv = b.page.locator('[data-testid="conversation"][data-peer="alice"]');
  await bobConv.waitFor();
  await until(async () => (await bobConv.getByTestId('unread-badge').textContent()) === '1', { what: 'bob unread 1' });
  await until(async () => (await b.page.title()) === '(1) pychat', { what: 'title unread' });
  await shot(b.page, 'conversation-list-unread');

  // Bob opens it: marks read; Alice sees "read".
  await bobConv.click();
  await msg(b.page, 'Hi Bob! 👋').waitFor();
  await a.page.locator('[data-testid="delivery"][data-state="read"]').first().waitFor();
  assert.equal(await bobConv.getByTestId('unread-badge').count(), 0);

  // Typing indicator.
  await b.page.getByTestId('composer-input').pressSequentially('Hey', { delay: 30 });
  await a.page.getByTestId('typing-indicator').waitFor();
  await b.page.getByTestId('composer-input').press('Enter');
  await msg(a.page, 'Hey').waitFor();
  for (let i = 1; i <= 3; i++) {
    await b.page.getByTestId('composer-input').fill(`Message number ${i} from Bob`);
    await b.page.getByTestId('composer-input').press('Enter');
  }
  await msg(a.page, 'Message number 3 from Bob').waitFor();
  await a.page.getByTestId('composer-input').fill('Great, see you at the call later.');
  await a.page.getByTestId('composer-input').press('Enter');
  await msg(b.page, 'Great, see you at the call later.').waitFor();

  // Alice navigates away; Bob writes twice more: Alice gets an unread badge of 2.
  await a.page.goto('/#/settings');
  await a.page.getByTestId('settings-display-name').waitFor();
  await b.page.getByTestId('composer-input').fill('Unread one');
  await b.page.getByTestId('composer-input').press('Enter');
  await b.page.getByTestId('composer-input').fill('Unread two');
  await b.page.getByTestId('composer-input').press('Enter');
  await b.page.locator('[data-testid="message"][data-own="true"]:not([data-pending])', { hasText: 'Unread two' }).waitFor();

  // Reload both: history and badges survive (refresh cookie keeps us signed in).
  await a.page.goto('/');
  await a.page.reload();
  await a.page.getByTestId('me-name').waitFor();
  const aConv = a.page.locator('[data-testid="conversation"][data-peer="bob"]');
  await until(async () => (await aConv.getByTestId('unread-badge').textContent().catch(() => null)) === '2', { what: 'alice unread 2 after reload' });
  assert.match(await aConv.getByTestId('preview').textContent(), /Unread two/);
  await b.page.reload();
  await b.page.getByTestId('chat-view').waitFor();
  const bobMsgs = b.page.locator('[data-testid="message"]');
  await until(async () => (await bobMsgs.count()) === 8, { what: 'bob sees 8 messages after reload' });
  assert.ok((await b.page.getByTestId('day-separator').count()) >= 1);

  await aConv.click();
  await until(async () => (await a.page.locator('[data-testid="message"]').count()) === 8, { what: 'alice history' });
  await until(async () => (await aConv.getByTestId('unread-badge').count()) === 0, { what: 'alice badge cleared' });
  // Bob's last messages now show as read.
  await b.page.locator('[data-testid="message"]', { hasText: 'Unread two' }).locator('[data-testid="delivery"][data-state="read"]').waitFor();
  const chatShot = await shot(b.page, 'chat');
  copyToDocs(chatShot, 'screenshot-chat.png');

  // Connection drop: the message queued meanwhile is delivered exactly once after the reconnect.
  const st = await b.page.evaluate(() => {
    window.__pychat.socket.drop();
    window.__pychat.chat.send('alice', 'Sent while reconnecting');
    return window.__pychat.socket.status;
  });
  assert.ok(['open', 'reconnecting'].includes(st));
  await b.page.getByTestId('reconnecting').waitFor({ state: 'attached', timeout: 3000 }).catch(() => undefined);
  await msg(a.page, 'Sent while reconnecting').waitFor();
  await b.page.locator('[data-testid="message"]:not([data-pending])', { hasText: 'Sent while reconnecting' }).waitFor();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await a.page.locator('[data-testid="message"]', { hasText: 'Sent while reconnecting' }).count(), 1);
  assert.equal(await b.page.locator('[data-testid="message"]', { hasText: 'Sent while reconnecting' }).count(), 1);
  assert.equal(await b.page.getByTestId('reconnecting').count(), 0);

  // Narrow (360 px) layout.
  await b.page.setViewportSize({ width: 360, height: 720 });
  await shot(b.page, 'chat-360');
  await b.page.getByTestId('back').click();
  await shot(b.page, 'conversation-list-360');

  await a.context.close();
  await b.context.close();
});

test('the app is served under its Content-Security-Policy, which refuses inline scripts', async () => {
  const { context, page } = await newPage(browser, server.base);
  const response = await page.goto('/');
  const headers = response.headers();
  assert.match(headers['content-security-policy'], /script-src 'self';/);
  assert.match(headers['content-security-policy'], /frame-ancestors 'none'/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  await page.getByTestId('auth-submit').waitFor();

  // An injected inline script does not run, and the listener reports it: a run without reports
  // above means the app did nothing the policy forbids.
  const ran = await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.__inlineRan = true';
    document.body.append(script);
    return window.__inlineRan === true;
  });
  assert.equal(ran, false);
  await until(() => cspViolations.some((v) => v.directive === 'script-src-elem'), { what: 'the violation report' });
  cspViolations.splice(0);
  await context.close();
});
