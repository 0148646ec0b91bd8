// Detections, newest first, filtered by workflow status, agency (with the
// agencies below it), family and free text. GET /detections does the work.

import { h, str, fmtTime } from '../dom.js';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { listView } from '../list.js';
import {
    loadAgencies,
    agencyOptions,
    agencyLink,
    machineLink,
    detectionStatus,
    actionLabel,
    DETECTION_STATUSES,
} from '../common.js';

export async function render(el, ctx) {
    ctx.setTitle(t('nav_detections'));
    const agencies = await loadAgencies();
    const filters = [
        {
            key: 'status',
            type: 'select',
            label: t('status'),
            options: [['', t('all')], ...DETECTION_STATUSES.map((s) => [s, t('det_' + s)])],
        },
        {
            key: 'agency',
            type: 'select',
            label: t('agency'),
            options: agencyOptions(agencies, t('all_agencies')),
        },
        { key: 'q', type: 'search', label: t('search'), placeholder: t('detection_search_hint') },
        { key: 'from', type: 'date', label: t('from') },
        { key: 'to', type: 'date', label: t('to'), end: true },
    ];
    // A family comes from a link on the overview; keep it as a filter the
    // user can see and clear.
    if (ctx.query.get('family')) filters.splice(3, 0, { key: 'family', type: 'search', label: t('family') });
    const list = listView({
        testid: 'detections',
        rowTestid: 'detection-row',
        filters,
        columns: [
            { key: 'detected_at', label: t('time'), class: 'nowrap', render: (d) => fmtTime(d.detected_at) },
            { key: 'machine', label: t('machine'), render: (d) => machineLink(d) },
            { key: 'agency', label: t('agency'), render: agencyLink },
            {
                key: 'signature',
                label: t('signature'),
                render: (d) =>
                    h(
                        'a',
                        {
                            href: '/detections/' + encodeURIComponent(str(d.id)),
                            class: 'mono',
                            testid: 'detection-link',
                        },
                        str(d.signature),
                    ),
            },
            { key: 'path', label: t('path'), class: 'mono wrap', render: (d) => str(d.path) },
            { key: 'action', label: t('action'), render: (d) => actionLabel(d.action) },
            { key: 'status', label: t('status'), render: (d) => detectionStatus(d.status) },
        ],
        fetch: (p) => api.get('/detections', p),
        rowHref: (d) => '/detections/' + encodeURIComponent(str(d.id)),
        emptyText: t('no_detections'),
    });
    el.append(list.el);
}
