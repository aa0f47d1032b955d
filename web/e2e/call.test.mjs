// (b) The original room flow between two users, (c) a three-person mesh, (d) a direct call
// answered on the callee's second tab.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, signUp, openChatWith, shot, copyToDocs, until, assertNoCspViolations, allConnected, audioFlows, peerStates as states } from './harness.mjs';

let server, browser;
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

const status = (page) => page.getByTestId('call-status').textContent();

async function createRoom(page, name) {
  await page.getByTestId('nav-rooms').click();
  await page.getByTestId('room-name').fill(name);
  await page.getByTestId('room-create').click();
}
async function joinRoom(page, name) {
  await page.getByTestId('nav-rooms').click();
  await page.getByTestId('room-name').fill(name);
  await page.getByTestId('room-join').click();
}

test('(b) room flow: create, join, start, connected with audio both ways, mute, end', async () => {
  const a = await newPage(browser, server.base);
  const b = await newPage(browser, server.base);
  await signUp(a.page, 'carol');
  await signUp(b.page, 'dave');

  // Joining a room that does not exist is reported.
  await joinRoom(b.page, 'Standup');
  await until(async () => /No open room/.test((await b.page.getByTestId('room-error').textContent()) ?? ''), { what: 'room_not_found' });
  // A reserved name.
  await a.page.getByTestId('nav-rooms').click();
  await a.page.getByTestId('room-name').fill('_secret');
  await a.page.getByTestId('room-create').click();
  await until(async () => /cannot start with/.test((await a.page.getByTestId('room-error').textContent()) ?? ''), { what: 'room_name_reserved' });

  await createRoom(a.page, 'Standup');
  await until(async () => (await status(a.page)) === 'room created', { what: 'room created' });
  // The same name again (from dave) is room_exists.
  await b.page.getByTestId('room-create').click();
  await until(async () => /already open/.test((await b.page.getByTestId('room-error').textContent()) ?? ''), { what: 'room_exists' });
  await b.page.getByTestId('room-join').click();
  await until(async () => (await status(b.page)) === 'joined', { what: 'joined' });
  await until(async () => (await a.page.getByTestId('member').count()) === 2, { what: 'members list' });

  await a.page.getByTestId('session-start').click();
  await allConnected(a.page, 1);
  await allConnected(b.page, 1);
  await until(async () => (await status(a.page)) === 'connected' && (await status(b.page)) === 'connected', { what: 'status connected' });
  const sa = await audioFlows(a.page);
  const sb = await audioFlows(b.page);
  console.log('inbound bytes: carol', JSON.stringify(sa), 'dave', JSON.stringify(sb));

  await a.page.getByTestId('toggle-mute').click();
  await b.page.locator('[data-testid="remote-tile"][data-user="carol"] [data-testid="peer-muted"]').waitFor();
  await b.page.getByTestId('call-timer').waitFor();
  const callShot = await shot(b.page, 'call');
  copyToDocs(callShot, 'screenshot-call.png');

  await a.page.getByTestId('call-end').click();
  await until(async () => (await status(a.page)) === 'idle' && (await status(b.page)) === 'idle', { what: 'both idle' });
  assert.deepEqual(await states(a.page), {});
  assert.deepEqual(await states(b.page), {});
  await a.context.close();
  await b.context.close();
});

test('(c) three-person mesh: every pair connected', async () => {
  const users = ['erin', 'frank', 'grace'];
  const pages = [];
  for (const u of users) {
    const p = await newPage(browser, server.base);
    await signUp(p.page, u);
    pages.push(p);
  }
  await createRoom(pages[0].page, 'Mesh');
  await until(async () => (await status(pages[0].page)) === 'room created', { what: 'created' });
  await joinRoom(pages[1].page, 'mesh');
  await joinRoom(pages[2].page, 'MESH');
  await until(async () => (await pages[0].page.getByTestId('member').count()) === 3, { what: '3 members' });
  await pages[0].page.getByTestId('session-start').click();
  for (const p of pages) await allConnected(p.page, 2);
  for (const p of pages) await audioFlows(p.page);
  await shot(pages[2].page, 'call-mesh');
  // Frank leaves: the others keep their connection to each other.
  await pages[1].page.getByTestId('call-leave').click();
  await until(async () => Object.keys(await states(pages[0].page)).length === 1, { what: 'frank gone' });
  await allConnected(pages[2].page, 1);
  await pages[0].page.getByTestId('call-end').click();
  for (const p of pages) await until(async () => (await status(p.page)) === 'idle', { what: 'idle' });
  for (const p of pages) await p.context.close();
});

test('(d) direct call rings both callee tabs; answered on the second, the first stops ringing', async () => {
  const a = await newPage(browser, server.base);
  const b = await newPage(browser, server.base);
  await signUp(a.page, 'heidi');
  await signUp(b.page, 'ivan');
  const b2 = await b.context.newPage(); // ivan's second tab: same cookie jar
  b2.setDefaultTimeout(15_000);
  await b2.goto('/');
  await b2.getByTestId('me-name').waitFor();

  await openChatWith(a.page, 'ivan');
  // Declined first: the caller is told.
  await a.page.getByTestId('call-audio').click();
  await a.page.getByTestId('outgoing-call').waitFor();
  await b.page.getByTestId('incoming-call').waitFor();
  await b2.getByTestId('incoming-call').waitFor();
  await shot(b.page, 'incoming-call');
  await b.page.getByTestId('call-decline').click();
  await a.page.locator('[data-testid="toast"]', { hasText: 'declined' }).waitFor();
  await a.page.getByTestId('outgoing-call').waitFor({ state: 'detached' });

  // Cancelled: a missed call appears in both chats.
  await a.page.getByTestId('call-audio').click();
  await b.page.getByTestId('incoming-call').waitFor();
  await a.page.getByTestId('call-cancel').click();
  await b.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
  await a.page.getByTestId('missed-call').waitFor();

  // Video call, accepted on the second tab.
  await a.page.getByTestId('call-video').click();
  await b.page.getByTestId('incoming-call').waitFor();
  await b2.getByTestId('incoming-call').waitFor();
  await b2.getByTestId('call-accept').click();
  await b.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
  await allConnected(a.page, 1);
  await allConnected(b2, 1);
  await audioFlows(a.page);
  await audioFlows(b2);
  assert.deepEqual(await states(b.page), {}); // the first tab is not in the call
  await shot(b2, 'call-direct');
  await a.page.getByTestId('call-leave').click();
  await until(async () => (await b2.getByTestId('call-view').count()) === 0, { what: 'the call ends for the callee too' });
  await until(async () => Object.keys(await states(b2)).length === 0, { what: 'callee peer connection closed' });
  await a.context.close();
  await b.context.close();
});
