/*
 * The route table: every URL the server answers, with who may call it.
 * router.c matches it in order; "{}" matches one path segment and is handed
 * to the handler in r->params. The flags (server.h) say how the caller is
 * authenticated: SRV_AGENT by client certificate, SRV_USER by session cookie
 * or API token, with SRV_WRITE refusing auditors and SRV_ADMIN allowing
 * province administrators only. docs/api/ documents each route.
 */
#include "api.h"

#define U SRV_USER
#define W (SRV_USER | SRV_WRITE)
#define A (SRV_USER | SRV_WRITE | SRV_ADMIN)

const struct srv_route srv_routes[] = {
    {"GET", "/api/v1/health", SRV_PUBLIC, api_health},
    {"GET", "/api/v1/bundle-key", SRV_PUBLIC, api_bundle_key},

    /* Agents. */
    {"POST", "/api/v1/enroll", SRV_PUBLIC, api_enroll},
    {"POST", "/api/v1/agent/checkin", SRV_AGENT, api_agent_checkin},
    {"GET", "/api/v1/agent/tasks", SRV_AGENT, api_agent_tasks},
    {"POST", "/api/v1/agent/tasks/{}/result", SRV_AGENT, api_agent_task_result},
    {"POST", "/api/v1/agent/events", SRV_AGENT, api_agent_events},
    {"GET", "/api/v1/agent/bundles/latest", SRV_AGENT, api_agent_bundle_latest},
    {"GET", "/api/v1/agent/bundles/{}", SRV_AGENT, api_agent_bundle_get},

    /* People. */
    {"POST", "/api/v1/login", SRV_PUBLIC, api_login},
    {"POST", "/api/v1/logout", U, api_logout},
    {"GET", "/api/v1/me", U, api_me},
    {"POST", "/api/v1/me/password", U, api_me_password},
    {"GET", "/api/v1/users", U | SRV_ADMIN, api_users_list},
    {"POST", "/api/v1/users", A, api_users_create},
    {"PATCH", "/api/v1/users/{}", A, api_users_update},
    {"GET", "/api/v1/tokens", U, api_tokens_list},
    {"POST", "/api/v1/tokens", U, api_tokens_create},
    {"DELETE", "/api/v1/tokens/{}", U, api_tokens_revoke},
    {"GET", "/api/v1/audit", U, api_audit_list},

    {"GET", "/api/v1/agencies", U, api_agencies_list},
    {"POST", "/api/v1/agencies", A, api_agencies_create},
    {"PATCH", "/api/v1/agencies/{}", A, api_agencies_update},
    {"GET", "/api/v1/agencies/{}/enroll-tokens", U, api_enroll_tokens_list},
    {"POST", "/api/v1/agencies/{}/enroll-tokens", W, api_enroll_tokens_create},
    {"DELETE", "/api/v1/enroll-tokens/{}", W, api_enroll_tokens_revoke},

    {"GET", "/api/v1/overview", U, api_overview},
    {"GET", "/api/v1/machines", U, api_machines_list},
    {"GET", "/api/v1/machines/{}", U, api_machines_get},
    {"GET", "/api/v1/machines/{}/tasks", U, api_machines_tasks_list},
    {"POST", "/api/v1/machines/{}/tasks", W, api_machines_tasks_create},
    {"POST", "/api/v1/machines/{}/move", W, api_machines_move},
    {"POST", "/api/v1/machines/{}/retire", W, api_machines_retire},
    {"GET", "/api/v1/detections", U, api_detections_list},
    {"GET", "/api/v1/detections/{}", U, api_detections_get},
    {"POST", "/api/v1/detections/{}/status", W, api_detections_status},

    {"GET", "/api/v1/signatures/sources", U, api_sources_list},
    {"POST", "/api/v1/signatures/sources", A, api_sources_create},
    {"PUT", "/api/v1/signatures/sources/upload", A | SRV_UPLOAD, api_sources_upload},
    {"DELETE", "/api/v1/signatures/sources/{}", A, api_sources_delete},
    {"POST", "/api/v1/signatures/publish", A, api_bundles_publish},
    {"GET", "/api/v1/signatures/versions", U, api_bundles_list},

    /* Agencies' agent policies. Appended rather than placed with the other
     * agency routes so that the routes above keep their positions, by which
     * tests/fuzz/fuzz_api.c's seed inputs name them. */
    {"GET", "/api/v1/agencies/{}/policy", U, api_agency_policy_get},
    {"PUT", "/api/v1/agencies/{}/policy", W, api_agency_policy_put},
    {"DELETE", "/api/v1/agencies/{}/policy", W, api_agency_policy_delete},

    /* The network sensor: agencies' address ranges and C&C hits (appended
     * for the same reason). */
    {"GET", "/api/v1/agencies/{}/networks", U, api_agency_networks_get},
    {"PUT", "/api/v1/agencies/{}/networks", W, api_agency_networks_put},
    {"GET", "/api/v1/networks", U | SRV_ADMIN, api_networks_list},
    {"GET", "/api/v1/c2-hits", U, api_c2_hits_list},
    {"GET", "/api/v1/c2-hits/summary", U, api_c2_hits_summary},

    /* The infection index (appended for the same reason). */
    {"GET", "/api/v1/index", U, api_index_get},
    {"GET", "/api/v1/index/trend", U, api_index_trend},

    /* Reports for the Ministry (issue 7). */
    {"POST", "/api/v1/reports", W, api_reports_create},
    {"GET", "/api/v1/reports", U, api_reports_list},
    {"GET", "/api/v1/reports/deadline", U, api_reports_deadline},
    {"GET", "/api/v1/reports/{}/file", U, api_reports_file},
    {"POST", "/api/v1/c2-hits/{}/status", W, api_c2_hits_status},

    /* Sharing with the national malware monitoring system (issue 7). */
    {"GET", "/api/v1/sharing", U, api_sharing_get},
    {"POST", "/api/v1/sharing/send-now", A, api_sharing_send_now},
    {"GET", "/api/v1/sharing/submissions/{}/document", U, api_sharing_document},

    /* Federation: provinces pushing to this server (appended, see above).
     * The push is public at the router and checks its own token. */
    {"POST", "/api/v1/federation/children", A, api_federation_children_create},
    {"GET", "/api/v1/federation/children", U | SRV_ADMIN, api_federation_children_list},
    {"DELETE", "/api/v1/federation/children/{}", A, api_federation_children_revoke},
    {"POST", "/api/v1/federation/push", SRV_PUBLIC, api_federation_push},
    {"GET", "/api/v1/federation/provinces", U, api_federation_provinces},
};

const size_t srv_nroutes = sizeof(srv_routes) / sizeof(srv_routes[0]);
