// One machine: what its last check-in said (inventory), its detections, the
// tasks sent to it ("Scan now", "Update now"), and for officers and
// administrators moving it to another agency or retiring it. A machine
// outside the caller's scope is a 404 from the server, shown as not found.

import {
    h,
    str,
    num,
    fmtAgo,
    fmtTime,
    fmtBytes,
    fmtNumber,
    dl,
    section,
    select,
    badge,
    empty,
    toast,
    confirmAction,
    clear,
} from '../dom.js';
import { t } from '../i18n.js';
import { api, listOf } from '../api.js';
import { listView } from '../list.js';
import { canAct } from '../session.js';
import { reload } from '../router.js';
import {
    kvText,
    loadAgencies,
    agencyOptions,
    agencyLink,
    agencyOf,
    ipsOf,
    machineStatus,
    detectionStatus,
    actionLabel,
} from '../common.js';

function yesNo(v) {
    if (v === undefined || v === null) return '—';
    return v ? badge('ok', t('on')) : badge('bad', t('off'));
}

function inventory(m) {
    const inv = m.inventory && typeof m.inventory === 'object' ? m.inventory : {};
    const pick = (k) => m[k] ?? inv[k];
    const macs = pick('macs');
    const age = m.db_age_days;
    return dl([
        [t('machine_id'), h('span', { class: 'mono' }, str(m.id)), 'machine-id'],
        [t('hostname'), str(pick('hostname')), 'machine-hostname'],
        [t('agency'), agencyLink(m), 'machine-agency'],
        [t('os'), str(pick('os'))],
        [t('kernel'), str(pick('kernel'))],
        [t('arch'), str(pick('arch'))],
        [t('ip'), h('span', { class: 'mono' }, ipsOf(m))],
        [t('mac'), h('span', { class: 'mono' }, Array.isArray(macs) ? macs.map(str).join(', ') : str(macs))],
        [t('cpu'), [str(pick('cpu')), pick('cpus') ? ` (${fmtNumber(pick('cpus'))})` : '']],
        [t('memory'), pick('mem_bytes') ? fmtBytes(pick('mem_bytes')) : ''],
        [t('agent_version'), str(pick('agent_version'))],
        [
            t('db_version'),
            pick('db_version')
                ? [
                      '#' + fmtNumber(pick('db_version')),
                      pick('db_time') ? ` (${fmtTime(pick('db_time'))})` : '',
                      age !== undefined && age !== null
                          ? [
                                ' · ',
                                num(age) > 15
                                    ? badge('warn', t('days_old', { n: fmtNumber(age) }))
                                    : t('days_old', { n: fmtNumber(age) }),
                            ]
                          : '',
                  ]
                : t('none'),
        ],
        [t('rtp'), yesNo(pick('rtp'))],
        [t('firewall'), yesNo(pick('firewall'))],
        [t('last_full_scan'), pick('last_full_scan') ? fmtTime(pick('last_full_scan')) : t('never')],
        [t('enrolled_at'), fmtTime(m.enrolled_at)],
        [t('last_seen'), m.last_seen ? [fmtTime(m.last_seen), ' (', fmtAgo(m.last_seen), ')'] : t('never')],
    ]);
}

function taskState(s) {
    const kind =
        { pending: 'muted', sent: 'warn', running: 'warn', done: 'ok', failed: 'bad', cancelled: 'muted' }[
            s
        ] || 'muted';
    const key = 'task_' + str(s);
    return badge(kind, t(key) === key ? str(s) : t(key));
}

function taskResult(r) {
    if (r && typeof r === 'object' && r.message) return str(r.message).slice(0, 200);
    return kvText(r, 200) || '—';
}

// "Scan", "Full scan", "Update", with the paths of a scan of chosen folders.
function taskLabel(k) {
    const args = k.args && typeof k.args === 'object' ? k.args : {};
    if (k.kind === 'scan' && args.full) return t('full_scan');
    const key = 'taskkind_' + str(k.kind);
    const label = t(key) === key ? str(k.kind) : t(key);
    return Array.isArray(args.paths) && args.paths.length
        ? label + ': ' + args.paths.map(str).join(', ')
        : label;
}

function tasksPanel(id, m) {
    const box = h('div', { testid: 'tasks' });
    async function load() {
        let data;
        try {
            data = listOf(await api.get('/machines/' + encodeURIComponent(id) + '/tasks', { per_page: 20 }));
        } catch (e) {
            clear(box).appendChild(h('p', { class: 'error' }, e.message));
            return;
        }
        clear(box);
        if (!data.items.length) {
            box.appendChild(empty(t('no_tasks')));
            return;
        }
        box.appendChild(
            h(
                'table',
                { class: 'table compact', testid: 'tasks-table' },
                h(
                    'thead',
                    null,
                    h(
                        'tr',
                        null,
                        [
                            t('task'),
                            t('state'),
                            t('progress'),
                            t('requested_by'),
                            t('created'),
                            t('finished'),
                            t('result'),
                        ].map((c) => h('th', null, c)),
                    ),
                ),
                h(
                    'tbody',
                    null,
                    data.items.map((k) =>
                        h(
                            'tr',
                            { testid: 'task-row', 'data-kind': str(k.kind) },
                            h('td', { class: 'nowrap' }, taskLabel(k)),
                            h('td', null, taskState(k.state)),
                            h(
                                'td',
                                { class: 'num' },
                                k.progress !== undefined && k.progress !== null
                                    ? fmtNumber(k.progress) + '%'
                                    : '—',
                            ),
                            h('td', { class: 'nowrap' }, k.created_by ? str(k.created_by) : '—'),
                            h('td', { class: 'nowrap' }, fmtTime(k.created_at)),
                            h('td', { class: 'nowrap' }, fmtTime(k.done_at)),
                            h('td', { class: 'wrap' }, taskResult(k.result)),
                        ),
                    ),
                ),
            ),
        );
    }
    const buttons = [];
    if (canAct() && !m.retired) {
        const full = h('input', { type: 'checkbox', testid: 'task-scan-full' });
        const create = (kind) => async (e) => {
            const btn = e.currentTarget;
            btn.disabled = true;
            try {
                const args = kind === 'scan' && full.checked ? { full: true } : {};
                await api.post('/machines/' + encodeURIComponent(id) + '/tasks', { kind, args });
                toast(t(kind === 'scan' ? 'scan_queued' : 'update_queued'));
                await load();
            } catch (err) {
                toast(err.message, 'error');
            } finally {
                btn.disabled = false;
            }
        };
        buttons.push(
            h(
                'div',
                { class: 'actions' },
                h(
                    'button',
                    {
                        type: 'button',
                        class: 'btn btn-primary',
                        testid: 'task-scan',
                        onclick: create('scan'),
                    },
                    t('scan_now'),
                ),
                h('label', { class: 'check' }, full, ' ', t('full_scan')),
                h(
                    'button',
                    { type: 'button', class: 'btn', testid: 'task-update', onclick: create('update') },
                    t('update_now'),
                ),
                h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => load() }, t('refresh')),
            ),
        );
    }
    load();
    return section(t('tasks'), buttons, box);
}

function manage(id, m, agencies) {
    if (!canAct() || m.retired) return null;
    const current = agencyOf(m).id;
    const pick = select(agencyOptions(agencies), current, { testid: 'move-agency' });
    const move = h(
        'button',
        {
            type: 'button',
            class: 'btn',
            testid: 'move-submit',
            onclick: async () => {
                if (String(pick.value) === String(current)) return;
                try {
                    await api.post('/machines/' + encodeURIComponent(id) + '/move', {
                        agency_id: Number(pick.value),
                    });
                    toast(t('moved'));
                    reload();
                } catch (e) {
                    toast(e.message, 'error');
                }
            },
        },
        t('move'),
    );
    const retire = h(
        'button',
        {
            type: 'button',
            class: 'btn btn-danger',
            testid: 'retire',
            onclick: async () => {
                if (
                    !(await confirmAction(
                        t('retire_title'),
                        t('retire_text', { host: str(m.hostname) }),
                        t('retire'),
                        true,
                    ))
                )
                    return;
                try {
                    await api.post('/machines/' + encodeURIComponent(id) + '/retire');
                    toast(t('retired_done'));
                    reload();
                } catch (e) {
                    toast(e.message, 'error');
                }
            },
        },
        t('retire'),
    );
    return section(
        t('manage'),
        h(
            'div',
            { class: 'inline-form' },
            h('label', { class: 'filter' }, h('span', null, t('move_to')), pick),
            move,
        ),
        h('div', { class: 'danger-zone' }, h('p', { class: 'muted' }, t('retire_hint')), retire),
    );
}

function events(m) {
    const list = Array.isArray(m.events) ? m.events : Array.isArray(m.recent_events) ? m.recent_events : null;
    if (!list) return null;
    if (!list.length) return section(t('events'), empty());
    return section(
        t('events'),
        h(
            'table',
            { class: 'table compact', testid: 'events-table' },
            h(
                'thead',
                null,
                h('tr', null, h('th', null, t('time')), h('th', null, t('type')), h('th', null, t('detail'))),
            ),
            h(
                'tbody',
                null,
                list.slice(0, 50).map((e) => {
                    const d = e.data && typeof e.data === 'object' ? e.data : {};
                    return h(
                        'tr',
                        null,
                        h('td', { class: 'nowrap' }, fmtTime(e.at)),
                        h('td', { class: 'mono' }, str(e.type)),
                        h(
                            'td',
                            { class: 'wrap' },
                            d.message
                                ? str(d.message)
                                : [d.signature, d.path].filter(Boolean).map(str).join(' — ') ||
                                      kvText(d, 200),
                        ),
                    );
                }),
            ),
        ),
    );
}

export async function render(el, ctx) {
    const id = ctx.params.id;
    const [m, agencies] = await Promise.all([
        api.get('/machines/' + encodeURIComponent(id)),
        canAct() ? loadAgencies() : Promise.resolve([]),
    ]);
    if (!ctx.alive()) return;
    ctx.setTitle(str(m.hostname) || str(m.id));

    const dets = listView({
        testid: 'machine-detections',
        syncUrl: false,
        perPage: 25,
        rowTestid: 'detection-row',
        columns: [
            { key: 'detected_at', label: t('time'), class: 'nowrap', render: (d) => fmtTime(d.detected_at) },
            {
                key: 'signature',
                label: t('signature'),
                render: (d) =>
                    h(
                        'a',
                        { href: '/detections/' + encodeURIComponent(str(d.id)), class: 'mono' },
                        str(d.signature),
                    ),
            },
            { key: 'path', label: t('path'), class: 'mono wrap', render: (d) => str(d.path) },
            { key: 'action', label: t('action'), render: (d) => actionLabel(d.action) },
            { key: 'status', label: t('status'), render: (d) => detectionStatus(d.status) },
        ],
        fetch: (p) => api.get('/detections', { ...p, machine: id }),
        rowHref: (d) => '/detections/' + encodeURIComponent(str(d.id)),
        emptyText: t('no_detections'),
    });

    el.append(
        h(
            'div',
            { class: 'machine', testid: 'machine-page', 'data-id': str(m.id) },
            h(
                'div',
                { class: 'page-head' },
                machineStatus(m),
                m.open_detections
                    ? h('span', { class: 'muted' }, ' ', t('open_count', { n: fmtNumber(m.open_detections) }))
                    : null,
            ),
            h(
                'div',
                { class: 'grid-2' },
                section(t('inventory'), inventory(m)),
                h('div', null, manage(id, m, agencies), events(m)),
            ),
            tasksPanel(id, m),
            section(t('detections'), dets.el),
        ),
    );
}
