// The dashboard's entry point: the page shell (sidebar, top bar, language
// switch), the route table and the session check. Each page is a module in
// pages/ exporting render(el, ctx); it fills `el` from the API and may
// register a cleanup for when the user leaves it.

import { h, clear } from './dom.js';
import { t, lang, setLang, LANGS } from './i18n.js';
import { api, setCsrf, whenUnauthorized, ApiError } from './api.js';
import { session, isAdmin, role } from './session.js';
import { startRouter, onNavigate, navigate, match } from './router.js';
import * as login from './pages/login.js';
import * as overview from './pages/overview.js';
import * as machines from './pages/machines.js';
import * as machine from './pages/machine.js';
import * as detections from './pages/detections.js';
import * as detection from './pages/detection.js';
import * as agencies from './pages/agencies.js';
import * as agency from './pages/agency.js';
import * as signatures from './pages/signatures.js';
import * as users from './pages/users.js';
import * as audit from './pages/audit.js';
import * as account from './pages/account.js';
import * as c2 from './pages/c2.js';
import * as infection from './pages/infection.js';
import * as reports from './pages/reports.js';
import * as sharing from './pages/sharing.js';
import * as provinces from './pages/provinces.js';

const routes = [
    { path: '/login', page: login, public: true },
    { path: '/', page: overview },
    { path: '/machines', page: machines },
    { path: '/machines/:id', page: machine },
    { path: '/detections', page: detections },
    { path: '/detections/:id', page: detection },
    { path: '/c2', page: c2 },
    { path: '/infection', page: infection },
    { path: '/reports', page: reports },
    { path: '/sharing', page: sharing },
    { path: '/provinces', page: provinces },
    { path: '/agencies', page: agencies },
    { path: '/agencies/:id', page: agency },
    { path: '/signatures', page: signatures },
    { path: '/users', page: users, admin: true },
    { path: '/audit', page: audit },
    { path: '/account', page: account },
];

const nav = [
    { path: '/', key: 'nav_overview' },
    { path: '/machines', key: 'nav_machines' },
    { path: '/detections', key: 'nav_detections' },
    { path: '/c2', key: 'nav_c2' },
    { path: '/infection', key: 'nav_infection' },
    { path: '/reports', key: 'nav_reports' },
    { path: '/sharing', key: 'nav_sharing', roles: ['admin', 'auditor'] },
    { path: '/provinces', key: 'nav_provinces', roles: ['admin', 'auditor'] },
    { path: '/agencies', key: 'nav_agencies' },
    { path: '/signatures', key: 'nav_signatures' },
    { path: '/users', key: 'nav_users', admin: true },
    { path: '/audit', key: 'nav_audit' },
    { path: '/account', key: 'nav_account' },
];

const app = document.getElementById('app');
let cleanups = [];
let renderSeq = 0;

function leavePage() {
    for (const fn of cleanups) {
        try {
            fn();
        } catch {
            /* a page's cleanup must not stop the next page */
        }
    }
    cleanups = [];
}

export function notFound() {
    return h(
        'div',
        { class: 'not-found', testid: 'not-found' },
        h('h1', null, t('not_found_title')),
        h('p', null, t('not_found_text')),
        h('a', { href: '/', class: 'btn' }, t('back_home')),
    );
}

function langSwitch() {
    return h(
        'div',
        { class: 'lang-switch', role: 'group', 'aria-label': t('language') },
        LANGS.map((l) =>
            h(
                'button',
                {
                    type: 'button',
                    class: ['lang', l === lang() ? 'active' : ''],
                    testid: 'lang-' + l,
                    'aria-pressed': l === lang() ? 'true' : 'false',
                    onclick: () => {
                        if (l !== lang()) {
                            setLang(l);
                            render();
                        }
                    },
                },
                l.toUpperCase(),
            ),
        ),
    );
}

async function logout() {
    try {
        await api.post('/logout');
    } catch {
        /* the session may already be gone; either way we leave */
    }
    setCsrf('');
    session.me = null;
    navigate('/login', { replace: true });
}

function shell(path, content, titleEl) {
    const me = session.me;
    const links = nav
        .filter((n) => (!n.admin || isAdmin()) && (!n.roles || n.roles.includes(role())))
        .map((n) => {
            const active = n.path === '/' ? path === '/' : path === n.path || path.startsWith(n.path + '/');
            return h(
                'a',
                {
                    href: n.path,
                    class: ['nav-link', active ? 'active' : ''],
                    testid: n.path === '/' ? 'nav-overview' : 'nav-' + n.path.slice(1),
                    'aria-current': active ? 'page' : null,
                },
                t(n.key),
            );
        });
    const agencyName = me.agency ? me.agency.name || me.agency.code : t('whole_province');
    return h(
        'div',
        { class: 'shell' },
        h(
            'aside',
            { class: 'sidebar' },
            h(
                'a',
                { href: '/', class: 'brand' },
                h('img', { src: '/favicon.svg', alt: '', width: 28, height: 28 }),
                h('span', null, 'Khiên'),
            ),
            h('nav', { 'aria-label': t('menu') }, links),
            h('div', { class: 'sidebar-foot' }, t('tagline')),
        ),
        h(
            'div',
            { class: 'main' },
            h(
                'header',
                { class: 'topbar' },
                titleEl,
                h(
                    'div',
                    { class: 'topbar-right' },
                    langSwitch(),
                    h(
                        'span',
                        { class: 'user', testid: 'current-user' },
                        h('strong', null, me.display_name || me.username),
                        ' · ',
                        h('span', { testid: 'current-role' }, t('role_' + role())),
                        ' · ',
                        agencyName,
                    ),
                    h(
                        'button',
                        {
                            type: 'button',
                            class: 'btn btn-ghost btn-small',
                            testid: 'logout',
                            onclick: logout,
                        },
                        t('logout'),
                    ),
                ),
            ),
            deadlineBanner(),
            h('main', { class: 'content', id: 'content' }, content),
        ),
    );
}

// The quarterly report's reminder, on every page from reminder_day of the
// quarter's last month until the report exists (GET /reports/deadline,
// asked once per page load of the shell and kept for five minutes).
let deadlineCache = null;
function deadlineBanner() {
    const box = h('div', { class: 'banner-slot' });
    const show = (d) => {
        if (!d || !(d.remind || d.overdue)) return;
        const text = d.overdue
            ? t('report_overdue', { quarter: d.quarter, date: new Date(d.deadline * 1000).toLocaleDateString() })
            : t('report_due', {
                  quarter: d.quarter,
                  date: new Date(d.deadline * 1000).toLocaleDateString(),
                  n: d.days_left,
              });
        box.appendChild(
            h('a', { href: '/reports', class: ['banner', d.overdue ? 'banner-danger' : ''], testid: 'deadline-banner' }, text),
        );
    };
    if (deadlineCache && Date.now() - deadlineCache.at < 300000) show(deadlineCache.data);
    else
        api.get('/reports/deadline')
            .then((data) => {
                deadlineCache = { at: Date.now(), data };
                show(data);
            })
            .catch(() => {});
    return box;
}

async function ensureSession() {
    if (session.me) return true;
    try {
        const me = await api.me();
        session.me = me;
        if (me && me.csrf) setCsrf(me.csrf);
        return true;
    } catch (e) {
        if (e instanceof ApiError && e.status === 401) return false;
        throw e;
    }
}

function goLogin() {
    const here = location.pathname + location.search;
    const next = here.startsWith('/login') ? '' : '?next=' + encodeURIComponent(here);
    navigate('/login' + next, { replace: true });
}

export async function render() {
    const seq = ++renderSeq;
    leavePage();
    const path = location.pathname;
    document.documentElement.lang = lang();
    let route = null;
    let params = null;
    for (const r of routes) {
        params = match(r.path, path);
        if (params) {
            route = r;
            break;
        }
    }

    if (route && route.public) {
        const el = h('div', { class: 'public' });
        clear(app).appendChild(el);
        document.title = t('login_title') + ' · Khiên';
        await route.page.render(el, {
            params,
            query: new URLSearchParams(location.search),
            langSwitch,
            cleanup: (fn) => cleanups.push(fn),
        });
        return;
    }

    let ok;
    try {
        ok = await ensureSession();
    } catch (e) {
        clear(app).appendChild(
            h(
                'div',
                { class: 'public' },
                h('p', { class: 'error', testid: 'fatal-error' }, t('server_unreachable'), ' ', e.message),
            ),
        );
        return;
    }
    if (seq !== renderSeq) return;
    if (!ok) {
        goLogin();
        return;
    }

    const content = h('div', { class: 'page' });
    const titleEl = h('h1', { class: 'page-title', testid: 'page-title' });
    const setTitle = (text) => {
        titleEl.textContent = text;
        document.title = text + ' · Khiên';
    };
    clear(app).appendChild(shell(path, content, titleEl));
    if (!route || (route.admin && !isAdmin())) {
        setTitle(t('not_found_title'));
        content.appendChild(notFound());
        return;
    }
    const ctx = {
        params,
        query: new URLSearchParams(location.search),
        setTitle,
        cleanup: (fn) => cleanups.push(fn),
        alive: () => seq === renderSeq,
    };
    try {
        await route.page.render(content, ctx);
    } catch (e) {
        if (seq !== renderSeq) return;
        if (e instanceof ApiError && e.status === 401) return;
        clear(content);
        if (e instanceof ApiError && e.status === 404) {
            setTitle(t('not_found_title'));
            content.appendChild(notFound());
        } else {
            content.appendChild(
                h('p', { class: 'error', testid: 'page-error' }, t('load_failed'), ' ', e.message),
            );
        }
    }
}

whenUnauthorized(() => {
    session.me = null;
    if (!location.pathname.startsWith('/login')) goLogin();
});
onNavigate(render);
startRouter();
render();
