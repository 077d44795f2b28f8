/* cairn.h — libcairn, the client library of the cairn audit log (C ABI).
 *
 * Glossary:
 *   handle   a `cairn_client *`, one connection to cairnd plus the events it has sent but not
 *            yet seen acked. Safe to share between threads: calls on one handle are
 *            serialised by an internal mutex (for parallel throughput, use one handle
 *            per thread). cairn_close must not race with other calls on the handle.
 *   ack      the daemon's answer to one event: its seq, and whether it was durable
 *            (fsynced) when the ack was sent. An event is stored only if its ack says so.
 *   ticket   names one event sent with cairn_append_async; acks come back in send order.
 *
 * Every function returns 0 or a negative CAIRN_E_* code; cairn_strerror() names it. No
 * function throws, logs, or raises SIGPIPE. Link: pkg-config --cflags --libs cairn.
 *
 * Reconnection: when the connection is lost (daemon restart, crash, SIGTERM drain)
 * libcairn reconnects with exponential backoff for up to reconnect_timeout_ms and resends
 * every unacked event with its idempotency key; the daemon answers duplicate:true with
 * the original seq for any it had already stored. A restart thus loses and duplicates
 * nothing. An event answered shutting_down is resent the same way. Events the daemon
 * refused (invalid_field, storage_failed ...) are reported, not resent, and so are
 * replies libcairn cannot read (CAIRN_E_PROTOCOL): resending would fetch them again.
 * The reconnect_timeout_ms deadline runs from the first loss until a reply answers a
 * request: reconnects that are lost again before any reply share it (and keep backing
 * off). If the daemon is not back in time, what was in flight fails with
 * CAIRN_E_CONNECT, or CAIRN_E_OVERLOADED / CAIRN_E_SHUTTING_DOWN if it kept refusing
 * (CAIRN_E_IO when reconnection is disabled); cairn_last_error names the last cause.
 * The next call tries to connect again.
 * No call reports success for an event without the daemon's ack for it.
 */
#ifndef CAIRN_CAIRN_H
#define CAIRN_CAIRN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_client cairn_client;

enum {
  CAIRN_OK = 0,
  CAIRN_E_INVALID_ARG = -1,   /* bad argument, or nothing outstanding for next_ack */
  CAIRN_E_CONNECT = -2,       /* could not connect (within reconnect_timeout_ms); from
                               * cairn_open, errno says why (see there) */
  CAIRN_E_IO = -3,            /* connection lost and reconnection disabled */
  CAIRN_E_PROTOCOL = -4,      /* the daemon sent something we do not understand: a reply
                               * over 16 MiB (code reply_too_large), malformed
                               * (malformed_reply) or out of step (reply_out_of_step).
                               * It fails the request it answers, never reconnects */
  CAIRN_E_REJECTED = -5,      /* invalid_field, malformed, unknown_op ...: see cairn_last_error */
  CAIRN_E_STORAGE = -6,       /* storage_failed: the daemon could not store the event */
  CAIRN_E_SHUTTING_DOWN = -7, /* daemon draining (and reconnection disabled, or it kept
                               * refusing until reconnect_timeout_ms passed) */
  CAIRN_E_OVERLOADED = -8,    /* too many connections or requests (as above) */
  CAIRN_E_DENIED = -9,        /* permission_denied (query/stats/verify) */
  CAIRN_E_TIMEOUT = -10,      /* cairn_options.timeout_ms ran out (see there) */
  CAIRN_E_NOMEM = -11,
  CAIRN_E_UNSUPPORTED = -12,  /* unsupported_version */
  CAIRN_E_RATE_LIMITED = -13, /* rate_limited: the caller's uid is over its append rate
                               * (cairnd --uid-append-rate); this event was not stored,
                               * not resent: append it again later (same idem) */
  CAIRN_E_STORAGE_FULL = -14  /* storage_full: the disk holding the database is below
                               * cairnd's reserve (or full); the event was not stored.
                               * Not resent by libcairn: resend it once space is freed */
};

typedef struct cairn_options {
  size_t size;                /* sizeof(cairn_options), set by cairn_options_init */
  const char *client_name;    /* sent in hello; NULL = "libcairn" */
  int reconnect_timeout_ms;   /* keep retrying this long after a loss, until a reply
                               * arrives again; 0 = never reconnect [30000] */
  unsigned max_inflight;      /* pipelining window [1024]; capped by the daemon's limit */
  int timeout_ms;             /* bound on how long any one call waits, cairn_open included
                               * (connect, hello, reconnects, writes, acks); 0 = no bound [0].
                               * Since 0.2. When it runs out the call returns
                               * CAIRN_E_TIMEOUT (cairn_open: with errno from the last
                               * connect attempt), the connection is closed and every event
                               * in flight on it fails with CAIRN_E_TIMEOUT, not resent: it
                               * may or may not be stored (resend it with the same idem to
                               * learn which); the next call connects afresh. For callers
                               * that must never stall, e.g. a PAM module inside a login:
                               * with reconnect_timeout_ms = 0 a missing daemon fails at the
                               * first attempt, otherwise attempts go on until timeout_ms. */
} cairn_options;

typedef enum {
  CAIRN_FIELD_STR,
  CAIRN_FIELD_INT,
  CAIRN_FIELD_FLOAT,
  CAIRN_FIELD_BOOL,
  CAIRN_FIELD_NIL
} cairn_field_kind;

typedef struct cairn_field {
  const char *key;
  cairn_field_kind kind;
  const char *s; /* CAIRN_FIELD_STR */
  int64_t i;     /* CAIRN_FIELD_INT */
  double f;      /* CAIRN_FIELD_FLOAT */
  int b;         /* CAIRN_FIELD_BOOL */
} cairn_field;

/* Severity is stored as the syslog level PLUS ONE, so that a zero-initialised
 * cairn_event (`cairn_event ev = {0};`, `cairn_event ev{};`) means "not set" and the
 * daemon applies its default (info), instead of 0 meaning emerg. Write one of the
 * CAIRN_SEV_* constants, or CAIRN_SEVERITY(level) for a syslog level 0..7 held in a
 * variable; -1 is also accepted as "not set" (the spelling before 0.2).
 * ABI: this reading is new in libcairn 0.2. Programs linked against 0.1 call the
 * CAIRN_0 versions of cairn_append and cairn_append_async, which keep 0.1's reading
 * (0..7 the level itself, -1 not set); rebuilt programs get the new one. Source that
 * wrote a raw level (`.severity = 3`) must switch to CAIRN_SEVERITY(3) or CAIRN_SEV_ERR
 * when rebuilt against 0.2. */
#define CAIRN_SEVERITY_UNSET 0
#define CAIRN_SEVERITY(level) ((level) + 1)
enum {
  CAIRN_SEV_EMERG = 1,
  CAIRN_SEV_ALERT = 2,
  CAIRN_SEV_CRIT = 3,
  CAIRN_SEV_ERR = 4,
  CAIRN_SEV_WARNING = 5,
  CAIRN_SEV_NOTICE = 6,
  CAIRN_SEV_INFO = 7,
  CAIRN_SEV_DEBUG = 8
};

/* Zero-initialise it and set what you need: every member's zero means "not sent". */
typedef struct cairn_event {
  const char *type;     /* required: [A-Za-z0-9_.:-]{1,64} */
  int severity;         /* CAIRN_SEV_* (level + 1); 0 or -1 = not set (daemon: info);
                         * anything else is CAIRN_E_INVALID_ARG */
  const char *actor, *action, *target;
  const char *outcome;  /* "success" | "failure" | "unknown" | NULL */
  const char *message;
  int64_t time_ns;      /* event time, ns since the epoch; 0 = not sent */
  const cairn_field *fields;
  size_t n_fields;
  int sync;             /* ask for a durable ack even in batched/hybrid mode */
  const void *idem;     /* idempotency key, 8..32 bytes; NULL = 16 random bytes */
  size_t idem_len;
  /* Alternatively, fields as one encoded msgpack map (nested maps/arrays allowed);
   * used when fields_msgpack is set, in which case `fields` must be NULL. */
  const void *fields_msgpack;
  size_t fields_msgpack_len;
} cairn_event;

typedef struct cairn_ack {
  uint64_t seq;
  int durable;    /* 1: fsynced before this ack was sent */
  int duplicate;  /* 1: already stored (same idem); seq is the original's */
} cairn_ack;

void cairn_options_init(cairn_options *o);

/* Connects (retrying for reconnect_timeout_ms) and says hello. On failure *out is NULL
 * and the code says why: CAIRN_E_OVERLOADED or CAIRN_E_SHUTTING_DOWN when cairnd refused
 * the connection; CAIRN_E_CONNECT when it could not be reached, with errno set from the
 * last attempt: ENOENT (no socket at that path: is cairnd running?), EACCES (not allowed
 * to use the socket), ECONNREFUSED (nothing listening), ECONNRESET (closed before
 * answering hello). */
int cairn_open(cairn_client **out, const char *socket_path, const cairn_options *opts);
/* Closes the connection and frees the handle. Unacked events are abandoned: call
 * cairn_flush (or collect every ack) first. NULL is fine. */
void cairn_close(cairn_client *c);

/* Sends one event and blocks until its ack. */
int cairn_append(cairn_client *c, const cairn_event *ev, cairn_ack *ack);
/* Sends one event without waiting; blocks only when max_inflight are outstanding (it
 * then reads the oldest result into the handle's queue for cairn_next_ack). 0 means the
 * event is in flight and cairn_next_ack will report it; an error means it was not sent
 * (CAIRN_E_INVALID_ARG also for an event over the daemon's max_frame, code
 * "frame_too_large" in cairn_last_error). */
int cairn_append_async(cairn_client *c, const cairn_event *ev, uint64_t *ticket);
/* Result of the oldest event not yet collected, in send order: 0 and its ack, or that
 * event's error. CAIRN_E_INVALID_ARG if nothing is outstanding. */
int cairn_next_ack(cairn_client *c, uint64_t *ticket, cairn_ack *ack);
/* Barrier: returns once every event sent before it is durable. */
int cairn_flush(cairn_client *c, uint64_t *durable_seq);
int cairn_ping(cairn_client *c);

/* Any op with extra arguments as an encoded msgpack map (or NULL); *reply receives the
 * whole reply map (msgpack), freed with cairn_free. Used by tools for query/stats/verify.
 * Not for append/hello (CAIRN_E_INVALID_ARG), nor subscribe: its answer is a stream of
 * pages on a connection that takes no other request (PROTOCOL.md §6.8); `cairn query -f`
 * speaks it on a socket of its own. */
int cairn_request(cairn_client *c, const char *op, const void *args_map, size_t args_len, void **reply,
                  size_t *reply_len);
void cairn_free(void *p);

const char *cairn_strerror(int err);
/* Details of the latest refusal on this handle (each may be set to NULL). Valid until
 * the next call on the handle. */
int cairn_last_error(cairn_client *c, const char **code, const char **field, const char **rule,
                     const char **message);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_CAIRN_H */
