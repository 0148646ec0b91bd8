// Sign-in. The server sets the session cookie; the CSRF token it returns is
// kept by api.js for the requests that change something.

import { h, field } from '../dom.js';
import { t } from '../i18n.js';
import { api, setCsrf, ApiError } from '../api.js';
import { session } from '../session.js';
import { navigate } from '../router.js';

function safeNext(next) {
    // Only a path on this site, so a crafted link cannot send the user away.
    return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/';
}

export async function render(el, ctx) {
    const user = h('input', {
        name: 'username',
        autocomplete: 'username',
        required: true,
        maxlength: 64,
        testid: 'login-username',
        autofocus: true,
    });
    const pass = h('input', {
        name: 'password',
        type: 'password',
        autocomplete: 'current-password',
        required: true,
        maxlength: 1024,
        testid: 'login-password',
    });
    const msg = h('p', { class: 'error', role: 'alert', testid: 'login-error', hidden: true });
    const submit = h(
        'button',
        { type: 'submit', class: 'btn btn-primary btn-block', testid: 'login-submit' },
        t('login'),
    );

    const form = h(
        'form',
        {
            class: 'login-card',
            testid: 'login-form',
            onsubmit: async (e) => {
                e.preventDefault();
                msg.hidden = true;
                submit.disabled = true;
                try {
                    const res = await api.login(user.value.trim(), pass.value);
                    setCsrf(res.csrf);
                    session.me = res.user || null;
                    pass.value = '';
                    if (!session.me) session.me = await api.me();
                    navigate(safeNext(ctx.query.get('next')), { replace: true });
                } catch (err) {
                    msg.textContent =
                        err instanceof ApiError && err.status === 401
                            ? t('login_bad')
                            : err instanceof ApiError && err.status === 429
                              ? t('login_rate_limited')
                              : t('login_failed') + ' ' + err.message;
                    msg.hidden = false;
                    pass.select();
                } finally {
                    submit.disabled = false;
                }
            },
        },
        h(
            'div',
            { class: 'login-brand' },
            h('img', { src: '/favicon.svg', alt: '', width: 48, height: 48 }),
            h('div', null, h('h1', null, 'Khiên'), h('p', null, t('tagline'))),
        ),
        h('h2', null, t('login_title')),
        field(t('username'), user),
        field(t('password'), pass),
        msg,
        submit,
        h('div', { class: 'login-foot' }, ctx.langSwitch()),
    );
    el.appendChild(h('div', { class: 'login-wrap' }, form));
    user.focus();
}
