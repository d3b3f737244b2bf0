// Drives the approvals web page in headless Chromium (driven by tests/tests/approvals.rs):
//   node approve_page.mjs URL USER PASSWORD REQUEST_ID
// Signs in, waits for the request's row, clicks Approve, and waits for the page to
// confirm. Prints what the row showed as JSON; exits non-zero on any failure.
import { chromium } from "playwright-core";

const [url, user, password, id] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30000);
  await page.goto(url);
  await page.fill("#user", user);
  await page.fill("#password", password);
  await page.click("#signin");
  const row = page.locator(`tr[id="${id}"]`);
  await row.waitFor();
  const shown = await row.innerText();
  await row.locator("button.approve").click();
  await page.waitForFunction(
    (id) => document.getElementById("message").textContent.includes(id + ": approved"),
    id,
  );
  console.log(JSON.stringify({ shown, message: await page.textContent("#message") }));
} finally {
  await browser.close();
}
