// The signed-in user (GET /me) and what the role allows. The server enforces
// every rule; these only hide buttons that would be refused.

export const session = { me: null };

export function role() {
    return (session.me && session.me.role) || '';
}

export function isAdmin() {
    return role() === 'admin';
}

// Officers and administrators act; auditors only read.
export function canAct() {
    return role() === 'admin' || role() === 'officer';
}
