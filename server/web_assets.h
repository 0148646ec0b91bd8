/* The dashboard's files compiled into the server (generated web_assets.c). */
#ifndef KHIEN_SERVER_WEB_ASSETS_H
#define KHIEN_SERVER_WEB_ASSETS_H

#include <stddef.h>

struct srv_web_asset {
    const char *path; /* "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t size;
};

/* Terminated by an entry whose path is NULL. */
extern const struct srv_web_asset srv_web_assets[];

#endif
