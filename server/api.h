/*
 * Every HTTP handler of the server, grouped by the file that implements it.
 * routes.c maps methods and paths to these; docs/api/ documents each one.
 * A handler reads struct srv_req (server.h), uses r->db, and leaves its
 * answer in r->resp through the srv_reply_* helpers.
 */
#ifndef KHIEN_SERVER_API_H
#define KHIEN_SERVER_API_H

#include "server.h"

/* api_agent.c: what an endpoint agent calls (mutual TLS after enrollment). */
int api_enroll(struct srv_req *r);              /* POST /api/v1/enroll */
int api_agent_checkin(struct srv_req *r);       /* POST /api/v1/agent/checkin */
int api_agent_tasks(struct srv_req *r);         /* GET  /api/v1/agent/tasks */
int api_agent_task_result(struct srv_req *r);   /* POST /api/v1/agent/tasks/{id}/result */
int api_agent_events(struct srv_req *r);        /* POST /api/v1/agent/events */
int api_agent_bundle_latest(struct srv_req *r); /* GET /api/v1/agent/bundles/latest */
int api_agent_bundle_get(struct srv_req *r);    /* GET /api/v1/agent/bundles/{version} */
int api_bundle_key(struct srv_req *r);          /* GET  /api/v1/bundle-key (public) */
int api_health(struct srv_req *r);              /* GET  /api/v1/health (public) */

/* api_auth.c: sessions, the caller, users, API tokens, the audit log. */
int api_login(struct srv_req *r);         /* POST /api/v1/login */
int api_logout(struct srv_req *r);        /* POST /api/v1/logout */
int api_me(struct srv_req *r);            /* GET  /api/v1/me */
int api_me_password(struct srv_req *r);   /* POST /api/v1/me/password */
int api_users_list(struct srv_req *r);    /* GET  /api/v1/users */
int api_users_create(struct srv_req *r);  /* POST /api/v1/users */
int api_users_update(struct srv_req *r);  /* PATCH /api/v1/users/{id} */
int api_tokens_list(struct srv_req *r);   /* GET  /api/v1/tokens */
int api_tokens_create(struct srv_req *r); /* POST /api/v1/tokens */
int api_tokens_revoke(struct srv_req *r); /* DELETE /api/v1/tokens/{id} */
int api_audit_list(struct srv_req *r);    /* GET  /api/v1/audit */

/* api_agency.c: the organisation tree, enrollment tokens, agent policies. */
int api_agencies_list(struct srv_req *r);        /* GET  /api/v1/agencies */
int api_agencies_create(struct srv_req *r);      /* POST /api/v1/agencies */
int api_agencies_update(struct srv_req *r);      /* PATCH /api/v1/agencies/{id} */
int api_enroll_tokens_list(struct srv_req *r);   /* GET  /api/v1/agencies/{id}/enroll-tokens */
int api_enroll_tokens_create(struct srv_req *r); /* POST /api/v1/agencies/{id}/enroll-tokens */
int api_enroll_tokens_revoke(struct srv_req *r); /* DELETE /api/v1/enroll-tokens/{id} */
int api_agency_policy_get(struct srv_req *r);    /* GET  /api/v1/agencies/{id}/policy */
int api_agency_policy_put(struct srv_req *r);    /* PUT  /api/v1/agencies/{id}/policy */
int api_agency_policy_delete(struct srv_req *r); /* DELETE /api/v1/agencies/{id}/policy */

/* api_machine.c: machines and their tasks. */
int api_machines_list(struct srv_req *r);         /* GET  /api/v1/machines */
int api_machines_get(struct srv_req *r);          /* GET  /api/v1/machines/{id} */
int api_machines_tasks_list(struct srv_req *r);   /* GET  /api/v1/machines/{id}/tasks */
int api_machines_tasks_create(struct srv_req *r); /* POST /api/v1/machines/{id}/tasks */
int api_machines_move(struct srv_req *r);         /* POST /api/v1/machines/{id}/move */
int api_machines_retire(struct srv_req *r);       /* POST /api/v1/machines/{id}/retire */

/* api_detection.c: detections and their workflow. */
int api_detections_list(struct srv_req *r);   /* GET  /api/v1/detections */
int api_detections_get(struct srv_req *r);    /* GET  /api/v1/detections/{id} */
int api_detections_status(struct srv_req *r); /* POST /api/v1/detections/{id}/status */

/* api_overview.c: the dashboard's first page. */
int api_overview(struct srv_req *r); /* GET  /api/v1/overview */

/* api_signature.c: signature sources and published bundles. */
int api_sources_list(struct srv_req *r);    /* GET  /api/v1/signatures/sources */
int api_sources_create(struct srv_req *r);  /* POST /api/v1/signatures/sources */
int api_sources_upload(struct srv_req *r);  /* PUT  /api/v1/signatures/sources/upload?kind=&name= */
int api_sources_delete(struct srv_req *r);  /* DELETE /api/v1/signatures/sources/{id} */
int api_bundles_publish(struct srv_req *r); /* POST /api/v1/signatures/publish */
int api_bundles_list(struct srv_req *r);    /* GET  /api/v1/signatures/versions */

/* api_c2.c: agency address ranges and the network sensor's C&C hits. */
int api_agency_networks_get(struct srv_req *r); /* GET  /api/v1/agencies/{id}/networks */
int api_agency_networks_put(struct srv_req *r); /* PUT  /api/v1/agencies/{id}/networks */
int api_networks_list(struct srv_req *r);       /* GET  /api/v1/networks (administrators) */
int api_c2_hits_list(struct srv_req *r);        /* GET  /api/v1/c2-hits */
int api_c2_hits_summary(struct srv_req *r);     /* GET  /api/v1/c2-hits/summary */
int api_c2_hits_status(struct srv_req *r);      /* POST /api/v1/c2-hits/{id}/status */

/* api_sharing.c: sharing with the national malware monitoring system. */
int api_sharing_get(struct srv_req *r);      /* GET  /api/v1/sharing */
int api_sharing_send_now(struct srv_req *r); /* POST /api/v1/sharing/send-now */
int api_sharing_document(struct srv_req *r); /* GET  /api/v1/sharing/submissions/{id}/document */

/* api_federation.c: provinces pushing their statistics to this (parent) server. */
int api_federation_children_create(struct srv_req *r); /* POST /api/v1/federation/children */
int api_federation_children_list(struct srv_req *r);   /* GET  /api/v1/federation/children */
int api_federation_children_revoke(struct srv_req *r); /* DELETE /api/v1/federation/children/{id} */
int api_federation_push(struct srv_req *r);      /* POST /api/v1/federation/push (province token) */
int api_federation_provinces(struct srv_req *r); /* GET  /api/v1/federation/provinces?period= */

/* static.c: the dashboard's files (web/), compiled into the binary. */
int api_static(struct srv_req *r); /* GET  anything not under /api/ */

/* api_index.c: the infection index. */
int api_index_get(struct srv_req *r);   /* GET  /api/v1/index?period=&agency= */
int api_index_trend(struct srv_req *r); /* GET  /api/v1/index/trend?agency=&kind=&count=&period= */

/* api_report.c: reports for the Ministry (docs/api/reports.md). */
int api_reports_create(struct srv_req *r);   /* POST /api/v1/reports */
int api_reports_list(struct srv_req *r);     /* GET  /api/v1/reports */
int api_reports_file(struct srv_req *r);     /* GET  /api/v1/reports/{id}/file */
int api_reports_deadline(struct srv_req *r); /* GET  /api/v1/reports/deadline */

#endif
