// The agency page's "Protection policy" section (docs/api/dashboard.md,
// "Agent policies"): what the agency's machines are told to do, where that
// comes from (the agency's own policy, an agency above it, or the built-in
// default), and for those who may change it an editor.
//
// The editor is a form for the settings people change, filled from the
// policy in effect, so that saving it gives the agency a complete policy of
// its own; a raw-JSON box below it takes any document the API accepts. The
// server validates everything and names the setting it refuses as a path
// ("scheduled_scans[1].time"); the form keeps an error slot next to every
// input under that path, so the message appears where the mistake is.

import {
    h,
    str,
    num,
    fmtNumber,
    fmtTime,
    dl,
    section,
    field,
    select,
    badge,
    toast,
    confirmAction,
    clear,
} from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { isAdmin, canAct } from '../session.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const ACTIONS = ['quarantine', 'block', 'report'];
const IONICE = ['idle', 'best-effort'];
const MAX_SCANS = 16; // the server's limit

// A top-level agency's policy reaches every machine below it, so only a
// province administrator may change it (the server refuses others anyway).
function canWrite(a) {
    if (!canAct()) return false;
    return isAdmin() || (a.parent_id !== null && a.parent_id !== undefined);
}

function seconds(n) {
    const s = num(n);
    if (s && s % 3600 === 0) return t('n_hours', { n: fmtNumber(s / 3600) });
    if (s && s % 60 === 0) return t('n_minutes', { n: fmtNumber(s / 60) });
    return t('n_seconds', { n: fmtNumber(s) });
}

function daysText(days) {
    const d = Array.isArray(days) ? days.map(str) : [];
    if (d.includes('daily') || DAYS.every((x) => d.includes(x))) return t('policy_daily');
    return d.map((x) => t('day_' + x)).join(', ');
}

function pathsText(list) {
    const p = Array.isArray(list) ? list.map(str) : [];
    return p.length ? h('span', { class: 'mono wrap' }, p.join('  ')) : '—';
}

function onOff(v, testid) {
    return v ? badge('ok', t('on'), testid) : badge('muted', t('off'), testid);
}

// Where the policy in effect comes from.
function sourceLine(view, a, list) {
    const from = view.inherited_from;
    if (view.policy !== null && view.policy !== undefined) {
        return h(
            'p',
            { testid: 'policy-source', 'data-source': 'own' },
            badge('ok', t('policy_own')),
            view.updated_at
                ? [
                      ' ',
                      h(
                          'span',
                          { class: 'muted small' },
                          t('policy_updated', { when: fmtTime(view.updated_at), who: str(view.updated_by) || '—' }),
                      ),
                  ]
                : null,
        );
    }
    if (from === null || from === undefined) {
        return h('p', { testid: 'policy-source', 'data-source': 'default' }, badge('muted', t('policy_default')));
    }
    const src = list.find((x) => String(x.id) === String(from));
    const name = src
        ? h('a', { href: '/agencies/' + encodeURIComponent(str(src.id)) }, str(src.name))
        : t('policy_inherited_above', { id: str(from) });
    return h(
        'p',
        { testid: 'policy-source', 'data-source': 'inherited', 'data-from': str(from) },
        t('policy_inherited'),
        ' ',
        name,
        '.',
    );
}

function summary(p) {
    const rtp = p.rtp || {};
    const scan = p.scan || {};
    const conn = p.connections || {};
    const scans = Array.isArray(p.scheduled_scans) ? p.scheduled_scans : [];
    const schedule = scans.length
        ? h(
              'table',
              { class: 'table compact', testid: 'policy-scans' },
              h(
                  'thead',
                  null,
                  h(
                      'tr',
                      null,
                      [
                          t('name'),
                          t('policy_days'),
                          t('policy_time_short'),
                          t('policy_scan_paths'),
                          t('policy_full'),
                      ].map((c) => h('th', null, c)),
                  ),
              ),
              h(
                  'tbody',
                  null,
                  scans.map((s) =>
                      h(
                          'tr',
                          { testid: 'policy-scan-row' },
                          h('td', null, str(s.name) || '—'),
                          h('td', null, daysText(s.days)),
                          h('td', { class: 'mono' }, str(s.time)),
                          h('td', null, pathsText(s.paths)),
                          h('td', null, s.full ? t('yes') : t('no')),
                      ),
                  ),
              ),
          )
        : t('policy_no_schedule');
    return h(
        'div',
        { testid: 'policy-summary' },
        dl([
            [t('policy_rtp'), onOff(rtp.enabled, 'policy-rtp-enabled')],
            [t('policy_action'), t('policy_action_' + str(rtp.action)), 'policy-rtp-action'],
            [t('policy_rtp_paths'), pathsText(rtp.paths)],
            [t('policy_excludes'), pathsText(rtp.excludes)],
            [t('policy_timeout'), fmtNumber(rtp.timeout_ms) + ' ms'],
            [
                t('policy_scan'),
                [
                    'nice ',
                    fmtNumber(scan.nice),
                    ', ',
                    t('policy_ionice_' + str(scan.ionice_class).replace('-', '_')),
                    ', ≤ ',
                    fmtNumber(scan.max_filesize_mb),
                    ' MB',
                    scan.archives ? ', ' + t('policy_archives_short') : '',
                ],
            ],
            [
                t('policy_connections'),
                conn.enabled ? [onOff(true), ' ', t('policy_every', { n: seconds(conn.interval_s) })] : onOff(false),
            ],
            [
                t('policy_update_interval'),
                t('policy_every', { n: seconds(p.update_interval_s) }),
                'policy-update-interval',
            ],
            [t('policy_retention'), t('n_days', { n: fmtNumber(p.quarantine_retention_days) })],
        ]),
        h('h3', null, t('policy_schedule')),
        schedule,
    );
}

// An error slot shown under an input, for the server's message about it.
function errorSlot() {
    return h('small', { class: 'error field-error', role: 'alert', hidden: true, testid: 'policy-field-error' });
}

// field() from dom.js with an error slot registered under `key`. A group
// of inputs (the day checkboxes, each in its own label) goes in a div, since
// a label may not hold other labels.
function pfield(errors, key, label, input, hint, group) {
    const slot = errorSlot();
    errors.set(key, { slot, input: group ? null : input });
    const el = group
        ? h(
              'div',
              { class: 'field' },
              h('span', { class: 'field-label' }, label),
              input,
              hint ? h('small', null, hint) : null,
          )
        : field(label, input, hint);
    el.setAttribute('data-field', key);
    el.appendChild(slot);
    return el;
}

function linesOf(ta) {
    return ta.value
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean);
}

// An integer input's value, or undefined (the setting left out: its
// default applies) when empty. Anything else goes to the server as is, and
// its refusal is shown next to the input.
function intOf(input) {
    const v = input.value.trim();
    return v === '' ? undefined : Number(v);
}

function pathsInput(list, testid) {
    return h('textarea', {
        rows: Math.min(6, Math.max(2, (list || []).length + 1)),
        class: 'mono',
        spellcheck: 'false',
        testid,
        value: (Array.isArray(list) ? list.map(str) : []).join('\n'),
    });
}

function numberInput(value, min, max, testid) {
    return h('input', { type: 'number', min, max, step: 1, value: str(value), testid });
}

function checkbox(checked, testid) {
    return h('input', { type: 'checkbox', checked: Boolean(checked), testid });
}

// A checkbox with its caption, as the content of a group pfield().
function checked(input, caption) {
    return h('label', { class: 'check' }, input, caption);
}

// One scheduled scan of the editor: its inputs and how to read them back.
function scanRow(s, onRemove) {
    const errors = new Map();
    const name = h('input', { maxlength: 200, value: str(s.name), testid: 'policy-scan-name' });
    const days = Array.isArray(s.days) ? s.days.map(str) : [];
    const daily = days.includes('daily');
    const boxes = DAYS.map((d) => h('input', { type: 'checkbox', checked: daily || days.includes(d), value: d }));
    const dayPicker = h(
        'span',
        { class: 'day-picker', testid: 'policy-scan-days' },
        DAYS.map((d, i) => h('label', { class: 'check' }, boxes[i], t('day_' + d))),
    );
    const time = h('input', { type: 'time', value: str(s.time), testid: 'policy-scan-time' });
    const paths = pathsInput(s.paths, 'policy-scan-paths');
    const excludes = pathsInput(s.excludes, 'policy-scan-excludes');
    const full = checkbox(s.full, 'policy-scan-full');
    const rowError = errorSlot();
    errors.set('', { slot: rowError, input: null });
    const el = h(
        'fieldset',
        { class: 'policy-scan form-grid', testid: 'policy-scan' },
        pfield(errors, 'name', t('name'), name),
        pfield(errors, 'time', t('policy_time'), time),
        pfield(errors, 'days', t('policy_days'), dayPicker, t('policy_days_hint'), true),
        pfield(errors, 'paths', t('policy_scan_paths'), paths, t('policy_lines_hint')),
        pfield(errors, 'excludes', t('policy_excludes'), excludes, t('policy_lines_hint')),
        pfield(errors, 'full', t('policy_full'), checked(full, t('yes')), t('policy_full_hint'), true),
        rowError,
        h(
            'div',
            { class: 'form-actions' },
            h(
                'button',
                { type: 'button', class: 'btn btn-small btn-danger', testid: 'policy-scan-remove', onclick: onRemove },
                t('policy_remove_scan'),
            ),
        ),
    );
    return {
        el,
        errors,
        value() {
            const picked = DAYS.filter((d, i) => boxes[i].checked);
            return {
                name: name.value.trim(),
                paths: linesOf(paths),
                full: full.checked,
                days: picked.length === DAYS.length ? ['daily'] : picked,
                time: time.value,
                excludes: linesOf(excludes),
            };
        },
    };
}

// The server's message without its "field 'x': " prefix, which the
// position of the message already says; an entry of a box of paths (one
// per line) names its line.
function problemText(e, lines) {
    let msg = str(e.message).replace(/^field '[^']*': /, '');
    const m = /\[(\d+)\]$/.exec(str(e.field));
    if (m && lines) msg = t('policy_line', { n: Number(m[1]) + 1 }) + ': ' + msg;
    return msg;
}

function editor(view, save, revert) {
    const p = view.effective || {};
    const rtp = p.rtp || {};
    const scan = p.scan || {};
    const conn = p.connections || {};
    const errors = new Map();
    const general = h('p', { class: 'error', role: 'alert', hidden: true, testid: 'policy-error' });

    const rtpEnabled = checkbox(rtp.enabled, 'policy-rtp-enabled-input');
    const action = select(
        ACTIONS.map((x) => [x, t('policy_action_' + x)]),
        rtp.action,
        { testid: 'policy-rtp-action-input' },
    );
    const rtpPaths = pathsInput(rtp.paths, 'policy-rtp-paths');
    const rtpExcludes = pathsInput(rtp.excludes, 'policy-rtp-excludes');
    const timeout = numberInput(rtp.timeout_ms, 100, 30000, 'policy-rtp-timeout');
    const nice = numberInput(scan.nice, 0, 19, 'policy-nice');
    const ionice = select(
        IONICE.map((x) => [x, t('policy_ionice_' + x.replace('-', '_'))]),
        scan.ionice_class,
        { testid: 'policy-ionice' },
    );
    const maxSize = numberInput(scan.max_filesize_mb, 1, 4096, 'policy-max-size');
    const archives = checkbox(scan.archives, 'policy-archives');
    const connEnabled = checkbox(conn.enabled, 'policy-connections-enabled');
    const connInterval = numberInput(conn.interval_s, 10, 3600, 'policy-connections-interval');
    const updateInterval = numberInput(p.update_interval_s, 60, 86400, 'policy-update-interval-input');
    const retention = numberInput(p.quarantine_retention_days, 1, 3650, 'policy-retention');

    // Scheduled scans: rows added and removed in place.
    const rows = [];
    const scanBox = h('div', { class: 'policy-scans', testid: 'policy-scans-edit' });
    const addScan = h(
        'button',
        {
            type: 'button',
            class: 'btn btn-small',
            testid: 'policy-scan-add',
            onclick: () => addRow({ name: '', paths: ['/'], full: false, days: ['sun'], time: '02:30', excludes: [] }),
        },
        t('policy_add_scan'),
    );
    const scheduleError = errorSlot();
    errors.set('scheduled_scans', { slot: scheduleError, input: null });
    function addRow(s) {
        const row = scanRow(s, () => {
            rows.splice(rows.indexOf(row), 1);
            row.el.remove();
            addScan.disabled = rows.length >= MAX_SCANS;
        });
        rows.push(row);
        scanBox.appendChild(row.el);
        addScan.disabled = rows.length >= MAX_SCANS;
    }
    for (const s of Array.isArray(p.scheduled_scans) ? p.scheduled_scans : []) addRow(s);

    function clearErrors() {
        general.hidden = true;
        const all = [...errors.values(), ...rows.flatMap((r) => [...r.errors.values()])];
        for (const { slot, input } of all) {
            slot.hidden = true;
            slot.textContent = '';
            if (input) input.removeAttribute('aria-invalid');
        }
    }

    // Finds the slot for a field path: the exact setting, else the list it
    // is an entry of; scheduled_scans[i].x goes to row i.
    function showError(e) {
        const f = str(e.field);
        let target = null;
        const m = /^scheduled_scans\[(\d+)\](?:\.([a-z_]+))?/.exec(f);
        if (m && rows[Number(m[1])]) {
            const r = rows[Number(m[1])];
            target = r.errors.get(m[2] || '') || r.errors.get('');
        } else if (f) {
            target = errors.get(f) || errors.get(f.replace(/\[\d+\]$/, ''));
        }
        if (!target) {
            general.textContent = (f ? f + ': ' : '') + str(e.message);
            general.hidden = false;
            return;
        }
        target.slot.textContent = problemText(e, Boolean(target.input && target.input.tagName === 'TEXTAREA'));
        target.slot.hidden = false;
        if (target.input) {
            target.input.setAttribute('aria-invalid', 'true');
            target.input.focus();
        }
        target.slot.scrollIntoView({ block: 'nearest' });
    }

    function documentOf() {
        return {
            rtp: {
                enabled: rtpEnabled.checked,
                paths: linesOf(rtpPaths),
                excludes: linesOf(rtpExcludes),
                timeout_ms: intOf(timeout),
                action: action.value,
            },
            scheduled_scans: rows.map((r) => r.value()),
            scan: {
                nice: intOf(nice),
                ionice_class: ionice.value,
                max_filesize_mb: intOf(maxSize),
                archives: archives.checked,
            },
            connections: { enabled: connEnabled.checked, interval_s: intOf(connInterval) },
            update_interval_s: intOf(updateInterval),
            quarantine_retention_days: intOf(retention),
        };
    }

    const form = h(
        'form',
        {
            testid: 'policy-form',
            novalidate: true,
            onsubmit: async (ev) => {
                ev.preventDefault();
                clearErrors();
                const err = await save(documentOf());
                if (err) showError(err);
            },
        },
        h('h3', null, t('policy_rtp')),
        h(
            'div',
            { class: 'form-grid' },
            pfield(errors, 'rtp.enabled', t('policy_rtp'), checked(rtpEnabled, t('on')), null, true),
            pfield(errors, 'rtp.action', t('policy_action'), action),
            pfield(errors, 'rtp.timeout_ms', t('policy_timeout'), timeout, t('policy_timeout_hint')),
            pfield(errors, 'rtp.paths', t('policy_rtp_paths'), rtpPaths, t('policy_lines_hint')),
            pfield(errors, 'rtp.excludes', t('policy_excludes'), rtpExcludes, t('policy_lines_hint')),
        ),
        h('h3', null, t('policy_schedule')),
        scanBox,
        scheduleError,
        h('div', { class: 'actions' }, addScan),
        h('h3', null, t('policy_scan')),
        h(
            'div',
            { class: 'form-grid' },
            pfield(errors, 'scan.nice', t('policy_nice'), nice, t('policy_nice_hint')),
            pfield(errors, 'scan.ionice_class', t('policy_ionice'), ionice),
            pfield(errors, 'scan.max_filesize_mb', t('policy_max_size'), maxSize),
            pfield(errors, 'scan.archives', t('policy_archives'), checked(archives, t('on')), null, true),
        ),
        h('h3', null, t('policy_other')),
        h(
            'div',
            { class: 'form-grid' },
            pfield(errors, 'connections.enabled', t('policy_connections'), checked(connEnabled, t('on')), null, true),
            pfield(errors, 'connections.interval_s', t('policy_connections_interval'), connInterval),
            pfield(errors, 'update_interval_s', t('policy_update_interval_s'), updateInterval),
            pfield(errors, 'quarantine_retention_days', t('policy_retention_days'), retention),
        ),
        general,
        h(
            'div',
            { class: 'form-actions actions' },
            h('button', { type: 'submit', class: 'btn btn-primary', testid: 'policy-save' }, t('policy_save')),
            view.policy !== null && view.policy !== undefined
                ? h(
                      'button',
                      { type: 'button', class: 'btn btn-danger', testid: 'policy-revert', onclick: revert },
                      t('policy_revert'),
                  )
                : null,
        ),
        h('p', { class: 'muted small' }, t('policy_saved_note')),
    );

    // The raw document: what the agency has of its own, else what it gets.
    const raw = h('textarea', {
        class: 'secret',
        rows: 12,
        spellcheck: 'false',
        testid: 'policy-json',
        value: JSON.stringify(view.policy ?? view.effective ?? {}, null, 2),
    });
    const rawError = h('p', { class: 'error', role: 'alert', hidden: true, testid: 'policy-json-error' });
    const rawBox = h(
        'details',
        { class: 'policy-json' },
        h('summary', null, t('policy_json')),
        raw,
        rawError,
        h(
            'div',
            { class: 'actions' },
            h(
                'button',
                {
                    type: 'button',
                    class: 'btn',
                    testid: 'policy-json-save',
                    onclick: async () => {
                        rawError.hidden = true;
                        let doc;
                        try {
                            doc = JSON.parse(raw.value);
                        } catch (x) {
                            rawError.textContent = t('policy_json_bad', { message: x.message });
                            rawError.hidden = false;
                            return;
                        }
                        const err = await save(doc);
                        if (err) {
                            rawError.textContent = (err.field ? err.field + ': ' : '') + str(err.message);
                            rawError.hidden = false;
                        }
                    },
                },
                t('policy_json_save'),
            ),
        ),
    );
    return h('div', { class: 'policy-edit' }, h('h3', null, t('policy_edit')), form, rawBox);
}

// The section for agency `a`; `list` is the caller's agency tree, to name
// the agency a policy is inherited from.
export function policyPanel(a, list) {
    const box = h('div', { testid: 'policy', 'aria-busy': 'true' });
    const base = '/agencies/' + encodeURIComponent(str(a.id)) + '/policy';

    // PUT; resolves to null on success, else the error to show.
    async function save(doc) {
        try {
            const view = await api.put(base, doc);
            toast(t('saved'));
            draw(view);
            return null;
        } catch (e) {
            return e; // shown by the form, next to the field when it names one
        }
    }

    async function revert() {
        if (!(await confirmAction(t('policy_revert_title'), t('policy_revert_text'), t('policy_revert'), true)))
            return;
        try {
            draw(await api.del(base));
            toast(t('policy_reverted'));
        } catch (e) {
            toast(e.message, 'error');
        }
    }

    function draw(view) {
        clear(box).append(
            sourceLine(view, a, list),
            summary(view.effective || {}),
            h(
                'p',
                { class: 'muted small' },
                t('policy_version'),
                ': ',
                h('span', { class: 'mono', testid: 'policy-version' }, str(view.policy_version)),
            ),
            canWrite(a) ? editor(view, save, revert) : null,
        );
        if (canAct() && !canWrite(a)) box.appendChild(h('p', { class: 'muted small' }, t('policy_top_admin_only')));
        box.removeAttribute('aria-busy');
    }

    (async () => {
        try {
            draw(await api.get(base));
        } catch (e) {
            clear(box).appendChild(h('p', { class: 'error' }, e.message));
        }
    })();
    return section(t('policy'), h('p', { class: 'muted' }, t('policy_hint')), box);
}
