// Two people chat in two browser contexts on one node started the way a
// newcomer starts it (in memory, printing an admin token): dev sign-in and
// token sign-in, text, emoji, media, unread badges, typing, "seen", recall,
// going offline and syncing back, history paging upward.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Cluster, launch, userPage, screenshotPath } from './harness.mjs';
import {
  conversation, eventually, expectMessages, mediaServer, messageBox, messageTexts, messages,
  openChat, sendButton, sendText, settled, signInWithToken, status, unreadBadge, waitConnected,
} from './ui.mjs';

let node;
let browser;
let media;
let alice;
let bob;
let adminLink;

before(async () => {
  node = await new Cluster({ nodes: 1, backends: false }).start();
  adminLink = await node.printedAdminLink();
  browser = await launch();
  media = await mediaServer();
});

after(async () => {
  await browser?.close();
  media?.close();
  await node?.stop();
});

test('two users chat in the browser', async (t) => {
  const admin = /#admin=(.*)$/.exec(adminLink)[1];

  await t.test('the page is served from the binary with a strict policy', async () => {
    const r = await fetch(node.url(0, '/'));
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    assert.match(r.headers.get('content-security-policy'), /script-src 'self'/);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    const js = await fetch(node.url(0, '/app.js'));
    assert.match(js.headers.get('content-type'), /^text\/javascript/);
    const again = await fetch(node.url(0, '/app.js'), { headers: { 'If-None-Match': js.headers.get('etag') } });
    assert.equal(again.status, 304);
  });

  await t.test('bad sign-ins say what is wrong', async () => {
    const page = await userPage(browser);
    await page.goto(node.url(0, '/'));
    await page.getByText('Developer sign-in').click();
    await page.getByLabel('Admin token').fill('not-the-admin-token');
    await page.getByLabel('Name', { exact: true }).fill('mallory');
    await page.getByRole('button', { name: 'Sign in as' }).click();
    await page.getByRole('alert').filter({ hasText: 'The admin token was refused.' }).waitFor();
    await page.getByLabel('Admin token').fill(admin);
    await page.getByLabel('Name', { exact: true }).fill('no spaces');
    await page.getByRole('button', { name: 'Sign in as' }).click();
    await page.getByRole('alert').filter({ hasText: 'A name is 1 to 64' }).waitFor();
    await page.getByLabel('Token', { exact: true }).fill('web.0000');
    await page.getByRole('button', { name: 'Sign in with token' }).click();
    await page.getByRole('alert').filter({ hasText: 'The token was refused' }).waitFor();
    assert.equal(await page.locator('#app').isHidden(), true);
    await page.screenshot({ path: screenshotPath('sign-in') });
    // The refused WebSocket close is not a page error; a refused fetch is
    // logged by Chromium itself ("401"), which is expected here.
    await page.context_.close();
  });

  await t.test('alice signs in through the link the node printed, bob with a token', async () => {
    alice = await userPage(browser);
    await alice.goto(adminLink);
    // The fragment is taken out of the address bar at once.
    assert.equal(new URL(alice.url()).hash, '');
    await alice.getByLabel('Name', { exact: true }).fill('alice');
    await alice.getByRole('button', { name: 'Sign in as' }).click();
    await waitConnected(alice);
    await alice.getByText('Signed in as alice').waitFor();
    bob = await userPage(browser);
    await signInWithToken(bob, node.url(0, '/'), await node.token('bob', admin), 'bob');
  });

  await t.test('text, emoji and media arrive; unread badge and last message', async () => {
    await openChat(alice, 'bob');
    await sendText(alice, 'hello bob');
    await alice.getByRole('button', { name: 'Emoji smile' }).click();
    await alice.getByText('Photo, video or voice').click();
    for (const [kind, url] of [['image', `${media.url}/photo.png`], ['voice', `${media.url}/voice.wav`], ['video', `${media.url}/clip.webm`]]) {
      await alice.getByLabel('Kind').selectOption(kind);
      await alice.getByLabel('Media URL').fill(url);
      await alice.getByRole('button', { name: 'Share media' }).click();
    }
    await sendText(alice, '<img src=x onerror="window.__pwned=1"> is just text');
    await eventually('alice sees her six messages', async () => (await messages(alice).count()), 6);
    await eventually('bob\'s unread badge', () => unreadBadge(bob, 'alice'), '6');
    const last = await conversation(bob, 'alice').locator('.conv-last').textContent();
    assert.equal(last, '<img src=x onerror="window.__pwned=1"> is just text');
    await bob.screenshot({ path: screenshotPath('conversations-unread') });

    await conversation(bob, 'alice').getByRole('button').click();
    await bob.getByRole('heading', { name: 'Chat with alice' }).waitFor();
    await expectMessages(bob, ['hello bob', '😄', '', '', '', '<img src=x onerror="window.__pwned=1"> is just text']);
    const img = bob.getByRole('img', { name: 'Photo from alice' });
    await img.waitFor();
    await eventually('the photo loaded', () => img.evaluate((i) => i.complete && i.naturalWidth), 48);
    assert.equal(await bob.getByLabel('Voice message from alice').getAttribute('src'), `${media.url}/voice.wav`);
    assert.equal(await bob.getByLabel('Video from alice').getAttribute('src'), `${media.url}/clip.webm`);
    assert.equal(await bob.evaluate(() => window.__pwned), undefined);
    await eventually('badge gone once open', () => unreadBadge(bob, 'alice'), '');
  });

  await t.test('alice sees "Seen" once bob has read', async () => {
    const mine = messages(alice).filter({ hasText: 'is just text' });
    await mine.getByText('Seen', { exact: true }).waitFor();
    assert.equal(await alice.getByText('Seen', { exact: true }).count(), 1);
  });

  await t.test('bob plays the voice message; alice sees it played', async () => {
    const voice = bob.getByLabel('Voice message from alice');
    await voice.evaluate((a) => a.play());
    await messages(alice).filter({ has: alice.getByLabel('Voice message from you') }).getByText('Played', { exact: true }).waitFor();
    assert.ok(media.hits.includes('/voice.wav'), 'the voice message loaded from its URL');
  });

  await t.test('typing shows on the other side', async () => {
    await messageBox(bob).pressSequentially('hi al');
    await alice.locator('#typing').getByText('bob is typing…').waitFor();
    await alice.screenshot({ path: screenshotPath('chat') });
    await sendButton(bob).click();
    await eventually('alice gets bob\'s reply', async () => (await messageTexts(alice)).at(-1), 'hi al');
    await eventually('the typing line clears with the message', () => alice.locator('#typing').textContent(), '');
  });

  await t.test('alice recalls her first message everywhere', async () => {
    await messages(alice).filter({ hasText: 'hello bob' }).getByRole('button', { name: 'Recall message' }).click();
    await messages(alice).filter({ hasText: 'You recalled a message' }).waitFor();
    await messages(bob).filter({ hasText: 'Message recalled' }).waitFor();
    assert.equal(await messages(bob).filter({ hasText: 'hello bob' }).count(), 0);
    // Bob cannot recall alice's messages: there is no button for them.
    assert.equal(await messages(bob).filter({ hasText: 'is just text' }).getByRole('button', { name: 'Recall message' }).count(), 0);
  });

  await t.test('bob goes offline, misses messages, comes back and syncs each once', async () => {
    const before = await messageTexts(bob);
    await bob.context_.setOffline(true);
    await bob.locator('#status[data-state="offline"]').waitFor();
    assert.match(await status(bob).textContent(), /Offline: reconnecting/);
    await bob.screenshot({ path: screenshotPath('offline') });
    for (const text of ['while you were away 1', 'while you were away 2', 'while you were away 3']) {
      await sendText(alice, text);
    }
    await bob.waitForTimeout(500);
    assert.deepEqual(await messageTexts(bob), before, 'nothing arrives while offline');
    await bob.context_.setOffline(false);
    await waitConnected(bob);
    await expectMessages(bob, [...before, 'while you were away 1', 'while you were away 2', 'while you were away 3']);
    await sendText(alice, 'and live again');
    await expectMessages(bob, [...before, 'while you were away 1', 'while you were away 2', 'while you were away 3', 'and live again']);
    const ids = await messages(bob).evaluateAll((lis) => lis.map((li) => li.dataset.id));
    assert.equal(new Set(ids).size, ids.length, 'no message twice');
  });

  await t.test('history pages upward', async () => {
    const had = await messages(alice).count();
    for (let i = 1; i <= 30; i++) {
      await messageBox(alice).fill(`burst ${i}`);
      await messageBox(alice).press('Enter');
    }
    await settled(alice);
    const total = had + 30;
    await eventually('bob has them all live', async () => (await messages(bob).count()), total);
    // A fresh page (the token stays in this tab): the newest page only.
    await bob.reload();
    await waitConnected(bob);
    await conversation(bob, 'alice').getByRole('button').click();
    await eventually('the newest page', async () => (await messages(bob).count()), 30);
    assert.equal((await messageTexts(bob)).at(-1), 'burst 30');
    await bob.getByRole('button', { name: 'Load older messages' }).click();
    await eventually('every message after paging up', async () => (await messages(bob).count()), total);
    assert.equal(await messages(bob).first().textContent().then((s) => s.includes('Message recalled')), true);
    await bob.getByRole('button', { name: 'Load older messages' }).waitFor({ state: 'hidden' });
  });

  await t.test('no page reported an error', () => {
    alice.check();
    bob.check();
  });
});
