// Group conversations in the browser: one user makes a group with two others, everyone chats,
// a member is added while the group is open elsewhere, roles are set and a member removed (who
// loses access at once), and a member who leaves can no longer send.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, signUp, shot, until, assertNoCspViolations } from './harness.mjs';

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

  // Ann makes "Weekend 🏕️" with bob.
  await ann.page.getByTestId('new-group').click();
  await ann.page.getByTestId('new-group-title').fill('Weekend 🏕️');
  await ann.page.getByTestId('new-group-members').fill('bob');
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
  await ann.page.getByTestId('group-add-input').fill('cid');
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
