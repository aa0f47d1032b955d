// Group conversations in the browser: one user makes a group with two others, everyone chats,
// a member is added while the group is open elsewhere, roles are set and a member removed (who
// loses access at once), and a member who leaves can no longer send.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, signUp, shot, until, assertNoCspViolations, allConnected, audioFlows } from './harness.mjs';

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
afterEach(assertNoCspViolations);

async function say(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-input').press('Enter');
  await page.locator('[data-testid="message"][data-own="true"]:not([data-pending])', { hasText: text }).waitFor();
}

test('make a group, chat in it, add, promote and remove members, leave', async () => {
  const ann = await newPage(browser, server.base);
  const bob = await newPage(browser, server.base);
  const cid = await newPage(browser, server.base);
  await signUp(ann.page, 'ann', 'Ann Arbor');
  await signUp(bob.page, 'bob', 'Bob Builder');
  await signUp(cid.page, 'cid', 'Cid Campeador');

  // Ann makes "Weekend 🏕️" with bob, found by searching (user names by prefix).
  await ann.page.getByTestId('new-group').click();
  await ann.page.getByTestId('new-group-title').fill('Weekend 🏕️');
  await ann.page.getByTestId('new-group-members').pressSequentially('bo');
  await ann.page.locator('[data-testid="pick-result"][data-user="bob"]').click();
  await ann.page.locator('[data-testid="picked-person"][data-user="bob"]').waitFor();
  assert.equal(await ann.page.getByTestId('new-group-members').inputValue(), '', 'the search is cleared');
  await shot(ann.page, 'group-new');
  await ann.page.getByTestId('new-group-create').click();
  await ann.page.getByTestId('chat-peer').filter({ hasText: 'Weekend 🏕️' }).waitFor();
  await ann.page.locator('[data-testid="group-event"][data-kind="group_created"]').waitFor();
  await say(ann.page, 'Who brings the tent?');

  // Bob sees the group appear with an unread message, opens it, answers.
  const bobGroup = bob.page.locator('[data-testid="conversation"][data-kind="group"]');
  await bobGroup.waitFor();
  await until(async () => (await bobGroup.getByTestId('unread-badge').textContent()) === '1', { what: 'bob unread 1' });
  await bobGroup.click();
  await msg(bob.page, 'Who brings the tent?').waitFor();
  assert.equal(await msg(bob.page, 'Who brings the tent?').getByTestId('sender').textContent(), 'ann');
  await say(bob.page, 'I do!');
  await msg(ann.page, 'I do!').waitFor();

  // Ann adds cid; cid gets the group with its history from the moment she joined.
  await ann.page.getByTestId('group-add').click();
  await ann.page.getByTestId('group-add-input').pressSequentially('cid');
  await ann.page.locator('[data-testid="pick-result"][data-user="cid"]').click();
  await ann.page.getByTestId('group-add-submit').click();
  await ann.page.locator('[data-testid="group-event"][data-kind="members_added"]').waitFor();
  await bob.page.locator('[data-testid="group-event"][data-kind="members_added"]', { hasText: 'added cid' }).waitFor();
  const cidGroup = cid.page.locator('[data-testid="conversation"][data-kind="group"]');
  await cidGroup.waitFor();
  await cidGroup.click();
  await cid.page.locator('[data-testid="group-event"][data-kind="members_added"]', { hasText: 'added you' }).waitFor();
  assert.equal(await msg(cid.page, 'Who brings the tent?').count(), 0, 'nothing from before she joined');
  await say(cid.page, 'Hi all 👋');
  await msg(ann.page, 'Hi all 👋').waitFor();
  await msg(bob.page, 'Hi all 👋').waitFor();
  await until(async () => /3 members/.test(await ann.page.getByTestId('chat-presence').textContent()), { what: '3 members' });
  await shot(ann.page, 'group-chat');

  // Ann opens the members panel: makes bob an admin, removes cid, who loses access at once.
  await ann.page.getByTestId('group-members').click();
  const panel = ann.page.getByTestId('members-panel');
  await panel.locator('[data-testid="member"][data-user="cid"]').waitFor();
  await panel.locator('[data-testid="member"][data-user="bob"]').getByTestId('make-admin').click();
  await panel.locator('[data-testid="member"][data-user="bob"][data-role="admin"]').waitFor();
  await shot(ann.page, 'group-members');
  await panel.locator('[data-testid="member"][data-user="cid"]').getByTestId('remove-member').click();
  await cid.page.getByTestId('not-a-member').waitFor();
  await cid.page.locator('[data-testid="group-event"][data-kind="member_removed"]', { hasText: 'removed you' }).waitFor();
  await until(async () => /2 members/.test(await ann.page.getByTestId('chat-presence').textContent()), { what: '2 members' });
  await say(ann.page, 'Just us two now');
  await msg(bob.page, 'Just us two now').waitFor();
  await cid.page.waitForTimeout(500);
  assert.equal(await msg(cid.page, 'Just us two now').count(), 0, 'cid gets nothing after her removal');
  await cid.page.reload();
  await cid.page.getByTestId('conversation-list').waitFor();
  await cid.page.waitForTimeout(500);
  assert.equal(await cid.page.locator('[data-testid="conversation"][data-kind="group"]').count(), 0, 'the group is gone from her list');

  // Bob leaves: the others see it, and bob can only read.
  await bob.page.getByTestId('group-leave').click();
  await bob.page.getByTestId('not-a-member').waitFor();
  await ann.page.locator('[data-testid="group-event"][data-kind="member_left"]', { hasText: 'bob left' }).waitFor();
  await say(ann.page, 'Bye bob');
  await bob.page.waitForTimeout(500);
  assert.equal(await msg(bob.page, 'Bye bob').count(), 0, 'bob gets nothing after leaving');

  // After a reload the group is still there for ann, titled, with its history.
  await ann.page.reload();
  const annGroup = ann.page.locator('[data-testid="conversation"][data-kind="group"]');
  await annGroup.waitFor();
  assert.match(await annGroup.textContent(), /Weekend 🏕️/);
  await annGroup.click();
  await msg(ann.page, 'Hi all 👋').waitFor();
  await msg(ann.page, 'Bye bob').waitFor();
});

test('a call in a group: rings every member, one answers, one joins from the bar, media flows, history keeps it', async () => {
  const dee = await newPage(browser, server.base);
  const eve = await newPage(browser, server.base);
  const fay = await newPage(browser, server.base);
  await signUp(dee.page, 'dee', 'Dee Dee');
  await signUp(eve.page, 'eve', 'Eve Online');
  await signUp(fay.page, 'fay', 'Fay Wray');
  await dee.page.getByTestId('new-group').click();
  await dee.page.getByTestId('new-group-title').fill('Band 🎸');
  await dee.page.getByTestId('new-group-members').fill('eve, fay');
  await dee.page.getByTestId('new-group-create').click();
  await dee.page.getByTestId('chat-peer').filter({ hasText: 'Band 🎸' }).waitFor();
  await say(dee.page, 'Rehearsal call?');
  for (const p of [eve.page, fay.page]) {
    await p.locator('[data-testid="conversation"][data-kind="group"]').click();
    await msg(p, 'Rehearsal call?').waitFor();
  }

  // Dee calls the group: both others ring, naming the group.
  await dee.page.getByTestId('group-call-video').click();
  await dee.page.getByTestId('call-view').waitFor();
  assert.match(await dee.page.getByTestId('call-room').textContent(), /Band 🎸/);
  for (const p of [eve.page, fay.page]) {
    await p.getByTestId('incoming-call').waitFor();
    assert.match(await p.getByTestId('incoming-what').textContent(), /everyone in Band 🎸/);
  }
  await shot(eve.page, 'group-call-ringing');
  // Eve answers; Fay declines, sees the call is going on, and joins it from the group.
  await eve.page.getByTestId('call-accept').click();
  await fay.page.getByTestId('call-decline').click();
  await fay.page.getByTestId('incoming-call').waitFor({ state: 'detached' });
  await fay.page.getByTestId('group-call-bar').waitFor();
  assert.match(await fay.page.getByTestId('group-call-bar').textContent(), /dee’s video call is going on/);
  await fay.page.getByTestId('group-call-join').click();
  for (const p of [dee.page, eve.page, fay.page]) {
    await allConnected(p, 2);
    await audioFlows(p);
  }
  await until(async () => (await dee.page.locator('[data-testid="member"]').count()) === 3, { what: '3 in the call' });
  await shot(fay.page, 'group-call');

  // Everyone hangs up: the history keeps the call's start and end.
  for (const p of [eve.page, fay.page, dee.page]) await p.getByTestId('call-leave').click();
  for (const p of [dee.page, eve.page, fay.page]) {
    await p.locator('[data-testid="group-event"][data-kind="call_started"]', { hasText: 'started a video call' }).waitFor();
    await p.locator('[data-testid="group-event"][data-kind="call_ended"]', { hasText: 'The call ended' }).waitFor();
  }
  assert.equal(await fay.page.getByTestId('group-call-bar').count(), 0, 'no call going on any more');
});
