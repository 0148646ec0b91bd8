// One detection: the file, the signature, the machine it was found on, and
// its workflow (new -> acknowledged -> resolved or false positive, and back
// to new). Every status change carries an optional note; the history of
// notes is shown below.

import { h, str, fmtTime, fmtBytes, dl, section, empty, toast } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { canAct } from '../session.js';
import { reload } from '../router.js';
import { agencyLink, machineLink, detectionStatus, actionLabel } from '../common.js';

// Which buttons each status offers: [target status, label key, button class].
const NEXT = {
    new: [
        ['acknowledged', 'do_acknowledge', 'btn-primary'],
        ['resolved', 'do_resolve', ''],
        ['false_positive', 'do_false_positive', ''],
    ],
    acknowledged: [
        ['resolved', 'do_resolve', 'btn-primary'],
        ['false_positive', 'do_false_positive', ''],
        ['new', 'do_reopen', 'btn-ghost'],
    ],
    resolved: [['new', 'do_reopen', '']],
    false_positive: [['new', 'do_reopen', '']],
};

function workflow(d) {
    if (!canAct()) return null;
    const note = h('textarea', {
        rows: 2,
        maxlength: 2000,
        testid: 'status-note',
        placeholder: t('note_hint'),
    });
    const buttons = (NEXT[d.status] || NEXT.new).map(([to, key, cls]) =>
        h(
            'button',
            {
                type: 'button',
                class: ['btn', cls],
                testid: 'status-' + to,
                onclick: async (e) => {
                    e.currentTarget.disabled = true;
                    try {
                        await api.post('/detections/' + encodeURIComponent(str(d.id)) + '/status', {
                            status: to,
                            note: note.value.trim(),
                        });
                        toast(t('status_changed'));
                        reload();
                    } catch (err) {
                        toast(err.message, 'error');
                        e.currentTarget.disabled = false;
                    }
                },
            },
            t(key),
        ),
    );
    return section(
        t('workflow'),
        h('label', { class: 'field' }, h('span', { class: 'field-label' }, t('note')), note),
        h('div', { class: 'actions' }, buttons),
    );
}

function notes(list) {
    if (!Array.isArray(list) || !list.length) return empty(t('no_notes'));
    return h(
        'ol',
        { class: 'timeline', testid: 'notes' },
        list.map((n) =>
            h(
                'li',
                { testid: 'note' },
                h(
                    'div',
                    { class: 'timeline-head' },
                    h('strong', null, str(n.username) || '—'),
                    ' · ',
                    fmtTime(n.at),
                    ' · ',
                    detectionStatus(n.status_from),
                    ' → ',
                    detectionStatus(n.status_to),
                ),
                n.note ? h('p', { class: 'note-text' }, str(n.note)) : null,
            ),
        ),
    );
}

export async function render(el, ctx) {
    const d = await api.get('/detections/' + encodeURIComponent(ctx.params.id));
    if (!ctx.alive()) return;
    ctx.setTitle(t('detection') + ' #' + str(d.id));
    el.append(
        h(
            'div',
            { class: 'detection', testid: 'detection-page', 'data-id': str(d.id) },
            h(
                'div',
                { class: 'page-head' },
                detectionStatus(d.status),
                ' ',
                h('span', { class: 'mono big', testid: 'detection-signature' }, str(d.signature)),
            ),
            h(
                'div',
                { class: 'grid-2' },
                section(
                    t('details'),
                    dl([
                        [t('machine'), machineLink(d, 'detection-machine-link')],
                        [t('agency'), agencyLink(d)],
                        [t('signature'), h('span', { class: 'mono' }, str(d.signature))],
                        [t('family'), str(d.family)],
                        [t('path'), h('span', { class: 'mono wrap' }, str(d.path))],
                        [t('size'), d.size ? fmtBytes(d.size) : ''],
                        ['SHA-256', h('span', { class: 'mono wrap' }, str(d.sha256))],
                        ['MD5', h('span', { class: 'mono' }, str(d.md5))],
                        [t('action'), actionLabel(d.action)],
                        [t('detected_at'), fmtTime(d.detected_at)],
                        [t('received_at'), fmtTime(d.received_at)],
                        [t('status_since'), fmtTime(d.status_at)],
                    ]),
                ),
                h('div', null, workflow(d), section(t('notes'), notes(d.notes))),
            ),
        ),
    );
}
