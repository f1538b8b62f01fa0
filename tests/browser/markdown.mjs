// An article's Markdown in a real browser, on the town that wrote it and on
// the town it synced to: headings, lists, links and tables render; a
// script, an onerror image, a javascript: link and an external image do not
// run, load or link (issue 16). Started by tests/it/browser.rs, which makes
// the article through the API on town A and passes, besides lib.mjs's
// variables, YUI_RECORD: the record's console path.

import { check, newPage, runInChromium, step, submitLogin } from "./lib.mjs";

const A = process.env.YUI_A;
const B = process.env.YUI_B;
const record = process.env.YUI_RECORD;
const [adminName, adminPassword] = process.env.YUI_ADMIN.split(":");

async function checkArticle(page, town) {
  const body = page.locator(".markdown").first();
  check((await body.locator("h3").textContent()) === "研修の手順", `${town}: the heading renders as a heading`);
  check((await body.locator("li").count()) === 2, `${town}: the list renders as a list`);
  check((await body.locator("td").first().textContent()) === "1", `${town}: the table renders as a table`);
  const guide = body.locator("a[href='https://example.jp/guide']");
  check((await guide.count()) === 1, `${town}: the link to the guide is a link`);
  check((await guide.getAttribute("rel")) === "noopener noreferrer nofollow", `${town}: the link has rel=noopener noreferrer nofollow`);
  check((await body.locator("script, img, iframe, style, [onerror], [onclick]").count()) === 0, `${town}: no script, image, frame, style or handler in the article`);
  const hrefs = await body.locator("a").evaluateAll((links) => links.map((a) => a.getAttribute("href")));
  check(hrefs.every((h) => /^(https?:|mailto:|\/)/.test(h)), `${town}: every link goes to http(s), mailto or this node (${hrefs.join(", ")})`);
  const text = await body.textContent();
  check(text.includes("<script>"), `${town}: the script tag is shown as text`);
  check(text.includes("押して"), `${town}: the javascript: link's text is kept, as text`);
  check((await page.evaluate(() => window.__pwned)) === undefined, `${town}: nothing in the article ran`);
}

await runInChromium(async (browser) => {
  const dialogs = [];
  for (const [town, base] of [["A", A], ["B", B]]) {
    const page = await newPage(browser);
    page.on("dialog", async (d) => {
      dialogs.push(d.message());
      await d.dismiss();
    });
    step(`log in to town ${town} and open the article`);
    await page.goto(`${base}/login`);
    await submitLogin(page, adminName, adminPassword);
    // Town B shows the article once it has synced (A dials B).
    const deadline = Date.now() + 30000;
    for (;;) {
      const response = await page.goto(`${base}${record}`);
      if (response.status() === 200 || Date.now() > deadline) break;
      await page.waitForTimeout(500);
    }
    check(page.url().endsWith(record) && (await page.locator(".markdown").count()) > 0, `town ${town} shows the article`);
    await checkArticle(page, `town ${town}`);
  }
  check(dialogs.length === 0, `no dialog opened (${dialogs.join(", ")})`);
  return "markdown: all checks passed";
});
