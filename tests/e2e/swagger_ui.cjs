// Swagger UI in headless Chromium: every provider's operations are listed, a bearer token is
// entered through the Authorize dialog, and "Try it out" on a credential GET shows the 200 body.
// Usage: node swagger_ui.cjs BASE_URL USERNAME PASSWORD CHROMIUM SCREENSHOT.png
const { chromium } = require("playwright-core");

const [base, username, password, executablePath, screenshot] = process.argv.slice(2);
const API = "/services/usermanagement/api";

function check(condition, what) {
  if (!condition) {
    console.error(`swagger ui: ${what}`);
    process.exit(1);
  }
}

async function call(method, path, token, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(base + path, { method, headers, body: body && JSON.stringify(body) });
  return response.json();
}

(async () => {
  const { id_token: token } = await call("POST", "/api/authenticate", null, { username, password });
  const user = await call("POST", `${API}/users`, token, { name: "Swagger Grower" });
  const credential = await call("POST", `${API}/users/${user.id}/john-deere-credentials`, token, {
    clientKey: "swagger-key", clientSecret: "s", refreshToken: "r", clientEnvironment: "STAGE",
  });
  check(credential.id, "set-up credential created");

  const browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(`${base}/swagger-ui/`);
    await page.waitForSelector(".opblock", { timeout: 30000 });

    const listed = await page.$$eval(".opblock", (blocks) => blocks.map((b) => {
      const method = b.querySelector(".opblock-summary-method")?.textContent?.trim();
      const path = b.querySelector(".opblock-summary-path")?.getAttribute("data-path");
      return `${method} ${path}`;
    }));
    for (const slug of ["ag-leader-credentials", "john-deere-credentials", "raven-credentials"]) {
      const path = `${API}/users/{leafUserId}/${slug}`;
      for (const op of [`GET ${path}`, `POST ${path}`, `DELETE ${path}`, `GET ${path}/status`, `GET ${path}/events`]) {
        check(listed.includes(op), `operation ${op} is not listed (listed: ${listed.length})`);
      }
    }

    // Authorize through the UI.
    await page.click("button.authorize");
    await page.fill(".modal-ux input", token);
    await page.click(".modal-ux .auth-btn-wrapper button.authorize");
    await page.click(".modal-ux button.btn-done");

    // Try it out: GET the John Deere credentials.
    const path = `${API}/users/{leafUserId}/john-deere-credentials`;
    const block = page.locator(".opblock-get", { has: page.locator(`.opblock-summary-path[data-path="${path}"]`) });
    await block.locator(".opblock-summary").click();
    await block.locator("button.try-out__btn").click();
    await block.locator('input[placeholder="leafUserId"]').fill(user.id);
    await block.locator("button.execute").click();
    const status = block.locator(".live-responses-table tbody .response-col_status").first();
    await status.waitFor({ timeout: 15000 });
    check((await status.textContent()).trim() === "200", `Try it out answered ${await status.textContent()}`);
    const body = await block.locator(".live-responses-table tbody .response-col_description pre").first().textContent();
    check(body.includes(credential.id) && body.includes("swagger-key"), `the response body is the credential: ${body}`);
    const curl = await block.locator(".curl-command").textContent();
    check(curl.includes("Authorization: Bearer"), "the request carried the bearer token");

    await block.scrollIntoViewIfNeeded();
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`Swagger UI: ${listed.length} operations listed, authorized, Try it out 200; screenshot ${screenshot}`);
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
