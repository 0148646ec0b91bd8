// Pieces several pages share: the agency tree for pickers, and how a
// machine's or a detection's state is shown. The API's list items name their
// agency either as an object {"id","code","name"} or as flat agency_* fields;
// both are read here so that pages need not care.

import { h, str, num, badge } from './dom.js';
import { t } from './i18n.js';
import { api, listOf } from './api.js';

// GET /agencies: the tree in scope, flat, parents first. Adds depth.
export async function loadAgencies() {
    const { items } = listOf(await api.get('/agencies'));
    const byId = new Map(items.map((a) => [String(a.id), a]));
    for (const a of items) {
        let d = 0;
        let p = a.parent_id;
        const seen = new Set();
        while (p !== null && p !== undefined && byId.has(String(p)) && !seen.has(String(p)) && d < 32) {
            seen.add(String(p));
            d++;
            p = byId.get(String(p)).parent_id;
        }
        a.depth = d;
    }
    return orderTree(items);
}

// Parents first is what the API promises; this also puts each child right
// after its parent so that an indented list reads as a tree.
function orderTree(items) {
    const ids = new Set(items.map((a) => String(a.id)));
    const kids = new Map();
    const roots = [];
    for (const a of items) {
        const p = a.parent_id === null || a.parent_id === undefined ? null : String(a.parent_id);
        if (p === null || !ids.has(p)) roots.push(a);
        else {
            if (!kids.has(p)) kids.set(p, []);
            kids.get(p).push(a);
        }
    }
    const out = [];
    const walk = (a, depth) => {
        a.depth = depth;
        out.push(a);
        for (const k of kids.get(String(a.id)) || []) if (depth < 32) walk(k, depth + 1);
    };
    for (const r of roots) walk(r, 0);
    return out;
}

export function agencyOptions(list, allLabel) {
    const opts = allLabel ? [['', allLabel]] : [];
    for (const a of list)
        opts.push([a.id, '\u00a0\u00a0'.repeat(a.depth || 0) + str(a.code) + ' — ' + str(a.name)]);
    return opts;
}

export function agencyOf(x) {
    if (!x) return { id: '', code: '', name: '' };
    if (x.agency && typeof x.agency === 'object')
        return { id: str(x.agency.id), code: str(x.agency.code), name: str(x.agency.name) };
    return { id: str(x.agency_id), code: str(x.agency_code), name: str(x.agency_name) };
}

export function agencyLink(x) {
    const a = agencyOf(x);
    if (!a.id && !a.name) return '—';
    return h(
        'a',
        { href: '/agencies/' + encodeURIComponent(a.id), title: a.code },
        a.name || a.code || '#' + a.id,
    );
}

export function ipsOf(m) {
    const v = m.ips ?? (m.inventory && m.inventory.ips);
    if (Array.isArray(v)) return v.map(str).join(', ');
    return str(v).trim().split(/\s+/).join(', ');
}

export function isOnline(m) {
    if (typeof m.online === 'boolean') return m.online;
    if (m.status) return m.status === 'online';
    return false;
}

export function openDetections(m) {
    return num(m.open_detections ?? m.detections ?? 0);
}

export function machineStatus(m) {
    const out = [];
    if (m.retired) out.push(badge('muted', t('status_retired'), 'machine-status'));
    else if (isOnline(m)) out.push(badge('ok', t('online'), 'machine-status'));
    else out.push(badge('off', t('offline'), 'machine-status'));
    if (!m.retired && openDetections(m) > 0) out.push(' ', badge('bad', t('status_infected')));
    if (!m.retired && (m.outdated || num(m.db_age_days) > 15))
        out.push(' ', badge('warn', t('status_outdated')));
    return h('span', { class: 'badges' }, out);
}

export const DETECTION_STATUSES = ['new', 'acknowledged', 'resolved', 'false_positive'];

export function detectionStatus(s) {
    const kind = { new: 'bad', acknowledged: 'warn', resolved: 'ok', false_positive: 'muted' }[s] || 'muted';
    return badge(kind, t('det_' + s) === 'det_' + s ? str(s) : t('det_' + s), 'detection-status');
}

export function machineOf(d) {
    if (d.machine && typeof d.machine === 'object')
        return { id: str(d.machine.id), hostname: str(d.machine.hostname) };
    return { id: str(d.machine_id), hostname: str(d.hostname ?? d.machine_hostname) };
}

export function machineLink(d, testid) {
    const m = machineOf(d);
    if (!m.id) return '—';
    return h('a', { href: '/machines/' + encodeURIComponent(m.id), testid }, m.hostname || m.id);
}

// The action an agent took on a detected file.
export function actionLabel(a) {
    const key = 'action_' + str(a);
    const s = t(key);
    return s === key ? str(a) : s;
}

// Shows an API error next to a form rather than losing it in a toast.
export function formError() {
    const p = h('p', { class: 'error', role: 'alert', hidden: true, testid: 'form-error' });
    p.show = (e) => {
        p.textContent = e ? (e.field ? e.field + ': ' : '') + (e.message || String(e)) : '';
        p.hidden = !e;
    };
    return p;
}

// A JSON document (or its text) as short "key=value, ..." text for a table
// cell: easier to read than JSON punctuation in a narrow column.
export function kvText(d, max = 300) {
    if (d === undefined || d === null || d === '') return '';
    let v = d;
    if (typeof v === 'string') {
        try {
            v = JSON.parse(v);
        } catch {
            return v.slice(0, max);
        }
    }
    if (v && typeof v === 'object' && !Object.keys(v).length) return '';
    let s;
    if (v && typeof v === 'object' && !Array.isArray(v)) {
        s = Object.entries(v)
            .map(([k, x]) => k + '=' + (x !== null && typeof x === 'object' ? JSON.stringify(x) : str(x)))
            .join(', ');
    } else {
        s = typeof v === 'object' ? JSON.stringify(v) : str(v);
    }
    return s.length > max ? s.slice(0, max) + '…' : s;
}
