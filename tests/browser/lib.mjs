// What the browser scripts share: Chromium started the way the machine
// notes ask, the step and check lines of their output, pages that record
// every request leaving 127.0.0.1, and the console's login form.

import { chromium } from "playwright-core";

const started = Date.now();

// One line per step, with the seconds since the script started.
export function step(text) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);
}

export function check(ok, what) {
  if (!ok) {
    throw new Error(`check failed: ${what}`);
  }
}

// The flags the machine notes ask for: no background connections to the
// internet (refused here), no sandbox as root, a fresh profile each run.
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.YUI_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

// Any request that leaves 127.0.0.1 is a failure: town networks have no CDN.
// Each page from newPage adds such requests here.
export const external = [];

// A page in a fresh context (no cookies), recording external requests.
export async function newPage(browser) {
  const context = await browser.newContext();
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.hostname !== "127.0.0.1" && url.protocol !== "data:") {
      external.push(r.url());
    }
  });
  return page;
}

// Fills in and sends the login form the page shows; waits until the
// console has sent the browser on from /login.
export async function submitLogin(page, name, password) {
  await page.fill("#user", name);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith("/login")), page.click("form[action='/login'] button")]);
}

// Runs `checks(browser)` in a fresh Chromium, then checks that nothing
// left 127.0.0.1 and prints the line `checks` returned. The first failed
// check prints FAILED and makes the exit code non-zero.
export async function runInChromium(checks) {
  const browser = await launchChromium();
  try {
    const passed = await checks(browser);
    check(external.length === 0, `requests left 127.0.0.1: ${external.join(", ")}`);
    step(passed);
  } catch (e) {
    console.log(`FAILED: ${e.message}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
