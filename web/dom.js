// Building the page without innerHTML. Every string that came from the API
// reaches the document through a text node (h() turns strings into text
// nodes; there is no path that parses markup), so a hostname such as
// "<img onerror=...>" shows as those characters. Attributes are set with
// setAttribute, never "style" (the CSP forbids inline styles) and never
// event-handler attributes: handlers are functions passed as on* keys.

import { t, lang } from './i18n.js';

// h('a', {href: '/x', class: 'link', testid: 'foo', onclick: fn}, 'text', child, [more])
export function h(tag, attrs, ...children) {
    const el = tag.startsWith('svg:')
        ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
        : document.createElement(tag);
    if (attrs) {
        for (const [k, v] of Object.entries(attrs)) {
            if (v === undefined || v === null || v === false) continue;
            if (k.startsWith('on') && typeof v === 'function') {
                el.addEventListener(k.slice(2), v);
            } else if (k === 'testid') {
                el.setAttribute('data-testid', v);
            } else if (k === 'class') {
                el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
            } else if (k === 'value' && 'value' in el) {
                el.value = v;
            } else if (k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden') {
                el[k] = Boolean(v);
            } else if (k === 'style' || k === 'innerHTML' || k.startsWith('on')) {
                throw new Error('h(): refusing attribute ' + k);
            } else {
                el.setAttribute(k, v === true ? '' : String(v));
            }
        }
    }
    append(el, children);
    return el;
}

export function append(el, children) {
    for (const c of children) {
        if (c === undefined || c === null || c === false) continue;
        if (Array.isArray(c)) append(el, c);
        else if (c instanceof Node) el.appendChild(c);
        else el.appendChild(document.createTextNode(String(c)));
    }
    return el;
}

export function clear(el) {
    el.replaceChildren();
    return el;
}

// Values ------------------------------------------------------------------

export function str(v) {
    return v === undefined || v === null ? '' : String(v);
}

export function num(v) {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
}

function locale() {
    return lang() === 'vi' ? 'vi-VN' : 'en-GB';
}

export function fmtNumber(v) {
    return new Intl.NumberFormat(locale()).format(num(v));
}

export function fmtPercent(part, whole) {
    if (!whole) return '—';
    const p = (100 * num(part)) / num(whole);
    return new Intl.NumberFormat(locale(), { maximumFractionDigits: 1 }).format(p) + '%';
}

// Unix seconds -> local date and time; 0 or missing -> a dash.
export function fmtTime(unix) {
    if (!unix) return '—';
    return new Intl.DateTimeFormat(locale(), { dateStyle: 'short', timeStyle: 'short' }).format(
        new Date(num(unix) * 1000),
    );
}

export function fmtDate(unix) {
    if (!unix) return '—';
    return new Intl.DateTimeFormat(locale(), { dateStyle: 'short' }).format(new Date(num(unix) * 1000));
}

// "5 minutes ago", from Unix seconds.
export function fmtAgo(unix) {
    if (!unix) return t('never');
    const diff = num(unix) - Date.now() / 1000;
    const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
    const a = Math.abs(diff);
    if (a < 60) return rtf.format(Math.round(diff), 'second');
    if (a < 3600) return rtf.format(Math.round(diff / 60), 'minute');
    if (a < 86400) return rtf.format(Math.round(diff / 3600), 'hour');
    return rtf.format(Math.round(diff / 86400), 'day');
}

export function fmtBytes(v) {
    let n = num(v);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
        n /= 1024;
        i++;
    }
    return new Intl.NumberFormat(locale(), { maximumFractionDigits: i ? 1 : 0 }).format(n) + ' ' + units[i];
}

// Small pieces --------------------------------------------------------------

export function badge(kind, text, testid) {
    return h('span', { class: ['badge', 'badge-' + kind], testid }, text);
}

// A horizontal bar for "part of whole"; the width goes through the CSSOM,
// which the CSP allows (it blocks only style attributes in markup). A
// coverage bar turns green when full and amber below half; a `plain` one
// (a share of a total, such as a family's count) keeps one colour.
export function bar(part, whole, testid, plain) {
    const pct = whole ? Math.min(100, (100 * num(part)) / num(whole)) : 0;
    const fill = h('span', { class: ['bar-fill', plain ? '' : pct >= 100 ? 'full' : pct < 50 ? 'low' : ''] });
    fill.style.width = pct.toFixed(1) + '%';
    return h('span', { class: 'bar', testid, role: 'img', 'aria-label': fmtPercent(part, whole) }, fill);
}

export function field(label, input, hint) {
    return h(
        'label',
        { class: 'field' },
        h('span', { class: 'field-label' }, label),
        input,
        hint ? h('small', null, hint) : null,
    );
}

export function select(options, value, attrs) {
    const s = h('select', attrs);
    for (const [v, label] of options) {
        s.appendChild(h('option', { value: v, selected: String(v) === String(value ?? '') }, label));
    }
    return s;
}

export function section(title, ...children) {
    return h('section', { class: 'panel' }, title ? h('h2', null, title) : null, ...children);
}

export function dl(rows) {
    const d = h('dl', { class: 'props' });
    for (const [k, v, testid] of rows) {
        d.appendChild(h('dt', null, k));
        d.appendChild(h('dd', { testid }, v === undefined || v === null || v === '' ? '—' : v));
    }
    return d;
}

export function empty(text) {
    return h('p', { class: 'empty' }, text || t('no_data'));
}

// Toasts: short messages in the corner, errors stay longer.
export function toast(text, kind = 'ok') {
    let box = document.getElementById('toasts');
    if (!box) {
        box = h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
        document.body.appendChild(box);
    }
    const el = h('div', { class: ['toast', 'toast-' + kind], testid: 'toast' }, text);
    box.appendChild(el);
    setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}

// A modal dialog built on <dialog>. Resolves with the value of the button
// pressed (or null when dismissed). body may be a node or text.
export function modal(title, body, buttons) {
    return new Promise((resolve) => {
        const dlg = h('dialog', { class: 'modal', testid: 'modal' });
        const done = (v) => {
            dlg.close();
            dlg.remove();
            resolve(v);
        };
        const foot = h('div', { class: 'modal-actions' });
        for (const b of buttons) {
            foot.appendChild(
                h(
                    'button',
                    {
                        type: 'button',
                        class: b.class || 'btn',
                        testid: b.testid,
                        onclick: () => done(b.value),
                    },
                    b.label,
                ),
            );
        }
        append(dlg, [h('h2', null, title), h('div', { class: 'modal-body' }, body), foot]);
        dlg.addEventListener('cancel', (e) => {
            e.preventDefault();
            done(null);
        });
        document.body.appendChild(dlg);
        dlg.showModal();
    });
}

export async function confirmAction(title, text, okLabel, danger) {
    const v = await modal(title, text, [
        { label: t('cancel'), value: false, class: 'btn btn-ghost', testid: 'confirm-cancel' },
        {
            label: okLabel || t('ok'),
            value: true,
            class: danger ? 'btn btn-danger' : 'btn btn-primary',
            testid: 'confirm-ok',
        },
    ]);
    return v === true;
}

// Copies text; the Clipboard API needs a secure context, which the server's
// HTTPS gives, but falls back to selecting a field and execCommand.
export async function copyText(text, fallbackInput) {
    try {
        await navigator.clipboard.writeText(text);
        return true;
    } catch {
        if (fallbackInput) {
            fallbackInput.focus();
            fallbackInput.select();
            try {
                return document.execCommand('copy');
            } catch {
                return false;
            }
        }
        return false;
    }
}

// A secret shown once (a token, a command) with a copy button.
export function secretBox(label, value, testid) {
    const input = h('textarea', {
        class: 'secret',
        readonly: true,
        rows: value.length > 90 ? 3 : 1,
        testid,
        spellcheck: 'false',
    });
    input.value = value;
    const btn = h(
        'button',
        {
            type: 'button',
            class: 'btn btn-small',
            testid: testid ? testid + '-copy' : undefined,
            onclick: async () => {
                const ok = await copyText(value, input);
                btn.textContent = ok ? t('copied') : t('copy_failed');
                setTimeout(() => (btn.textContent = t('copy')), 2000);
            },
        },
        t('copy'),
    );
    return h(
        'div',
        { class: 'secret-box' },
        h('span', { class: 'field-label' }, label),
        h('div', { class: 'secret-row' }, input, btn),
    );
}

export function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
        clearTimeout(timer);
        timer = setTimeout(() => fn(...args), ms);
    };
}
