// The dashboard in a real browser (Debian's Chromium, headless, through
// playwright-core), against a real server that tests/integration/
// dashboard_browser.sh has started and filled through the API. What a
// person would do: sign in, read the overview, follow a detection to its
// machine, create an enrollment token and see the command, change the
// agency's protection policy (a mistake shown next to its field, then a
// saved fix), switch the language and back, then sign in as an agency's
// officer and find that another agency's machine is neither listed nor
// reachable by its URL.
//
// Environment (set by the shell script):
//   KHIEN_URL            https://127.0.0.1:PORT
//   KHIEN_ADMIN_USER / KHIEN_ADMIN_PASSWORD
//   KHIEN_OFFICER_USER / KHIEN_OFFICER_PASSWORD   an officer of agency A
//   KHIEN_AUDITOR_USER / KHIEN_AUDITOR_PASSWORD   optional: a province auditor
//   KHIEN_ENROLLED       machines enrolled in the whole province
//   KHIEN_FAMILY         a malware family name that was reported
//   KHIEN_AGENCY_A       agency A's id
//   KHIEN_A_HOSTNAME     a machine of agency A
//   KHIEN_B_HOSTNAME / KHIEN_B_MACHINE   a machine of agency B
//   KHIEN_XSS_PATH       a detection path full of markup, to be shown as text
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   KHIEN_ARTIFACTS      optional folder for screenshots of failures
//
// Prints one PASS or FAIL line per check and "N passed, N failed" at the end;
// exits 1 when anything failed.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import os from 'node:os';

const env = (k, d) => {
    const v = process.env[k] ?? d;
    if (v === undefined) {
        console.log(`FAIL: environment variable ${k} is not set`);
        process.exit(2);
    }
    return v;
};
const BASE = env('KHIEN_URL').replace(/\/+$/, '');
const ADMIN = env('KHIEN_ADMIN_USER', 'admin');
const ADMIN_PW = env('KHIEN_ADMIN_PASSWORD');
const OFFICER = env('KHIEN_OFFICER_USER');
const OFFICER_PW = env('KHIEN_OFFICER_PASSWORD');
const AUDITOR = process.env.KHIEN_AUDITOR_USER || '';
const AUDITOR_PW = process.env.KHIEN_AUDITOR_PASSWORD || '';
const ENROLLED = Number(env('KHIEN_ENROLLED'));
const FAMILY = env('KHIEN_FAMILY');
const AGENCY_A = env('KHIEN_AGENCY_A');
const A_HOST = env('KHIEN_A_HOSTNAME');
const B_HOST = env('KHIEN_B_HOSTNAME');
const B_MACHINE = env('KHIEN_B_MACHINE');
const XSS_PATH = process.env.KHIEN_XSS_PATH || '';
const ARTIFACTS = process.env.KHIEN_ARTIFACTS || '';
const C2_INDICATOR = process.env.KHIEN_C2_INDICATOR || '';
const STEP_MS = 15000;

let passed = 0;
let failed = 0;
const problems = []; // console errors and CSP refusals seen by the page

async function step(name, page, fn) {
    try {
        await fn();
        passed++;
        console.log(`PASS: ${name}`);
        return true;
    } catch (e) {
        failed++;
        console.log(
            `FAIL: ${name}\n  ${String(e && e.message ? e.message : e)
                .split('\n')
                .slice(0, 6)
                .join('\n  ')}`,
        );
        if (page) {
            console.log(`  at ${page.url()}`);
            if (ARTIFACTS) {
                const file = path.join(ARTIFACTS, name.replace(/[^A-Za-z0-9]+/g, '_').slice(0, 60) + '.png');
                await page.screenshot({ path: file, fullPage: true }).catch(() => {});
                console.log(`  screenshot: ${file}`);
            }
        }
        return false;
    }
}

function expect(cond, message) {
    if (!cond) throw new Error(message);
}

const tid = (page, id) => page.getByTestId(id);

async function login(page, user, password) {
    await page.goto(BASE + '/');
    await tid(page, 'login-form').waitFor();
    await tid(page, 'login-username').fill(user);
    await tid(page, 'login-password').fill(password);
    await tid(page, 'login-submit').click();
    await tid(page, 'overview').waitFor();
}

async function logout(page) {
    await tid(page, 'logout').click();
    await tid(page, 'login-form').waitFor();
}

const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({
    ignoreHTTPSErrors: true, // the server's certificate is signed by its own CA
    viewport: { width: 1366, height: 768 },
    locale: 'vi-VN',
    timezoneId: 'Asia/Ho_Chi_Minh',
});
context.setDefaultTimeout(STEP_MS);
const page = await context.newPage();
// Answers the tests provoke on purpose are not problems: 401, 403 and 404
// for what a role may not see, 400 for the policy the form sends with a
// mistake in it.
page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[0134]/.test(m.text())) problems.push(m.text());
});
page.on('pageerror', (e) => problems.push('uncaught: ' + e.message));

try {
    await step('the sign-in page is served, in Vietnamese by default', page, async () => {
        const res = await page.goto(BASE + '/');
        expect(res && res.ok(), 'GET / did not answer 200');
        const csp = res.headers()['content-security-policy'] || '';
        expect(csp.includes("script-src 'self'"), 'no Content-Security-Policy on /: ' + csp);
        await tid(page, 'login-form').waitFor();
        const text = await tid(page, 'login-submit').innerText();
        expect(text.includes('Đăng nhập'), `the button says "${text}"`);
    });

    await step('a wrong password is refused with a message', page, async () => {
        await tid(page, 'login-username').fill(ADMIN);
        await tid(page, 'login-password').fill('not-the-password');
        await tid(page, 'login-submit').click();
        await tid(page, 'login-error').waitFor({ state: 'visible' });
    });

    await step('the administrator signs in and the overview shows the enrolled count', page, async () => {
        await login(page, ADMIN, ADMIN_PW);
        await page
            .waitForFunction(
                (n) =>
                    document.querySelector('[data-testid=enrolled-count]')?.textContent.replace(/\D/g, '') ===
                    String(n),
                ENROLLED,
            )
            .catch(async () => {
                const shown = await tid(page, 'enrolled-count')
                    .innerText({ timeout: 1000 })
                    .catch(() => '(none)');
                throw new Error(`the enrolled count shows "${shown}", expected ${ENROLLED}`);
            });
        expect((await tid(page, 'current-role').innerText()).length > 0, 'no role shown');
    });

    await step('the overview lists the reported malware family and draws the chart', page, async () => {
        await tid(page, 'top-families').getByText(FAMILY, { exact: true }).waitFor();
        const bars = await page.locator('[data-testid=detections-chart] .col').count();
        expect(bars >= 1, 'the chart has no bar for today');
        await tid(page, 'coverage-table').waitFor();
    });

    let machineId = '';
    await step('a detection leads to its machine page', page, async () => {
        await tid(page, 'nav-detections').click();
        await tid(page, 'detections-table').waitFor();
        await tid(page, 'detection-link').first().click();
        await tid(page, 'detection-page').waitFor();
        const link = tid(page, 'detection-machine-link');
        const host = (await link.innerText()).trim();
        expect(host.length > 0, 'the machine link is empty');
        await link.click();
        await tid(page, 'machine-page').waitFor();
        machineId = await tid(page, 'machine-page').getAttribute('data-id');
        expect(
            page.url().endsWith('/machines/' + machineId),
            'URL ' + page.url() + ' is not the machine page',
        );
        expect(
            (await tid(page, 'page-title').innerText()).trim() === host,
            'the title is not the hostname ' + host,
        );
        await tid(page, 'machine-detections-table').waitFor();
    });

    await step('"Scan now" queues a task that the machine page lists', page, async () => {
        await tid(page, 'task-scan').click();
        await tid(page, 'tasks-table').locator('[data-kind=scan]').first().waitFor();
    });

    if (C2_INDICATOR) {
        await step('the C&C page lists the reported hit under its agency, and its range on the agency page', page, async () => {
            await tid(page, 'nav-c2').click();
            await tid(page, 'c2-agency-row').first().waitFor();
            const row = tid(page, 'c2-hit-row').filter({ hasText: C2_INDICATOR }).first();
            await row.waitFor();
            expect((await row.innerText()).includes('10.9.8.7'), 'the hit row does not show the host 10.9.8.7');
            // What was done about it, recorded from the row.
            await row.locator('[data-testid=c2-status-change]').click();
            await tid(page, 'c2-status-select').selectOption('resolved');
            await tid(page, 'c2-status-note').fill('Đã cách ly máy và cài lại hệ điều hành');
            await tid(page, 'c2-status-save').click();
            await page.waitForFunction(
                (ind) =>
                    [...document.querySelectorAll('[data-testid=c2-hit-row]')].some(
                        (r) => r.textContent.includes(ind) && r.querySelector('[data-testid=c2-hit-status]').textContent.includes('Đã xử lý'),
                    ),
                C2_INDICATOR,
            );
            await page.goto(BASE + '/agencies/' + AGENCY_A);
            await tid(page, 'network-row').filter({ hasText: '10.9.8.0/24' }).first().waitFor();
        });
    }

    await step("the infection index page shows the province's index, and an agency drills down", page, async () => {
        await tid(page, 'nav-infection').click();
        await tid(page, 'infection-index').waitFor();
        await tid(page, 'infection-trend').waitFor();
        const api = await page.evaluate(async () => {
            const r = await fetch('/api/v1/index', { credentials: 'same-origin' });
            return r.json();
        });
        const shown = Number(await tid(page, 'infection-index').getAttribute('data-value'));
        expect(Math.abs(shown - api.scope.index) < 1e-9, `the page shows ${shown}, the API ${api.scope.index}`);
        expect(api.scope.components.managed > 0, 'the index counts no managed machine');
        expect(
            (await tid(page, 'infection-row').count()) === api.items.length,
            'the table does not list every agency of the scope',
        );
        await page.locator(`[data-testid=infection-row][data-agency="${AGENCY_A}"] [data-testid=infection-drill]`).click();
        await page.waitForFunction(
            (a) => document.querySelector('[data-testid=infection-row]')?.getAttribute('data-agency') === a,
            String(AGENCY_A),
        );
        expect(page.url().includes('agency=' + AGENCY_A), 'the address bar does not name agency A: ' + page.url());
    });

    await step('the quarterly report is produced from the dashboard; its PDF names the agencies and figures', page, async () => {
        await tid(page, 'nav-reports').click();
        await tid(page, 'report-deadline').waitFor();
        await tid(page, 'report-create').click();
        const row = tid(page, 'report-row').first();
        await row.waitFor({ timeout: 30000 });
        const link = tid(page, 'report-download-pdf').first();
        const href = await link.getAttribute('href');
        // Downloaded through the page's session, as a click would, then read
        // with poppler's tools.
        const b64 = await page.evaluate(async (u) => {
            const r = await fetch(u, { credentials: 'same-origin' });
            const buf = new Uint8Array(await r.arrayBuffer());
            let s = '';
            for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode(...buf.subarray(i, i + 0x8000));
            return (r.headers.get('Content-Type') || '') + '|' + btoa(s);
        }, href);
        const [type, data] = [b64.slice(0, b64.indexOf('|')), b64.slice(b64.indexOf('|') + 1)];
        expect(type === 'application/pdf', 'the PDF is served as ' + type);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'khien-report-'));
        const pdf = path.join(dir, 'report.pdf');
        fs.writeFileSync(pdf, Buffer.from(data, 'base64'));
        if (ARTIFACTS) fs.copyFileSync(pdf, path.join(ARTIFACTS, 'quarterly-report.pdf'));
        // Reading order rather than -layout: a name wrapped in a narrow table
        // cell then comes out as one run of words.
        const text = execFileSync('pdftotext', [pdf, '-'], { encoding: 'utf8' }).replace(/\s+/g, ' ');
        for (const name of ['Sở Thông tin và Truyền thông A', 'UBND huyện B', FAMILY]) {
            expect(text.includes(name), `the PDF does not name "${name}"`);
        }
        expect(new RegExp('\\b' + ENROLLED + '\\b').test(text), `the PDF does not show the ${ENROLLED} managed machines`);
        execFileSync('pdftoppm', ['-r', '40', '-f', '1', '-l', '1', '-png', pdf, path.join(dir, 'page')]);
        const png = fs.readdirSync(dir).find((f) => f.endsWith('.png'));
        expect(png && fs.statSync(path.join(dir, png)).size > 1000, 'pdftoppm rendered no first page');
        fs.rmSync(dir, { recursive: true, force: true });
        await tid(page, 'report-download-xlsx').first().waitFor();
        await tid(page, 'report-download-csv').first().waitFor();
    });

    await step('the sharing page shows sharing is off; a child province is added on the provinces page', page, async () => {
        await tid(page, 'nav-sharing').click();
        await tid(page, 'sharing-page').waitFor();
        await tid(page, 'nav-provinces').click();
        await tid(page, 'provinces-page').waitFor();
        await tid(page, 'child-code').fill('kontum');
        await tid(page, 'child-name').fill('Tỉnh Kon Tum');
        await tid(page, 'child-create').locator('button[type=submit]').click();
        const token = await tid(page, 'child-token').inputValue();
        expect(token.length >= 16, 'the child token is too short: ' + token);
        await tid(page, 'child-row').filter({ hasText: 'Tỉnh Kon Tum' }).first().waitFor();
    });

    if (XSS_PATH) {
        await step('markup in API data is shown as text, never run', page, async () => {
            await page.goto(BASE + '/detections?q=' + encodeURIComponent('khien-xss'));
            await tid(page, 'detections-table').waitFor();
            await page.getByText(XSS_PATH, { exact: true }).first().waitFor();
            const injected = await page
                .locator('[data-testid=detections-table] img, [data-testid=detections-table] script')
                .count();
            expect(injected === 0, 'an element from the path was created');
            expect(!(await page.evaluate(() => window.__khienXss)), 'the injected script ran');
        });
    }

    await step('an enrollment token is created and its command shown once', page, async () => {
        await page.goto(BASE + '/agencies');
        await tid(page, 'agency-tree').locator(`[data-id="${AGENCY_A}"] a`).click();
        await tid(page, 'agency-page').waitFor();
        await tid(page, 'token-note').fill('browser test');
        await tid(page, 'token-create-submit').click();
        const token = await tid(page, 'token-value').inputValue();
        const command = await tid(page, 'token-command').inputValue();
        expect(token.length >= 16, 'the token is too short: ' + token);
        expect(command.includes(token), 'the command does not carry the token: ' + command);
        expect(/enroll/.test(command), 'the command does not enroll: ' + command);
        await tid(page, 'enroll-tokens-table').getByText('browser test').first().waitFor();
    });

    await step('the agency page shows the protection policy; a bad path is named, a fix is saved', page, async () => {
        // Agency A is top-level and has no policy yet: the built-in default.
        await page
            .locator('[data-testid=policy-source][data-source=default]')
            .waitFor()
            .catch(async () => {
                const src = await tid(page, 'policy-source')
                    .getAttribute('data-source', { timeout: 1000 })
                    .catch(() => '(none)');
                throw new Error(`the policy section shows source "${src}", expected the default`);
            });
        await tid(page, 'policy-summary').waitFor();
        const before = (await tid(page, 'policy-version').innerText()).trim();
        expect(/^[0-9a-f]{16}$/.test(before), 'the policy version looks wrong: ' + before);

        // A relative path: the server refuses rtp.paths[1], and the message
        // appears under the paths box, naming the line.
        await tid(page, 'policy-rtp-paths').fill('/\nrelative/path');
        await tid(page, 'policy-save').click();
        const slot = page.locator('[data-field="rtp.paths"] [data-testid=policy-field-error]');
        await slot.waitFor({ state: 'visible' });
        const msg = await slot.innerText();
        expect(/2/.test(msg) && /absolute/.test(msg), 'the error under the paths says: ' + msg);
        expect(
            (await tid(page, 'policy-rtp-paths').getAttribute('aria-invalid')) === 'true',
            'the paths box is not marked invalid',
        );

        await tid(page, 'policy-rtp-paths').fill('/\n/home');
        await tid(page, 'policy-rtp-action-input').selectOption('block');
        await tid(page, 'policy-update-interval-input').fill('900');
        await tid(page, 'policy-scan-add').click();
        const scans = await tid(page, 'policy-scan').count();
        expect(scans === 2, `${scans} scheduled scans in the editor, expected the default and a new one`);
        await tid(page, 'policy-scan-time').last().fill('12:15');
        await tid(page, 'policy-save').click();
        await page.locator('[data-testid=policy-source][data-source=own]').waitFor();
        const after = (await tid(page, 'policy-version').innerText()).trim();
        expect(after !== before && /^[0-9a-f]{16}$/.test(after), `the version did not change: ${before} -> ${after}`);
        expect(
            (await tid(page, 'policy-rtp-action').innerText()).includes('Chặn'),
            'the summary does not show the block action',
        );
        expect((await tid(page, 'policy-scan-row').count()) === 2, 'the summary does not list two scans');

        // What the server now hands A's machines.
        const view = await page.evaluate(async (id) => {
            const r = await fetch('/api/v1/agencies/' + id + '/policy', { credentials: 'same-origin' });
            return r.json();
        }, AGENCY_A);
        const eff = view.effective || {};
        expect(eff.rtp && eff.rtp.action === 'block', 'the stored action is ' + JSON.stringify(eff.rtp));
        expect(eff.update_interval_s === 900, 'the stored update interval is ' + eff.update_interval_s);
        expect(
            JSON.stringify(eff.rtp.paths) === '["/","/home"]',
            'the stored paths are ' + JSON.stringify(eff.rtp.paths),
        );
        const times = (eff.scheduled_scans || []).map((x) => x.time).join(',');
        expect(times === '02:30,12:15', 'the stored scan times are ' + times);
        expect(view.policy_version === after, 'the page shows another version than the server');
    });

    await step('the language switches to English, survives a reload, and back', page, async () => {
        await tid(page, 'lang-en').click();
        await page.waitForFunction(
            () => document.querySelector('[data-testid=nav-overview]')?.textContent === 'Overview',
        );
        expect((await page.getAttribute('html', 'lang')) === 'en', 'html lang is not en');
        await page.reload();
        await tid(page, 'agency-page').waitFor();
        expect((await tid(page, 'nav-machines').innerText()) === 'Machines', 'English did not persist');
        await tid(page, 'lang-vi').click();
        await page.waitForFunction(
            () => document.querySelector('[data-testid=nav-overview]')?.textContent === 'Tổng quan',
        );
        expect((await tid(page, 'nav-machines').innerText()) === 'Máy trạm', 'Vietnamese did not come back');
    });

    await step('signing out leads back to sign-in, and pages need a session', page, async () => {
        await logout(page);
        await page.goto(BASE + '/machines');
        await tid(page, 'login-form').waitFor();
        expect(page.url().includes('/login'), 'not sent to /login: ' + page.url());
    });

    await step("an officer of agency A sees A's machines but not B's", page, async () => {
        await login(page, OFFICER, OFFICER_PW);
        expect((await tid(page, 'nav-users').count()) === 0, 'an officer is offered the users page');
        await tid(page, 'nav-machines').click();
        await tid(page, 'machines-table').waitFor();
        const hosts = await tid(page, 'machine-link').allInnerTexts();
        expect(hosts.includes(A_HOST), `${A_HOST} is not listed: ${hosts.join(', ')}`);
        expect(!hosts.includes(B_HOST), `${B_HOST} of agency B is listed`);
        await tid(page, 'filter-q').fill(B_HOST);
        await page.waitForFunction(() => !document.querySelector('[data-testid=machines-table]'));
    });

    await step("agency B's machine page is not found for the officer", page, async () => {
        await page.goto(BASE + '/machines/' + encodeURIComponent(B_MACHINE));
        await tid(page, 'not-found').waitFor();
        expect((await page.getByText(B_HOST).count()) === 0, "B's hostname appears on the page");
    });

    await step("the officer reads top-level agency A's policy but is offered no editor", page, async () => {
        await page.goto(BASE + '/agencies/' + encodeURIComponent(AGENCY_A));
        await page.locator('[data-testid=policy-source][data-source=own]').waitFor();
        expect((await tid(page, 'policy-form').count()) === 0, 'the officer is offered the policy editor');
    });

    if (AUDITOR) {
        await step('an auditor reads everything but is offered no action', page, async () => {
            await logout(page);
            await login(page, AUDITOR, AUDITOR_PW);
            expect((await tid(page, 'nav-users').count()) === 0, 'an auditor is offered the users page');
            await page.goto(BASE + '/machines/' + encodeURIComponent(B_MACHINE));
            await tid(page, 'machine-page').waitFor();
            await tid(page, 'tasks').waitFor();
            for (const id of ['task-scan', 'task-update', 'retire', 'move-submit']) {
                expect((await tid(page, id).count()) === 0, `the auditor is offered ${id}`);
            }
            await tid(page, 'detection-row').first().locator('a').first().click();
            await tid(page, 'detection-page').waitFor();
            expect(
                (await page.locator('[data-testid^=status-]').count()) === 0,
                'the auditor is offered workflow buttons',
            );
            await page.goto(BASE + '/agencies/' + encodeURIComponent(AGENCY_A));
            await tid(page, 'enroll-tokens').waitFor();
            expect((await tid(page, 'token-create').count()) === 0, 'the auditor is offered token creation');
            await tid(page, 'policy-source').waitFor();
            expect((await tid(page, 'policy-form').count()) === 0, 'the auditor is offered the policy editor');
        });
    }

    await step('no script errors or CSP refusals on any page', page, async () => {
        expect(problems.length === 0, problems.slice(0, 5).join('\n'));
    });
} finally {
    await browser.close();
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
