/* cairn_sudo.c — a sudo audit plugin (sudo_plugin(5), struct audit_plugin, sudo >= 1.9)
 * that records every sudo decision in cairn.
 *
 * Why an audit plugin: sudo calls it with the policy's verdict itself — accepted (with
 * the resolved command, runas user/group and cwd), rejected (with the policy's reason)
 * or failed — inside the sudo process, so cairnd stamps sudo's own pid/uid/comm on each
 * event. sudo's I/O log and syslog lines remain; this adds a tamper-evident record.
 *
 * Events (actor = the invoking user, action "sudo", target = the command path):
 *   SudoCommand   the policy plugin accepted: outcome success
 *   SudoRejected  the policy or an approval plugin refused: outcome failure, severity
 *                 warning, sync (durable ack in every flush mode), field reason
 *   SudoError     a plugin failed: outcome failure, severity err, sync, field reason
 * Fields: command (the command line, arguments joined by spaces), runas_user,
 * runas_group, runas_uid, runas_gid, cwd (the user's), run_cwd (where the command runs,
 * when the policy sets it), tty, host, user, uid, user_pid (sudo's pid as sudo reports
 * it; cairnd's trusted pid is the same process), plugin.
 *
 * Plugin options (sudo.conf, after the path): socket=PATH [/run/cairn/cairn.sock],
 * timeout_ms=N [500, 1..10000] per event, fail=open|closed [open]. fail=closed makes
 * accept() return an error when SudoCommand could not be recorded, and sudo then does
 * not run the command. The socket path comes from sudo.conf only, never from the
 * environment: the user who runs sudo controls that.
 *
 * Ownership and limits: user_info and the submitted command are copied at open (sudo
 * owns its arrays); one libcairn handle is opened at the first event and kept until
 * close(), its socket close-on-exec so the command never inherits it. A daemon that is
 * not there costs nothing (one connect attempt, reconnect_timeout_ms = 0); a hung one
 * at most timeout_ms per event. The command line is cut at 1000 bytes (cairnd's
 * default max_string is 1024). Events the plugin could not record are reported on
 * sudo's stderr through sudo_printf, so the user and the admin learn of it.
 */
#include <sudo_plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairn/cairn.h>

#define DEFAULT_SOCKET "/run/cairn/cairn.sock"
#define DEFAULT_TIMEOUT_MS 500
#define MAX_TIMEOUT_MS 10000
#define MAX_TEXT 1000

static struct {
  sudo_printf_t printf_fn;
  char socket[4096];
  int timeout_ms;
  int fail_closed;
  /* copied from user_info at open */
  char user[256], uid[32], cwd[MAX_TEXT + 1], tty[256], host[256], pid[32];
  char submitted[MAX_TEXT + 1]; /* the command line as typed (for refusals) */
  cairn_client *client;         /* opened at the first event, closed at close() */
} st;

static void copy(char *dst, size_t cap, const char *src) {
  if (src == NULL) src = "";
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* The value of "key=" in a sudo NULL-terminated "key=value" array, or NULL. */
static const char *lookup(char *const list[], const char *key) {
  size_t k = strlen(key);
  for (size_t i = 0; list != NULL && list[i] != NULL; ++i)
    if (strncmp(list[i], key, k) == 0 && list[i][k] == '=') return list[i] + k + 1;
  return NULL;
}

/* Joins argv with spaces into dst (cut at cap - 1 bytes). */
static void join(char *dst, size_t cap, char *const argv[]) {
  size_t at = 0;
  dst[0] = '\0';
  for (size_t i = 0; argv != NULL && argv[i] != NULL && at + 1 < cap; ++i) {
    int n = snprintf(dst + at, cap - at, "%s%s", i ? " " : "", argv[i]);
    if (n < 0) break;
    at += (size_t)n;
  }
  if (at >= cap) dst[cap - 1] = '\0';
}

static void say(const char *fmt, const char *a, const char *b) {
  if (st.printf_fn) st.printf_fn(SUDO_CONV_ERROR_MSG, fmt, a, b);
}

typedef struct {
  cairn_field f[16];
  size_t n;
} field_list;

static void add(field_list *l, const char *key, const char *value) {
  if (value == NULL || *value == '\0' || l->n == sizeof l->f / sizeof l->f[0]) return;
  memset(&l->f[l->n], 0, sizeof l->f[l->n]);
  l->f[l->n].key = key;
  l->f[l->n].kind = CAIRN_FIELD_STR;
  l->f[l->n].s = value;
  l->n++;
}

/* Records one event. 0 when cairnd acked it stored; otherwise says why on stderr. */
static int record(const char *type, const char *target, int severity, int failed, field_list *l) {
  add(l, "user", st.user);
  add(l, "uid", st.uid);
  add(l, "cwd", st.cwd);
  add(l, "tty", st.tty);
  add(l, "host", st.host);
  add(l, "user_pid", st.pid);
  cairn_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = type;
  ev.actor = st.user[0] ? st.user : NULL;
  ev.action = "sudo";
  ev.target = target && *target ? target : NULL;
  ev.outcome = failed ? "failure" : "success";
  ev.severity = severity;
  ev.sync = failed;
  ev.fields = l->f;
  ev.n_fields = l->n;
  int rc = 0;
  if (st.client == NULL) {
    cairn_options o;
    cairn_options_init(&o);
    o.client_name = "cairn_sudo";
    o.reconnect_timeout_ms = 0;
    o.timeout_ms = st.timeout_ms;
    o.max_inflight = 1;
    rc = cairn_open(&st.client, st.socket, &o);
  }
  cairn_ack ack;
  if (rc == 0) rc = cairn_append(st.client, &ev, &ack);
  if (rc != 0) {
    say("cairn_sudo: %s not recorded in cairn: %s\n", type, cairn_strerror(rc));
    cairn_close(st.client); /* the next event starts on a fresh connection */
    st.client = NULL;
  }
  return rc;
}

static int audit_open(unsigned int version, sudo_conv_t conversation, sudo_printf_t sudo_printf,
                      char *const settings[], char *const user_info[], int submit_optind,
                      char *const submit_argv[], char *const submit_envp[],
                      char *const plugin_options[], const char **errstr) {
  (void)conversation;
  (void)settings;
  (void)submit_envp;
  (void)errstr;
  st.printf_fn = sudo_printf;
  if (SUDO_API_VERSION_GET_MAJOR(version) != SUDO_API_VERSION_MAJOR) {
    say("cairn_sudo: built for sudo plugin API %s, sudo speaks another major version%s\n", "1", "");
    return -1;
  }
  copy(st.socket, sizeof st.socket, DEFAULT_SOCKET);
  st.timeout_ms = DEFAULT_TIMEOUT_MS;
  st.fail_closed = 0;
  for (size_t i = 0; plugin_options != NULL && plugin_options[i] != NULL; ++i) {
    const char *a = plugin_options[i];
    if (strncmp(a, "socket=", 7) == 0 && a[7] == '/') {
      copy(st.socket, sizeof st.socket, a + 7);
    } else if (strncmp(a, "timeout_ms=", 11) == 0) {
      char *end = NULL;
      errno = 0;
      long v = strtol(a + 11, &end, 10);
      if (errno == 0 && end != a + 11 && *end == '\0' && v >= 1 && v <= MAX_TIMEOUT_MS)
        st.timeout_ms = (int)v;
      else
        say("cairn_sudo: ignoring %s%s (1..10000)\n", a, "");
    } else if (strcmp(a, "fail=closed") == 0) {
      st.fail_closed = 1;
    } else if (strcmp(a, "fail=open") == 0) {
      st.fail_closed = 0;
    } else {
      say("cairn_sudo: ignoring unknown option %s%s\n", a, "");
    }
  }
  copy(st.user, sizeof st.user, lookup(user_info, "user"));
  copy(st.uid, sizeof st.uid, lookup(user_info, "uid"));
  copy(st.cwd, sizeof st.cwd, lookup(user_info, "cwd"));
  copy(st.tty, sizeof st.tty, lookup(user_info, "tty"));
  copy(st.host, sizeof st.host, lookup(user_info, "host"));
  copy(st.pid, sizeof st.pid, lookup(user_info, "pid"));
  if (submit_argv != NULL && submit_optind >= 0)
    join(st.submitted, sizeof st.submitted, submit_argv + submit_optind);
  return 1;
}

static void audit_close(int status_type, int status) {
  (void)status_type;
  (void)status;
  cairn_close(st.client);
  st.client = NULL;
}

static int audit_accept(const char *plugin_name, unsigned int plugin_type, char *const command_info[],
                        char *const run_argv[], char *const run_envp[], const char **errstr) {
  (void)run_envp;
  /* Approval plugins also report accepts on the way to the final verdict; the policy
   * plugin's accept is the one that means "the command runs". */
  if (plugin_type != SUDO_POLICY_PLUGIN) return 1;
  char command[MAX_TEXT + 1];
  join(command, sizeof command, run_argv);
  const char *path = lookup(command_info, "command");
  field_list l = {.n = 0};
  add(&l, "command", command);
  add(&l, "command_path", path);
  add(&l, "runas_user", lookup(command_info, "runas_user"));
  add(&l, "runas_uid", lookup(command_info, "runas_uid"));
  add(&l, "runas_group", lookup(command_info, "runas_group"));
  add(&l, "runas_gid", lookup(command_info, "runas_gid"));
  add(&l, "run_cwd", lookup(command_info, "cwd"));
  add(&l, "plugin", plugin_name);
  int rc = record("SudoCommand", path, CAIRN_SEVERITY_UNSET, 0, &l);
  if (rc != 0 && st.fail_closed) {
    *errstr = "cairn_sudo: the command could not be recorded in cairn (fail=closed)";
    return -1;
  }
  return 1;
}

static int refusal(const char *type, int severity, const char *plugin_name, const char *audit_msg,
                   char *const command_info[]) {
  field_list l = {.n = 0};
  const char *path = lookup(command_info, "command");
  add(&l, "command", st.submitted);
  add(&l, "command_path", path);
  add(&l, "reason", audit_msg);
  add(&l, "runas_user", lookup(command_info, "runas_user"));
  add(&l, "runas_group", lookup(command_info, "runas_group"));
  add(&l, "plugin", plugin_name);
  (void)record(type, path ? path : st.submitted, severity, 1, &l);
  return 1; /* the refusal stands either way; an audit error here changes nothing */
}

static int audit_reject(const char *plugin_name, unsigned int plugin_type, const char *audit_msg,
                        char *const command_info[], const char **errstr) {
  (void)plugin_type;
  (void)errstr;
  return refusal("SudoRejected", CAIRN_SEV_WARNING, plugin_name, audit_msg, command_info);
}

static int audit_error(const char *plugin_name, unsigned int plugin_type, const char *audit_msg,
                       char *const command_info[], const char **errstr) {
  (void)plugin_type;
  (void)errstr;
  return refusal("SudoError", CAIRN_SEV_ERR, plugin_name, audit_msg, command_info);
}

static int audit_show_version(int verbose) {
  (void)verbose;
  if (st.printf_fn) st.printf_fn(SUDO_CONV_INFO_MSG, "cairn_sudo audit plugin (libcairn)\n");
  return 1;
}

/* The symbol sudo.conf names: Plugin cairn_audit cairn_sudo.so [options] */
__attribute__((visibility("default"))) struct audit_plugin cairn_audit = {
    .type = SUDO_AUDIT_PLUGIN,
    .version = SUDO_API_VERSION,
    .open = audit_open,
    .close = audit_close,
    .accept = audit_accept,
    .reject = audit_reject,
    .error = audit_error,
    .show_version = audit_show_version,
};
