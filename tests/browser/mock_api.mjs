// A stand-in for the management server, for working on the dashboard
// without building it: serves web/ with the same headers and fallback as
// server/static.c and answers the JSON API (docs/api/README.md) from memory.
// It is a development aid only; the CTest entry drives the real server.
//
//   node tests/browser/mock_api.mjs [PORT]     # then open http://127.0.0.1:PORT/
//   users: admin / admin-password-1, officer-a / officer-password-1
//
// The data is made up and the checks are shallow: it follows the contract
// closely enough to draw every page, and no further.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web');
const PORT = Number(process.argv[2] || process.env.PORT || 8088);
const CSP =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";
const TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.svg': 'image/svg+xml',
    '.json': 'application/json',
};
const now = () => Math.floor(Date.now() / 1000);
const DAY = 86400;

// Data ------------------------------------------------------------------

const agencies = [
    {
        id: 1,
        parent_id: null,
        code: 'TINH',
        name: 'UBND tỉnh',
        kind: 'province',
        contact: '',
        expected_machines: 10,
    },
    {
        id: 2,
        parent_id: 1,
        code: 'STTTT',
        name: 'Sở Thông tin và Truyền thông',
        kind: 'department',
        contact: 'it@stttt',
        expected_machines: 40,
    },
    {
        id: 3,
        parent_id: 1,
        code: 'STC',
        name: 'Sở Tài chính',
        kind: 'department',
        contact: '',
        expected_machines: 30,
    },
    {
        id: 4,
        parent_id: 2,
        code: 'TTCNTT',
        name: 'Trung tâm CNTT <b>&</b>',
        kind: 'agency',
        contact: '',
        expected_machines: 12,
    },
];
const users = [
    {
        id: 1,
        username: 'admin',
        display_name: 'Quản trị',
        role: 'admin',
        agency_id: null,
        disabled: false,
        password: 'admin-password-1',
        created_at: now() - 90 * DAY,
        last_login: 0,
    },
    {
        id: 2,
        username: 'officer-a',
        display_name: 'Cán bộ A',
        role: 'officer',
        agency_id: 2,
        disabled: false,
        password: 'officer-password-1',
        created_at: now() - 30 * DAY,
        last_login: 0,
    },
];
const machines = [];
const families = [
    'Win.Trojan.Agent',
    'Eicar-Test-Signature',
    'Js.Downloader.Nemucod',
    'Doc.Dropper.Emotet',
    'Unix.Malware.Mirai',
];
let seed = 42;
const rnd = (n) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
};
for (let i = 0; i < 73; i++) {
    const ag = agencies[1 + (i % 3)];
    machines.push({
        id: crypto.randomUUID(),
        agency_id: ag.id,
        hostname: `pc-${ag.code.toLowerCase()}-${String(i).padStart(3, '0')}`,
        os: i % 4 ? 'Windows 10 Pro 22H2' : 'Debian GNU/Linux 12',
        kernel: '6.1.0-26-amd64',
        arch: 'x86_64',
        ips: [`10.${ag.id}.0.${i + 10}`],
        macs: ['52:54:00:12:34:' + (i + 16).toString(16)],
        cpu: 'Intel Core i5',
        cpus: 4,
        mem_bytes: 8589934592,
        agent_version: '0.1.0',
        db_version: 3 - (i % 7 === 0 ? 2 : 0),
        db_time: now() - (i % 7 === 0 ? 20 : 1) * DAY,
        rtp: i % 9 !== 0,
        firewall: true,
        last_full_scan: now() - rnd(10) * DAY,
        enrolled_at: now() - 60 * DAY,
        last_seen: now() - (i % 5 === 0 ? 3 * DAY : rnd(100)),
        retired: i === 72,
    });
}
const detections = [];
for (let i = 0; i < 140; i++) {
    const m = machines[rnd(machines.length)];
    const fam = families[rnd(families.length)];
    const t = now() - rnd(40) * DAY - rnd(DAY);
    detections.push({
        id: i + 1,
        event_id: crypto.randomUUID(),
        machine_id: m.id,
        agency_id: m.agency_id,
        path: i === 3 ? '/tmp/<script>alert(1)</script>.exe' : `C:\\Users\\user\\Downloads\\file${i}.exe`,
        sha256: crypto.createHash('sha256').update(String(i)).digest('hex'),
        md5: crypto.createHash('md5').update(String(i)).digest('hex'),
        size: 1000 + rnd(100000),
        signature: fam + '-' + (1000 + rnd(9000)),
        family: fam,
        action: ['quarantined', 'reported', 'blocked'][rnd(3)],
        detected_at: t,
        received_at: t + 5,
        status: i < 100 ? 'new' : ['acknowledged', 'resolved', 'false_positive'][rnd(3)],
        status_at: t,
        notes: [],
    });
}
detections.sort((a, b) => b.detected_at - a.detected_at);
const tasks = [];
const enrollTokens = [];
// Agent policies by agency id, as sent. The mock fills in only the top-level
// defaults and checks only a few fields; server/policy.c is the real rule.
const policies = new Map();
const POLICY_DEFAULT = {
    rtp: {
        enabled: true,
        paths: ['/'],
        excludes: ['/proc', '/sys', '/dev', '/run'],
        timeout_ms: 5000,
        action: 'quarantine',
    },
    scheduled_scans: [
        {
            name: 'Quét toàn bộ hằng tuần',
            paths: ['/'],
            full: true,
            days: ['sun'],
            time: '02:30',
            excludes: [],
        },
    ],
    scan: { nice: 10, ionice_class: 'idle', max_filesize_mb: 100, archives: true },
    connections: { enabled: true, interval_s: 60 },
    update_interval_s: 3600,
    quarantine_retention_days: 90,
};
function policyView(a) {
    let from = null;
    for (let x = a; x; x = agencyById(x.parent_id))
        if (policies.has(x.id)) {
            from = x.id;
            break;
        }
    const own = policies.get(a.id);
    const doc = from === null ? {} : policies.get(from).policy;
    const effective = JSON.parse(JSON.stringify(POLICY_DEFAULT));
    for (const [k, v] of Object.entries(doc))
        effective[k] = v && typeof v === 'object' && !Array.isArray(v) ? { ...effective[k], ...v } : v;
    const version = crypto.createHash('sha256').update(JSON.stringify(effective)).digest('hex').slice(0, 16);
    return {
        agency_id: a.id,
        policy: own ? own.policy : null,
        effective,
        inherited_from: from,
        policy_version: version,
        updated_at: own ? own.at : null,
        updated_by: own ? own.by : null,
    };
}
const apiTokens = [];
const sources = [
    {
        id: 1,
        kind: 'mirror',
        name: 'ClamAV mirror',
        path: '/var/lib/clamav',
        created_at: now() - 50 * DAY,
        enabled: true,
    },
];
const bundles = [1, 2, 3].map((v) => ({
    version: v,
    sha256: crypto
        .createHash('sha256')
        .update('b' + v)
        .digest('hex'),
    size: 1e6 * v,
    signatures: 100000 * v,
    created_at: now() - (30 - v * 10) * DAY,
}));
const audit = [];
const sessions = new Map();
let nextId = 1000;

// Helpers ---------------------------------------------------------------

const agencyById = (id) => agencies.find((a) => String(a.id) === String(id));
const pathOf = (a) => (a.parent_id ? pathOf(agencyById(a.parent_id)) : '/') + a.id + '/';
function inScope(user, agencyId) {
    if (!user.agency_id) return true;
    const a = agencyById(agencyId);
    return a ? pathOf(a).startsWith(pathOf(agencyById(user.agency_id))) : false;
}
const agencyRef = (id) => {
    const a = agencyById(id);
    return a ? { id: a.id, code: a.code, name: a.name } : null;
};
const online = (m) => !m.retired && now() - m.last_seen < 180;
const openDet = (m) =>
    detections.filter((d) => d.machine_id === m.id && (d.status === 'new' || d.status === 'acknowledged'))
        .length;
function machineJson(m) {
    return {
        id: m.id,
        hostname: m.hostname,
        agency: agencyRef(m.agency_id),
        os: m.os,
        ips: m.ips,
        agent_version: m.agent_version,
        db_version: m.db_version,
        db_time: m.db_time,
        db_age_days: Math.floor((now() - m.db_time) / DAY),
        last_seen: m.last_seen,
        online: online(m),
        retired: !!m.retired,
        open_detections: openDet(m),
        enrolled_at: m.enrolled_at,
    };
}
function detJson(d) {
    const m = machines.find((x) => x.id === d.machine_id);
    const { notes, event_id, ...rest } = d;
    return { ...rest, machine: { id: m.id, hostname: m.hostname }, agency: agencyRef(d.agency_id) };
}
function page(items, q) {
    const p = Math.max(1, Number(q.get('page')) || 1);
    const per = Math.min(500, Math.max(1, Number(q.get('per_page')) || 50));
    return { items: items.slice((p - 1) * per, p * per), total: items.length, page: p, per_page: per };
}
function send(res, status, body, headers = {}) {
    const data = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, {
        'Content-Type': 'application/json; charset=utf-8',
        'Cache-Control': 'no-store',
        ...headers,
    });
    res.end(data);
}
const err = (res, status, code, message) => send(res, status, { error: code, message });
function auditLog(user, action, target, detail, req) {
    audit.unshift({
        id: audit.length + 1,
        at: now(),
        username: user ? user.username : '',
        remote: req.socket.remoteAddress,
        action,
        target,
        detail: detail || {},
    });
}

// Static files ------------------------------------------------------------

function serveStatic(req, res, url) {
    let p = url.pathname;
    if (p === '/' || !path.basename(p).includes('.')) p = '/index.html';
    const file = path.join(WEB, path.normalize(p));
    const sec = {
        'Content-Security-Policy': CSP,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
    };
    if (!file.startsWith(WEB) || !fs.existsSync(file) || !fs.statSync(file).isFile())
        return send(res, 404, { error: 'not_found', message: 'no such file' }, sec);
    res.writeHead(200, {
        'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
        'Cache-Control': 'no-cache',
        ...sec,
    });
    res.end(fs.readFileSync(file));
}

// API ---------------------------------------------------------------------

async function readBody(req) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const buf = Buffer.concat(chunks);
    return buf;
}

async function handle(req, res) {
    const url = new URL(req.url, 'http://x');
    if (!url.pathname.startsWith('/api/')) return serveStatic(req, res, url);
    const p = url.pathname.slice('/api/v1'.length);
    const q = url.searchParams;
    const raw = await readBody(req);
    let body = {};
    if (raw.length && (req.headers['content-type'] || '').includes('json')) {
        try {
            body = JSON.parse(raw.toString('utf8'));
        } catch {
            return err(res, 400, 'bad_request', 'malformed JSON');
        }
    }
    const M = req.method;
    if (M === 'GET' && p === '/health')
        return send(res, 200, { status: 'ok', version: '0.1.0', schema: 1, backend: 'mock' });
    if (M === 'POST' && p === '/login') {
        const u = users.find(
            (x) => x.username === body.username && x.password === body.password && !x.disabled,
        );
        if (!u) return err(res, 401, 'unauthorized', 'bad credentials');
        const sid = crypto.randomBytes(16).toString('hex');
        const csrf = crypto.randomBytes(16).toString('hex');
        sessions.set(sid, { user: u, csrf });
        u.last_login = now();
        auditLog(u, 'login', 'user:' + u.id, null, req);
        return send(
            res,
            200,
            { user: meJson(u), csrf },
            { 'Set-Cookie': `khien_session=${sid}; HttpOnly; SameSite=Strict; Path=/` },
        );
    }
    const sid = /(?:^|;\s*)khien_session=([0-9a-f]+)/.exec(req.headers.cookie || '');
    const s = sid && sessions.get(sid[1]);
    if (!s) return err(res, 401, 'unauthorized', 'sign in first');
    const me = s.user;
    if (M !== 'GET' && req.headers['x-csrf-token'] !== s.csrf)
        return err(res, 403, 'csrf', 'missing or wrong CSRF token');
    const write = M !== 'GET';
    if (write && me.role === 'auditor') return err(res, 403, 'forbidden', 'read-only role');
    const admin = () => me.role === 'admin';
    let m;

    if (M === 'POST' && p === '/logout') {
        sessions.delete(sid[1]);
        return send(res, 200, { ok: true });
    }
    if (M === 'GET' && p === '/me') return send(res, 200, { ...meJson(me), csrf: s.csrf });
    if (M === 'POST' && p === '/me/password') {
        if (body.old !== me.password) return err(res, 403, 'forbidden', 'wrong password');
        if (String(body.new || '').length < 10)
            return send(res, 400, { error: 'field', field: 'new', message: 'at least 10 characters' });
        me.password = body.new;
        return send(res, 200, { ok: true });
    }
    if (M === 'GET' && p === '/overview') return send(res, 200, overview(me));
    if (M === 'GET' && p === '/agencies') {
        return send(res, 200, {
            items: agencies
                .filter((a) => inScope(me, a.id))
                .map((a) => {
                    const ms = machines.filter((x) => x.agency_id === a.id && !x.retired);
                    return {
                        ...a,
                        machines: ms.length,
                        online: ms.filter(online).length,
                        infected: ms.filter((x) => openDet(x) > 0).length,
                    };
                }),
        });
    }
    if (M === 'POST' && p === '/agencies') {
        if (!admin()) return err(res, 403, 'forbidden', 'administrators only');
        if (!body.code || !body.name)
            return send(res, 400, {
                error: 'field',
                field: body.code ? 'name' : 'code',
                message: 'required',
            });
        if (agencies.some((a) => a.code === body.code)) return err(res, 409, 'conflict', 'code already used');
        const a = {
            id: ++nextId,
            parent_id: body.parent_id || null,
            code: body.code,
            name: body.name,
            kind: body.kind || 'agency',
            contact: body.contact || '',
            expected_machines: body.expected_machines || 0,
        };
        agencies.push(a);
        auditLog(me, 'agency.create', 'agency:' + a.id, { code: a.code }, req);
        return send(res, 201, a);
    }
    if ((m = /^\/agencies\/(\d+)$/.exec(p)) && M === 'PATCH') {
        const a = agencyById(m[1]);
        if (!a || !admin()) return err(res, 404, 'not_found', 'no such agency');
        Object.assign(a, body);
        return send(res, 200, a);
    }
    if ((m = /^\/agencies\/(\d+)\/enroll-tokens$/.exec(p))) {
        const a = agencyById(m[1]);
        if (!a || !inScope(me, a.id)) return err(res, 404, 'not_found', 'no such agency');
        if (M === 'GET')
            return send(
                res,
                200,
                page(
                    enrollTokens.filter((k) => k.agency_id === a.id),
                    q,
                ),
            );
        const token = 'khe_' + crypto.randomBytes(24).toString('hex');
        const k = {
            id: ++nextId,
            agency_id: a.id,
            prefix: token.slice(0, 10),
            note: body.note || '',
            expires_at: now() + (body.expires_in || 7 * DAY),
            max_uses: body.max_uses || 0,
            uses: 0,
            revoked: false,
            created_at: now(),
        };
        enrollTokens.unshift(k);
        return send(res, 201, {
            id: k.id,
            token,
            command: `khien-agent enroll --server https://${req.headers.host} --token ${token}`,
        });
    }
    if ((m = /^\/agencies\/(\d+)\/policy$/.exec(p))) {
        const a = agencyById(m[1]);
        if (!a || !inScope(me, a.id)) return err(res, 404, 'not_found', 'no such agency');
        if (M === 'GET') return send(res, 200, policyView(a));
        if (write && !a.parent_id && !admin())
            return err(res, 403, 'forbidden', 'only a province administrator may set this policy');
        if (M === 'DELETE') {
            policies.delete(a.id);
            return send(res, 200, policyView(a));
        }
        const paths = (body.rtp && body.rtp.paths) || [];
        const bad = paths.findIndex((x) => typeof x !== 'string' || !x.startsWith('/'));
        if (bad >= 0)
            return send(res, 400, {
                error: 'field',
                field: `rtp.paths[${bad}]`,
                message: `field 'rtp.paths[${bad}]': must be an absolute path (starting with /)`,
            });
        policies.set(a.id, { policy: body, at: now(), by: me.username });
        auditLog(me, 'agency.policy.set', 'agency:' + a.id, { policy: body }, req);
        return send(res, 200, policyView(a));
    }
    if ((m = /^\/enroll-tokens\/(\d+)$/.exec(p)) && M === 'DELETE') {
        const k = enrollTokens.find((x) => String(x.id) === m[1]);
        if (!k || !inScope(me, k.agency_id)) return err(res, 404, 'not_found', 'no such token');
        k.revoked = true;
        return send(res, 200, { ok: true });
    }
    if (M === 'GET' && p === '/machines') {
        let list = machines.filter((x) => inScope(me, x.agency_id));
        const text = (q.get('q') || '').toLowerCase();
        if (text)
            list = list.filter(
                (x) => x.hostname.includes(text) || x.id.includes(text) || x.ips.join(' ').includes(text),
            );
        if (q.get('agency'))
            list = list.filter((x) => inScope({ agency_id: Number(q.get('agency')) }, x.agency_id));
        const st = q.get('status');
        if (st === 'retired') list = list.filter((x) => x.retired);
        else {
            list = list.filter((x) => !x.retired);
            if (st === 'online') list = list.filter(online);
            if (st === 'offline') list = list.filter((x) => !online(x));
            if (st === 'infected') list = list.filter((x) => openDet(x) > 0);
            if (st === 'outdated') list = list.filter((x) => now() - x.db_time > 15 * DAY);
        }
        const key =
            {
                hostname: (x) => x.hostname,
                last_seen: (x) => x.last_seen,
                agency: (x) => agencyById(x.agency_id).name,
                db_version: (x) => x.db_version,
                detections: openDet,
            }[q.get('sort') || 'hostname'] || ((x) => x.hostname);
        list.sort(
            (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (q.get('order') === 'desc' ? -1 : 1),
        );
        const pg = page(list, q);
        return send(res, 200, { ...pg, items: pg.items.map(machineJson) });
    }
    if ((m = /^\/machines\/([0-9a-f-]+)(\/tasks|\/move|\/retire)?$/.exec(p))) {
        const x = machines.find((y) => y.id === m[1]);
        if (!x || !inScope(me, x.agency_id)) return err(res, 404, 'not_found', 'no such machine');
        if (!m[2] && M === 'GET')
            return send(res, 200, {
                ...machineJson(x),
                inventory: {
                    hostname: x.hostname,
                    os: x.os,
                    kernel: x.kernel,
                    arch: x.arch,
                    ips: x.ips,
                    macs: x.macs,
                    cpu: x.cpu,
                    cpus: x.cpus,
                    mem_bytes: x.mem_bytes,
                    agent_version: x.agent_version,
                    db_version: x.db_version,
                    db_time: x.db_time,
                    rtp: x.rtp,
                    firewall: x.firewall,
                    last_full_scan: x.last_full_scan,
                },
            });
        if (m[2] === '/tasks' && M === 'GET')
            return send(
                res,
                200,
                page(
                    tasks.filter((k) => k.machine_id === x.id),
                    q,
                ),
            );
        if (m[2] === '/tasks' && M === 'POST') {
            if (!['scan', 'update', 'quarantine_restore', 'quarantine_delete'].includes(body.kind))
                return send(res, 400, { error: 'field', field: 'kind', message: 'unknown kind' });
            const k = {
                id: ++nextId,
                machine_id: x.id,
                kind: body.kind,
                args: body.args || {},
                state: 'pending',
                progress: 0,
                created_at: now(),
                done_at: null,
                result: '',
            };
            tasks.unshift(k);
            return send(res, 201, k);
        }
        if (m[2] === '/move' && M === 'POST') {
            if (!inScope(me, body.agency_id) || !agencyById(body.agency_id))
                return err(res, 404, 'not_found', 'no such agency');
            x.agency_id = Number(body.agency_id);
            return send(res, 200, { ok: true });
        }
        if (m[2] === '/retire' && M === 'POST') {
            x.retired = true;
            return send(res, 200, { ok: true });
        }
    }
    if (M === 'GET' && p === '/detections') {
        let list = detections.filter((d) => inScope(me, d.agency_id));
        for (const k of ['status', 'family']) if (q.get(k)) list = list.filter((d) => d[k] === q.get(k));
        if (q.get('machine')) list = list.filter((d) => d.machine_id === q.get('machine'));
        if (q.get('agency'))
            list = list.filter((d) => inScope({ agency_id: Number(q.get('agency')) }, d.agency_id));
        if (q.get('q'))
            list = list.filter((d) =>
                (d.signature + d.path + d.sha256).toLowerCase().includes(q.get('q').toLowerCase()),
            );
        if (q.get('from')) list = list.filter((d) => d.detected_at >= Number(q.get('from')));
        if (q.get('to')) list = list.filter((d) => d.detected_at <= Number(q.get('to')));
        const pg = page(list, q);
        return send(res, 200, { ...pg, items: pg.items.map(detJson) });
    }
    if ((m = /^\/detections\/(\d+)(\/status)?$/.exec(p))) {
        const d = detections.find((x) => String(x.id) === m[1]);
        if (!d || !inScope(me, d.agency_id)) return err(res, 404, 'not_found', 'no such detection');
        if (!m[2]) return send(res, 200, { ...detJson(d), notes: d.notes });
        d.notes.push({
            at: now(),
            username: me.username,
            status_from: d.status,
            status_to: body.status,
            note: body.note || '',
        });
        d.status = body.status;
        d.status_at = now();
        return send(res, 200, { ok: true });
    }
    if (p === '/signatures/sources' && M === 'GET') return send(res, 200, { items: sources });
    if (p === '/signatures/sources' && M === 'POST') {
        if (!admin()) return err(res, 403, 'forbidden', 'administrators only');
        sources.push({
            id: ++nextId,
            kind: body.kind,
            name: body.name,
            path: body.path,
            created_at: now(),
            enabled: true,
        });
        return send(res, 201, { id: nextId });
    }
    if (p === '/signatures/sources/upload' && M === 'PUT') {
        if (!admin()) return err(res, 403, 'forbidden', 'administrators only');
        sources.push({
            id: ++nextId,
            kind: q.get('kind'),
            name: q.get('name'),
            path: '',
            size: raw.length,
            created_at: now(),
            enabled: true,
        });
        return send(res, 201, { id: nextId });
    }
    if ((m = /^\/signatures\/sources\/(\d+)$/.exec(p)) && M === 'DELETE') {
        const i = sources.findIndex((x) => String(x.id) === m[1]);
        if (i < 0) return err(res, 404, 'not_found', 'no such source');
        sources.splice(i, 1);
        return send(res, 200, { ok: true });
    }
    if (p === '/signatures/publish' && M === 'POST') {
        const v = {
            version: bundles.length + 1,
            sha256: crypto.randomBytes(32).toString('hex'),
            size: 3456789,
            signatures: 345678,
            created_at: now(),
        };
        bundles.push(v);
        return send(res, 200, v);
    }
    if (p === '/signatures/versions' && M === 'GET') {
        const counts = new Map();
        for (const x of machines)
            if (!x.retired) counts.set(x.db_version, (counts.get(x.db_version) || 0) + 1);
        return send(res, 200, {
            items: [...bundles].reverse().map((b) => ({ ...b, machines: counts.get(b.version) || 0 })),
            machines_by_version: [...counts].map(([version, n]) => ({ version, machines: n })),
        });
    }
    if (p === '/users') {
        if (!admin()) return err(res, 403, 'forbidden', 'administrators only');
        if (M === 'GET')
            return send(
                res,
                200,
                page(
                    users.map(({ password, ...u }) => ({ ...u, agency: agencyRef(u.agency_id) })),
                    q,
                ),
            );
        if (users.some((u) => u.username === body.username))
            return err(res, 409, 'conflict', 'username taken');
        const u = {
            id: ++nextId,
            username: body.username,
            display_name: body.display_name || '',
            role: body.role,
            agency_id: body.agency_id || null,
            disabled: false,
            password: body.password,
            created_at: now(),
            last_login: 0,
        };
        users.push(u);
        return send(res, 201, { id: u.id });
    }
    if ((m = /^\/users\/(\d+)$/.exec(p)) && M === 'PATCH') {
        const u = users.find((x) => String(x.id) === m[1]);
        if (!u || !admin()) return err(res, 404, 'not_found', 'no such user');
        Object.assign(u, body);
        return send(res, 200, { ok: true });
    }
    if (p === '/tokens') {
        if (M === 'GET') return send(res, 200, { items: apiTokens.filter((k) => k.user_id === me.id) });
        const token = 'kht_' + crypto.randomBytes(32).toString('hex');
        const k = {
            id: ++nextId,
            user_id: me.id,
            name: body.name,
            prefix: token.slice(0, 10),
            created_at: now(),
            last_used: null,
            revoked: false,
        };
        apiTokens.unshift(k);
        return send(res, 201, { id: k.id, token });
    }
    if ((m = /^\/tokens\/(\d+)$/.exec(p)) && M === 'DELETE') {
        const k = apiTokens.find((x) => String(x.id) === m[1] && x.user_id === me.id);
        if (!k) return err(res, 404, 'not_found', 'no such token');
        k.revoked = true;
        return send(res, 200, { ok: true });
    }
    if (p === '/audit' && M === 'GET') {
        let list = audit;
        if (q.get('q')) list = list.filter((a) => (a.username + a.target).includes(q.get('q')));
        if (q.get('action')) list = list.filter((a) => a.action.startsWith(q.get('action')));
        return send(res, 200, page(list, q));
    }
    return err(res, 404, 'not_found', 'no such resource');
}

function meJson(u) {
    return {
        id: u.id,
        username: u.username,
        display_name: u.display_name,
        role: u.role,
        agency: u.agency_id ? agencyRef(u.agency_id) : null,
    };
}

function overview(me) {
    const ms = machines.filter((x) => inScope(me, x.agency_id));
    const live = ms.filter((x) => !x.retired);
    const ds = detections.filter((d) => inScope(me, d.agency_id));
    const byDay = new Map();
    for (const d of ds) {
        const day = new Date(d.detected_at * 1000).toISOString().slice(0, 10);
        byDay.set(day, (byDay.get(day) || 0) + 1);
    }
    const fam = new Map();
    for (const d of ds) fam.set(d.family, (fam.get(d.family) || 0) + 1);
    const ags = agencies.filter((a) => inScope(me, a.id));
    return {
        machines: {
            enrolled: live.length,
            expected: ags.reduce((s, a) => s + a.expected_machines, 0),
            online: live.filter(online).length,
            offline: live.filter((x) => !online(x)).length,
            outdated: live.filter((x) => now() - x.db_time > 15 * DAY).length,
            retired: ms.length - live.length,
        },
        coverage: ags.map((a) => ({
            agency_id: a.id,
            code: a.code,
            name: a.name,
            enrolled: live.filter((x) => x.agency_id === a.id).length,
            expected: a.expected_machines,
        })),
        db: {
            latest_version: bundles.length,
            latest_at: bundles[bundles.length - 1].created_at,
            outdated_machines: live.filter((x) => now() - x.db_time > 15 * DAY).length,
            outdated_days: 15,
        },
        detections: {
            open: ds.filter((d) => d.status === 'new' || d.status === 'acknowledged').length,
            last_24h: ds.filter((d) => now() - d.detected_at < DAY).length,
            by_day: [...byDay].sort().map(([day, count]) => ({ day, count })),
        },
        top_families: [...fam]
            .sort((a, b) => b[1] - a[1])
            .slice(0, 10)
            .map(([family, count]) => ({ family, count })),
        top_agencies: ags
            .map((a) => ({
                agency_id: a.id,
                code: a.code,
                name: a.name,
                detections: ds.filter((d) => d.agency_id === a.id).length,
                infected_machines: live.filter((x) => x.agency_id === a.id && openDet(x) > 0).length,
            }))
            .filter((a) => a.detections)
            .sort((a, b) => b.detections - a.detections)
            .slice(0, 10),
    };
}

http.createServer((req, res) => handle(req, res).catch((e) => err(res, 500, 'internal', String(e)))).listen(
    PORT,
    '127.0.0.1',
    () => {
        console.log(`mock Khiên API and dashboard on http://127.0.0.1:${PORT}/`);
    },
);
