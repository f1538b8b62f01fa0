// The web console in a real browser: Debian's Chromium, driven by
// playwright-core, against two real Yui nodes that sync with each other.
// Started by tests/it/browser.rs, which sets the nodes up and passes:
//   YUI_A, YUI_B          console URLs of the two towns (http://127.0.0.1:PORT)
//   YUI_ADMIN, YUI_VIEWER "name:password" of an admin on both and a viewer on A
//   YUI_CHROMIUM          the browser (default /usr/bin/chromium)
// Prints one line per step; exits non-zero at the first failed check.

import { check, newPage, runInChromium, step, submitLogin } from "./lib.mjs";

const A = process.env.YUI_A;
const B = process.env.YUI_B;
const [adminName, adminPassword] = process.env.YUI_ADMIN.split(":");
const [viewerName, viewerPassword] = process.env.YUI_VIEWER.split(":");

async function login(page, base, name, password) {
  await page.goto(`${base}/`);
  check(page.url().includes("/login"), `anonymous visit to ${base}/ goes to the login page (${page.url()})`);
  check((await page.getAttribute("html", "lang")) === "ja", "the login page is in Japanese");
  check((await page.textContent("h1")).includes("ログイン"), "the login heading says ログイン");
  await submitLogin(page, name, password);
  check((await page.textContent(".who")).includes(name), `signed in as ${name}`);
}

const title = `研修の進め方メモ ${Date.now()}`;
await runInChromium(async (browser) => {
  let recordPath;
  // 1. Log in to Tateshina's console.
  const page = await newPage(browser);
  step("log in to town A as the administrator");
  await login(page, A, adminName, adminPassword);

  // 2. Create a knowledge article in Japanese.
  step("create a knowledge article in Japanese");
  await page.goto(`${A}/records/knowledge/new`);
  await page.fill("#in-title", title);
  await page.fill("#in-body", "新しいワーカーの研修は、模擬業務から始めて２週間で本番の受注に入る。");
  await page.selectOption("#in-category", "training");
  await Promise.all([page.waitForURL(/\/records\/knowledge\/[0-9A-Z]+/), page.click("form.card button[type=submit]")]);
  recordPath = new URL(page.url()).pathname;
  check((await page.textContent("main")).includes(title), "the new record's page shows its title");
  check((await page.textContent("main")).includes("記録を作成しました"), "the page says it was created");

  // 3. Edit it.
  step("edit it");
  await Promise.all([page.waitForURL(/\/edit$/), page.click(`a[href='${recordPath}/edit']`)]);
  await page.fill("#in-body", "新しいワーカーの研修は、模擬業務から始めて３週間で本番の受注に入る（改訂）。");
  await Promise.all([page.waitForURL((u) => u.pathname === recordPath), page.click("form.card button[type=submit]")]);
  check((await page.textContent("main")).includes("改訂"), "the edited body is shown");

  // 4. Find it by a two-character search.
  step("find it by searching for 研修");
  await page.goto(`${A}/search`);
  await page.fill("#q", "研修");
  await Promise.all([page.waitForURL(/\/search\?/), page.click("form[role=search] button")]);
  check((await page.locator(`a[href='${recordPath}']`).count()) > 0, "the search result links to the record");

  // 5. An invalid form: the error is next to the field (the browser's own
  //    required check is taken off so that the server's answer is seen).
  step("submit an invalid form and see the field error");
  await page.goto(`${A}/records/knowledge/new`);
  await page.$eval("#in-title", (e) => e.removeAttribute("required"));
  await page.fill("#in-body", "タイトルを書き忘れた記録");
  await page.selectOption("#in-category", "other");
  await page.click("form.card button[type=submit]");
  await page.waitForSelector("#field-title .field-error");
  const fieldError = await page.textContent("#field-title .field-error");
  check(/[ぁ-んァ-ン一-龥]/.test(fieldError), `the title's error is in Japanese: ${fieldError}`);
  check((await page.locator(".field-error").count()) === 1, "only the title has an error");

  // 6. Switch to English and back; the choice is remembered.
  step("switch to English and back");
  await page.goto(`${A}${recordPath}`);
  await Promise.all([page.waitForURL((u) => u.pathname === recordPath), page.click(".who a[hreflang=en]")]);
  check((await page.getAttribute("html", "lang")) === "en", "the page is in English after the switch");
  check((await page.textContent("nav")).includes("Records"), "the menu says Records");
  await page.goto(`${A}/search`);
  check((await page.getAttribute("html", "lang")) === "en", "English is remembered on the next page");
  await Promise.all([page.waitForURL(/\/search/), page.click(".who a[hreflang=ja]")]);
  check((await page.getAttribute("html", "lang")) === "ja", "back in Japanese");

  // 7. A missing CSRF token is refused, and nothing changes.
  step("a form post without the CSRF token is refused");
  const forged = await page.request.post(`${A}${recordPath}/edit`, {
    form: { title: "書き換え", body: "CSRF なし", category: "other" },
    maxRedirects: 0,
  });
  check(forged.status() === 403, `no CSRF token: ${forged.status()}`);
  await page.goto(`${A}${recordPath}`);
  check((await page.textContent("main")).includes(title), "the record kept its title");

  // 7b. The dashboard lists the peer with its town; its own "sync now".
  step("sync with the peer from its row on the dashboard");
  await page.goto(`${A}/`);
  const row = page.locator("tr", { has: page.locator("input[name=peer]") });
  check((await row.count()) === 1, "one peer row with a sync button");
  check((await row.textContent()).includes("omachi"), "the peer row names its town");
  await Promise.all([page.waitForURL(/synced=1-0/), row.locator("button").click()]);
  check((await page.textContent("main")).includes("同期しました（成功 1 件、失敗 0 件）"), "the dashboard says it synced with one peer");

  // 8. The article reaches Omachi's console.
  step("see it arrive on town B's console");
  const pageB = await newPage(browser);
  await login(pageB, B, adminName, adminPassword);
  let arrived = false;
  for (let i = 0; i < 60 && !arrived; i++) {
    await pageB.goto(`${B}/records/knowledge`);
    arrived = (await pageB.textContent("main")).includes(title);
    if (!arrived) {
      await pageB.waitForTimeout(500);
    }
  }
  check(arrived, "the article is listed on town B");
  await pageB.goto(`${B}${recordPath}`);
  check((await pageB.textContent("main")).includes("改訂"), "town B has the edited version");

  // 9. A viewer reads but cannot edit: no button, and a forged post with
  //    the viewer's own valid CSRF token is refused.
  step("a viewer cannot edit");
  const viewer = await newPage(browser);
  await login(viewer, A, viewerName, viewerPassword);
  await viewer.goto(`${A}${recordPath}`);
  check((await viewer.textContent("main")).includes(title), "the viewer reads the record");
  check((await viewer.locator(`a[href='${recordPath}/edit']`).count()) === 0, "no edit button for a viewer");
  check((await viewer.locator(`a[href='${recordPath}/delete']`).count()) === 0, "no delete button for a viewer");
  const csrf = await viewer.getAttribute("form[action='/logout'] input[name=csrf]", "value");
  const viewerPost = await viewer.request.post(`${A}${recordPath}/edit`, {
    form: { csrf, title: "閲覧者の書き換え", body: "x", category: "other" },
    maxRedirects: 0,
  });
  check(viewerPost.status() === 403, `viewer's forged post: ${viewerPost.status()}`);
  await viewer.goto(`${A}${recordPath}`);
  check(!(await viewer.textContent("main")).includes("閲覧者の書き換え"), "the viewer changed nothing");

  // 10. Log out: the session is over.
  step("log out");
  await Promise.all([page.waitForURL(/\/login/), page.click("form[action='/logout'] button")]);
  await page.goto(`${A}/records`);
  check(page.url().includes("/login"), "after logging out, pages ask for a login again");

  return `all checks passed (record ${recordPath})`;
});
