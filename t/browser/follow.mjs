// Drives Debian's chromium, headless, through playwright-core: opens the
// page of t/21-browser.t and runs its followRun(); prints what the page
// saw as JSON.
//
//     node t/browser/follow.mjs PAGE_URL API_URL TOKEN AGENT_ID

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [pageUrl, api, token, agent] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'creor-chromium-'));
let context;

try {
    context = await chromium.launchPersistentContext(profile, {
        executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync'],
        timeout: 60000
    });

    const page = await context.newPage();
    page.on('console', (m) => console.error('page: ' + m.text()));
    page.on('pageerror', (e) => console.error('page error: ' + e.message));

    await page.goto(pageUrl);
    await page.waitForFunction(() => window.pageReady === true, null,
                               { timeout: 20000 });

    const seen = await page.evaluate(
        ([a, t, g]) => window.followRun(a, t, g), [api, token, agent]);

    console.log(JSON.stringify(seen));

} catch (err) {
    console.log(JSON.stringify({ error: String(err && err.message || err) }));
    process.exitCode = 1;

} finally {
    if (context) {
        await context.close();
    }

    rmSync(profile, { recursive: true, force: true });
}
