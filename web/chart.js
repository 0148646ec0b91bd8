// The "detections per day" chart, drawn as inline SVG (no library, nothing
// from outside). Days the server left out had no detections and are drawn
// as zero; the last day is today.

import { h, fmtNumber } from './dom.js';
import { t, lang } from './i18n.js';

const W = 720;
const H = 220;
const PAD = { left: 40, right: 12, top: 14, bottom: 34 };

function isoDay(d) {
    return d.toISOString().slice(0, 10);
}

// [{day:"2026-11-20",count:N}] -> a continuous list of days ending today.
export function fillDays(byDay, minDays = 30) {
    const counts = new Map();
    for (const r of byDay || []) {
        if (r && typeof r.day === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(r.day))
            counts.set(r.day, Number(r.count) || 0);
    }
    // The server counts UTC days, so "today" is the UTC date too.
    const today = new Date();
    const end = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate()));
    let start = new Date(end.getTime() - (minDays - 1) * 86400000);
    for (const day of counts.keys()) {
        const d = new Date(day + 'T00:00:00Z');
        if (d < start && end - d < 366 * 86400000) start = d;
        if (d > end) counts.delete(day);
    }
    const out = [];
    for (let d = start; d <= end; d = new Date(d.getTime() + 86400000)) {
        const day = isoDay(d);
        out.push({ day, count: counts.get(day) || 0 });
    }
    return out;
}

// A round upper bound for the y axis, four steps of 1, 2, 5, 10, 20, ...
// so that every grid line is a whole number.
function niceMax(v) {
    const need = Math.max(1, v / 4);
    const p = Math.pow(10, Math.floor(Math.log10(need)));
    for (const m of [1, 2, 5, 10]) if (m * p >= need) return 4 * m * p;
    return 40 * p;
}

function svg(tag, attrs, ...children) {
    return h('svg:' + tag, attrs, ...children);
}

function shortDay(day) {
    const [y, m, d] = day.split('-').map(Number);
    return new Intl.DateTimeFormat(lang() === 'vi' ? 'vi-VN' : 'en-GB', {
        day: '2-digit',
        month: '2-digit',
        timeZone: 'UTC',
    }).format(new Date(Date.UTC(y, m - 1, d)));
}

export function detectionsChart(byDay) {
    const days = fillDays(byDay);
    const max = niceMax(Math.max(0, ...days.map((d) => d.count)));
    const iw = W - PAD.left - PAD.right;
    const ih = H - PAD.top - PAD.bottom;
    const step = iw / days.length;
    const bw = Math.max(2, step * 0.7);
    const total = days.reduce((s, d) => s + d.count, 0);

    const root = svg('svg', {
        viewBox: `0 0 ${W} ${H}`,
        class: 'chart',
        role: 'img',
        'aria-label': t('chart_label', { total: fmtNumber(total), days: days.length }),
        testid: 'detections-chart',
        preserveAspectRatio: 'xMidYMid meet',
    });

    // Grid lines and y labels at 0, 1/4, 1/2, 3/4 and the top.
    for (let i = 0; i <= 4; i++) {
        const v = (max * i) / 4;
        const y = PAD.top + ih - (ih * i) / 4;
        root.appendChild(
            svg('line', { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: i ? 'grid' : 'axis' }),
        );
        root.appendChild(
            svg('text', { x: PAD.left - 6, y: y + 4, class: 'tick', 'text-anchor': 'end' }, fmtNumber(v)),
        );
    }

    const labelEvery = Math.ceil(days.length / 10);
    days.forEach((d, i) => {
        const x = PAD.left + i * step + (step - bw) / 2;
        const bh = max ? (ih * d.count) / max : 0;
        const g = svg('g', { class: 'bar-group', 'data-day': d.day, 'data-count': d.count });
        // A transparent full-height target makes small bars easy to hover.
        g.appendChild(
            svg('rect', { x: PAD.left + i * step, y: PAD.top, width: step, height: ih, class: 'hit' }),
        );
        if (d.count > 0)
            g.appendChild(
                svg('rect', {
                    x,
                    y: PAD.top + ih - bh,
                    width: bw,
                    height: Math.max(bh, 1),
                    rx: 1.5,
                    class: 'col',
                }),
            );
        g.appendChild(svg('title', null, `${shortDay(d.day)}: ${fmtNumber(d.count)}`));
        root.appendChild(g);
        if ((days.length - 1 - i) % labelEvery === 0) {
            root.appendChild(
                svg(
                    'text',
                    {
                        x: PAD.left + i * step + step / 2,
                        y: H - PAD.bottom + 16,
                        class: 'tick',
                        'text-anchor': 'middle',
                    },
                    shortDay(d.day),
                ),
            );
        }
    });
    return root;
}
