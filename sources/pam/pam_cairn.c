/* pam_cairn.c — a PAM module that records logins in cairn (auth, account, session,
 * password).
 *
 * Why a module and not pam_exec + `cairn send`: the module runs inside the process that
 * drives PAM (sshd, login, sudo, su), so the pid/uid/gid/comm that cairnd stamps from
 * the socket (SO_PEERCRED) are that process's own, and nothing forks per event.
 *
 * What it records (type, outcome; every event carries actor = PAM_USER, action,
 * target = PAM_SERVICE, and the fields service, user, rhost, ruser, tty that are set):
 *   auth      AuthSuccess (success) / AuthFailure (failure, with `failure`)
 *   account   AccountGranted (success) / AccountDenied (failure, with `failure`)
 *   session   SessionOpen / SessionClose
 *   password  PasswordChange (success, or failure with `failure`), at the update pass
 * A module cannot see the result of the modules stacked before it, so failures are
 * recorded the way pam_faillock does it: the stack jumps over a `failure` line on
 * success and reaches it on failure (README, "Capture logins and sudo"). A `failure`
 * line always returns an error (PAM_AUTH_ERR, PAM_PERM_DENIED, PAM_AUTHTOK_ERR) so a
 * stack that reaches it fails whatever else is configured.
 *
 * Options: socket=PATH [/run/cairn/cairn.sock]; timeout_ms=N [500, 1..10000], the most
 * one event may cost the login (connect, hello, send, durable ack); fail=open|closed
 * [open]. fail=open: an event that could not be recorded (no daemon, timeout, refusal)
 * lets the login go on and says so in syslog (authpriv). fail=closed: the login is
 * refused instead (the module returns the phase's error) — for sites where an
 * unaudited login is worse than no login. `failure` / `success` pick the line's role
 * (default success). Unknown options are logged and ignored: a typo must not lock
 * everyone out.
 *
 * Failures (AuthFailure, AccountDenied, failed PasswordChange) are sent with sync set,
 * so their ack follows an fsync in every flush mode (PROTOCOL.md: sync makes an event
 * critical), and at severity warning.
 *
 * Ownership and limits: one libcairn handle per event, opened and closed inside the PAM
 * call, so the module keeps no state across calls (sshd forks between auth and session)
 * and leaves no fd behind (libcairn's socket is close-on-exec). cairn_open is made with
 * reconnect_timeout_ms = 0: a daemon that is not there fails at the first attempt and
 * costs the login nothing; a daemon that hangs costs at most timeout_ms (libcairn's
 * timeout_ms bounds connect, hello and ack). The socket path is taken from the PAM
 * configuration only, never from the environment, which the user controls (su, sudo).
 */
#define PAM_SM_AUTH
#define PAM_SM_ACCOUNT
#define PAM_SM_SESSION
#define PAM_SM_PASSWORD

#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <syslog.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cairn/cairn.h>

#define DEFAULT_SOCKET "/run/cairn/cairn.sock"
#define DEFAULT_TIMEOUT_MS 500
#define MAX_TIMEOUT_MS 10000

typedef struct {
  const char *socket;
  int timeout_ms;
  int fail_closed;
  int failure_line; /* this line is reached when the stack failed */
} options;

static void parse_options(pam_handle_t *pamh, int argc, const char **argv, options *o) {
  o->socket = DEFAULT_SOCKET;
  o->timeout_ms = DEFAULT_TIMEOUT_MS;
  o->fail_closed = 0;
  o->failure_line = 0;
  for (int i = 0; i < argc; ++i) {
    const char *a = argv[i];
    if (strncmp(a, "socket=", 7) == 0 && a[7] == '/') {
      o->socket = a + 7;
    } else if (strncmp(a, "timeout_ms=", 11) == 0) {
      char *end = NULL;
      errno = 0;
      long v = strtol(a + 11, &end, 10);
      if (errno != 0 || end == a + 11 || *end != '\0' || v < 1 || v > MAX_TIMEOUT_MS)
        pam_syslog(pamh, LOG_ERR, "ignoring %s: timeout_ms takes 1..%d", a, MAX_TIMEOUT_MS);
      else
        o->timeout_ms = (int)v;
    } else if (strcmp(a, "fail=open") == 0) {
      o->fail_closed = 0;
    } else if (strcmp(a, "fail=closed") == 0) {
      o->fail_closed = 1;
    } else if (strcmp(a, "failure") == 0 || strcmp(a, "auth_failure") == 0) {
      o->failure_line = 1;
    } else if (strcmp(a, "success") == 0) {
      o->failure_line = 0;
    } else {
      pam_syslog(pamh, LOG_ERR, "ignoring unknown option %s", a);
    }
  }
}

static const char *item(pam_handle_t *pamh, int type) {
  const void *v = NULL;
  if (pam_get_item(pamh, type, &v) != PAM_SUCCESS || v == NULL) return NULL;
  const char *s = v;
  return *s ? s : NULL;
}

/* Records one event; 0 when cairnd acked it as stored. On failure the reason goes to
 * syslog (the module's only voice: PAM applications have no other channel for it). */
static int record(pam_handle_t *pamh, const options *o, const char *type, const char *action,
                  int failed) {
  const char *service = item(pamh, PAM_SERVICE);
  const char *user = item(pamh, PAM_USER);
  const char *rhost = item(pamh, PAM_RHOST);
  const char *ruser = item(pamh, PAM_RUSER);
  const char *tty = item(pamh, PAM_TTY);

  cairn_field fields[5];
  size_t n = 0;
  const char *keys[5] = {"service", "user", "rhost", "ruser", "tty"};
  const char *vals[5] = {service, user, rhost, ruser, tty};
  for (int i = 0; i < 5; ++i) {
    if (vals[i] == NULL) continue;
    memset(&fields[n], 0, sizeof fields[n]);
    fields[n].key = keys[i];
    fields[n].kind = CAIRN_FIELD_STR;
    fields[n].s = vals[i];
    ++n;
  }
  cairn_event ev;
  memset(&ev, 0, sizeof ev); /* every member's zero: not sent (severity: daemon's info) */
  ev.type = type;
  ev.actor = user;
  ev.action = action;
  ev.target = service;
  ev.outcome = failed ? "failure" : "success";
  ev.severity = failed ? CAIRN_SEV_WARNING : CAIRN_SEVERITY_UNSET;
  ev.sync = failed; /* durable ack in every flush mode */
  ev.fields = fields;
  ev.n_fields = n;

  cairn_options co;
  cairn_options_init(&co);
  co.client_name = "pam_cairn";
  co.reconnect_timeout_ms = 0;
  co.timeout_ms = o->timeout_ms;
  co.max_inflight = 1;
  cairn_client *c = NULL;
  int rc = cairn_open(&c, o->socket, &co);
  if (rc != 0) {
    int e = errno;
    pam_syslog(pamh, LOG_WARNING, "%s for user %s not recorded: %s: %s%s%s", type, user ? user : "?",
               o->socket, cairn_strerror(rc), rc == CAIRN_E_CONNECT || rc == CAIRN_E_TIMEOUT ? ": " : "",
               rc == CAIRN_E_CONNECT || rc == CAIRN_E_TIMEOUT ? strerror(e) : "");
    return rc;
  }
  cairn_ack ack;
  rc = cairn_append(c, &ev, &ack);
  if (rc != 0) {
    const char *msg = NULL;
    cairn_last_error(c, NULL, NULL, NULL, &msg);
    pam_syslog(pamh, LOG_WARNING, "%s for user %s not recorded: %s%s%s", type, user ? user : "?",
               cairn_strerror(rc), msg ? ": " : "", msg ? msg : "");
  }
  cairn_close(c);
  return rc;
}

/* One module call: record, then answer what the line's role and fail= ask for. */
static int run(pam_handle_t *pamh, int argc, const char **argv, const char *ok_type,
               const char *fail_type, const char *action, int phase_error) {
  options o;
  parse_options(pamh, argc, argv, &o);
  if (o.failure_line) {
    (void)record(pamh, &o, fail_type, action, 1);
    return phase_error; /* reached only when the stack failed: keep it failed */
  }
  int rc = record(pamh, &o, ok_type, action, 0);
  if (rc != 0 && o.fail_closed) {
    pam_syslog(pamh, LOG_ERR, "fail=closed: refusing %s because it could not be recorded", action);
    return phase_error;
  }
  return PAM_SUCCESS;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)flags;
  return run(pamh, argc, argv, "AuthSuccess", "AuthFailure", "authenticate", PAM_AUTH_ERR);
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)pamh;
  (void)flags;
  (void)argc;
  (void)argv;
  return PAM_SUCCESS; /* no credentials of our own */
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)flags;
  return run(pamh, argc, argv, "AccountGranted", "AccountDenied", "account", PAM_PERM_DENIED);
}

PAM_EXTERN int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)flags;
  return run(pamh, argc, argv, "SessionOpen", "SessionOpen", "session_open", PAM_SESSION_ERR);
}

PAM_EXTERN int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)flags;
  return run(pamh, argc, argv, "SessionClose", "SessionClose", "session_close", PAM_SESSION_ERR);
}

PAM_EXTERN int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  /* The preliminary pass only checks that a change is possible: record the update. */
  if (flags & PAM_PRELIM_CHECK) return PAM_SUCCESS;
  return run(pamh, argc, argv, "PasswordChange", "PasswordChange", "password_change", PAM_AUTHTOK_ERR);
}
