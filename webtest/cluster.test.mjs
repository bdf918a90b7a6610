// Three nodes on the local Redis and RabbitMQ: the page from one node,
// sessions wherever /v1/route sends them. A group of three chats with
// receipts, adds a member and loses one; the node one member is on dies
// and that member reconnects elsewhere and syncs what it missed, once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Cluster, launch, userPage, screenshotPath } from './harness.mjs';
import {
  conversation, eventually, expectMessages, messages, messageTexts, recordStates, sawState,
  sendText, signInWithToken, status, waitConnected,
} from './ui.mjs';

let cluster;
let browser;
const pages = {};

before(async () => {
  cluster = await new Cluster({ nodes: 3, backends: true }).start();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

test('a group of three on a three-node cluster', async (t) => {
  await t.test('each signs in on a node /v1/route names', async () => {
    for (const user of ['alice', 'bob', 'carol']) {
      const page = await userPage(browser);
      const token = await cluster.token(user);
      await signInWithToken(page, cluster.url(0, '/'), token, user);
      pages[user] = page;
    }
    const names = (await (await fetch(cluster.url(0, '/v1/nodes'))).json()).map((n) => n.node);
    for (const page of Object.values(pages)) {
      const node = await waitConnected(page);
      assert.ok(names.includes(node), `${node} is one of ${names}`);
    }
  });

  const { alice, bob, carol } = pages;

  await t.test('alice creates a group with bob and carol; all three chat', async () => {
    await alice.getByText('New group').click();
    await alice.getByLabel('Group name').fill('Team');
    await alice.getByLabel('Members', { exact: true }).fill('bob, carol');
    await alice.getByRole('button', { name: 'Create group' }).click();
    await alice.getByRole('heading', { name: 'Team' }).waitFor();
    await alice.getByText('Members: alice, bob, carol (owner alice)').waitFor();
    await expectMessages(alice, ['You created the group with bob, carol']);
    await sendText(alice, 'welcome to the team');
    for (const [p, created] of [[bob, 'alice created the group with you, carol'], [carol, 'alice created the group with bob, you']]) {
      await eventually('the group is listed with one unread', () => conversation(p, 'Team').locator('.badge').textContent(), '1');
      await conversation(p, 'Team').getByRole('button').click();
      await expectMessages(p, [created, 'welcome to the team']);
    }
    await sendText(bob, 'hi all');
    await sendText(carol, 'hello from carol');
    const want = ['You created the group with bob, carol', 'welcome to the team', 'hi all', 'hello from carol'];
    await expectMessages(alice, want);
    // Sender names show on others' messages.
    assert.equal(await messages(alice).filter({ hasText: 'hi all' }).locator('.from').textContent(), 'bob');
  });

  await t.test('receipts name who has seen', async () => {
    await sendText(alice, 'did you read this?');
    await messages(alice).filter({ hasText: 'did you read this?' }).getByText('Seen by bob, carol').waitFor();
    await alice.screenshot({ path: screenshotPath('group') });
  });

  await t.test('the owner adds a member; a member leaves', async () => {
    await alice.getByLabel('Add members').fill('dave');
    await alice.getByRole('button', { name: 'Add', exact: true }).click();
    await alice.getByText('Members: alice, bob, carol, dave (owner alice)').waitFor();
    await messages(bob).filter({ hasText: 'alice added dave' }).waitFor();
    // Only the owner sees the add form.
    assert.equal(await bob.getByLabel('Add members').isVisible(), false);
    await carol.getByRole('button', { name: 'Leave group' }).click();
    await carol.getByText('You are no longer a member of this group.').waitFor();
    assert.equal(await carol.getByRole('textbox', { name: 'Message', exact: true }).isDisabled(), true);
    await messages(alice).filter({ hasText: 'carol left' }).waitFor();
    await alice.getByText('Members: alice, bob, dave (owner alice)').waitFor();
    await sendText(alice, 'carol is gone');
    await messages(bob).filter({ hasText: 'carol is gone' }).waitFor();
    await carol.waitForTimeout(300);
    assert.equal(await messages(carol).filter({ hasText: 'carol is gone' }).count(), 0);
  });

  await t.test('bob\'s node dies; bob reconnects to another node and misses nothing', async () => {
    const bobNode = await waitConnected(bob);
    const victim = cluster.indexOf(bobNode);
    const before = await messageTexts(bob);
    await recordStates(bob);
    // From here Chromium logs the refused connections to the dead node.
    for (const p of Object.values(pages)) p.allowRefusedConnections();
    await cluster.kill(victim);
    await sawState(bob, 'reconnecting');
    if (await bob.locator('#status[data-state="reconnecting"]').count()) {
      await bob.screenshot({ path: screenshotPath('reconnecting') });
    }
    const sent = ['while bob moves 1', 'while bob moves 2'];
    for (const text of sent) await sendText(alice, text);
    const now = await waitConnected(bob, 60000);
    assert.notEqual(now, bobNode, `bob left ${bobNode}`);
    assert.match(await status(bob).textContent(), /^Connected to chat-\d+$/);
    await expectMessages(bob, [...before, ...sent], 30000);
    await sendText(alice, 'and after');
    await expectMessages(bob, [...before, ...sent, 'and after']);
    const ids = await messages(bob).evaluateAll((lis) => lis.map((li) => li.dataset.id));
    assert.equal(new Set(ids).size, ids.length, 'no message twice');
  });

  await t.test('alice\'s node drains (SIGTERM); she moves to another node and keeps chatting', async () => {
    const from = await waitConnected(alice, 60000);
    await recordStates(alice);
    const draining = cluster.term(cluster.indexOf(from));
    await sawState(alice, 'reconnecting');
    const to = await waitConnected(alice, 60000);
    assert.notEqual(to, from);
    await draining;
    const before = await messageTexts(bob);
    await sendText(alice, 'after the drain');
    await expectMessages(bob, [...before, 'after the drain'], 30000);
    await sendText(bob, 'still here');
    await eventually('alice gets bob\'s reply once', async () => (await messageTexts(alice)).filter((m) => m === 'still here').length, 1);
  });

  await t.test('no page reported an error', () => {
    for (const p of Object.values(pages)) p.check();
  });
});
