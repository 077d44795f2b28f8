/* pam_cairn_bench.c — how long a login spends in pam_cairn.so, for bench/run (section
 * `sources`). Not installed.
 *
 * Drives libpam in this process with pam_start_confdir (Linux-PAM >= 1.4), so the test
 * services live in a temporary directory and /etc/pam.d is never touched. Two stacks,
 * measured in alternation so that both see the same machine:
 *   cairn   auth, account and session lines of pam_cairn.so (4 events per login:
 *           AuthSuccess, AccountGranted, SessionOpen, SessionClose)
 *   permit  the same calls through pam_permit.so: what PAM itself costs
 * Each login is pam_start, authenticate, acct_mgmt, open_session, close_session, pam_end;
 * the figure is the wall time of the four calls. Prints one JSON line with p50/p99 of the
 * login and of pam_authenticate alone (one event) for both stacks, in microseconds.
 * Between logins it appends one event on a connection kept open (libcairn, durable ack):
 * the raw one-event ack the PAM figures are compared with, measured in alternation with
 * them so that a disk whose speed moves from second to second moves both.
 *
 * Usage: pam_cairn_bench MODULE SOCKET LOGINS
 */
#include <security/pam_appl.h>

#include <cairn/cairn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data) {
  (void)n;
  (void)msg;
  (void)resp;
  (void)data;
  return PAM_CONV_ERR; /* neither stack asks anything */
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  int i = (int)(p * (n - 1) + 0.5);
  return v[i];
}

/* One login; returns 0 and the times, or the first PAM error. */
static int login(const char *confdir, const char *service, double *total_us, double *auth_us) {
  struct pam_conv c = {conv, NULL};
  pam_handle_t *h = NULL;
  int rc = pam_start_confdir(service, "benchuser", &c, confdir, &h);
  if (rc != PAM_SUCCESS) return rc;
  pam_set_item(h, PAM_RHOST, "10.1.2.3");
  pam_set_item(h, PAM_TTY, "pts/9");
  double t0 = now_us();
  rc = pam_authenticate(h, 0);
  double t1 = now_us();
  if (rc == PAM_SUCCESS) rc = pam_acct_mgmt(h, 0);
  if (rc == PAM_SUCCESS) rc = pam_open_session(h, 0);
  if (rc == PAM_SUCCESS) rc = pam_close_session(h, 0);
  double t2 = now_us();
  pam_end(h, rc);
  *total_us = t2 - t0;
  *auth_us = t1 - t0;
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODULE SOCKET LOGINS\n", argv[0]);
    return 2;
  }
  const char *module = argv[1], *sock = argv[2];
  int n = atoi(argv[3]);
  if (n < 10) n = 10;
  char dir[] = "/tmp/pam-cairn-bench-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char path[4200];
  snprintf(path, sizeof path, "%s/cairn", dir);
  FILE *f = fopen(path, "w");
  if (!f) return 1;
  /* fail=closed: a lost event would show as a failed login, not as a fast one. */
  fprintf(f, "auth required %s socket=%s timeout_ms=5000 fail=closed\n", module, sock);
  fprintf(f, "account required %s socket=%s timeout_ms=5000 fail=closed\n", module, sock);
  fprintf(f, "session required %s socket=%s timeout_ms=5000 fail=closed\n", module, sock);
  fclose(f);
  snprintf(path, sizeof path, "%s/permit", dir);
  f = fopen(path, "w");
  if (!f) return 1;
  fprintf(f, "auth required pam_permit.so\naccount required pam_permit.so\nsession required pam_permit.so\n");
  fclose(f);

  double *ct = calloc((size_t)n, sizeof(double)), *ca = calloc((size_t)n, sizeof(double));
  double *pt = calloc((size_t)n, sizeof(double)), *pa = calloc((size_t)n, sizeof(double));
  double *rt = calloc((size_t)n, sizeof(double));
  cairn_options o;
  cairn_options_init(&o);
  o.client_name = "pam_cairn_bench";
  o.max_inflight = 1;
  cairn_client *kept = NULL;
  if (cairn_open(&kept, sock, &o) != 0) {
    fprintf(stderr, "cannot connect to %s\n", sock);
    return 1;
  }
  cairn_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = "BenchRawAck";
  int failed = 0;
  for (int i = -n / 10; i < n; ++i) { /* the first tenth warms up, unrecorded */
    double t, a;
    int rc = login(dir, "cairn", &t, &a);
    if (rc != PAM_SUCCESS) {
      fprintf(stderr, "pam_cairn login failed: %d\n", rc);
      ++failed;
      break;
    }
    if (i >= 0) ct[i] = t, ca[i] = a;
    if (login(dir, "permit", &t, &a) != PAM_SUCCESS) {
      ++failed;
      break;
    }
    if (i >= 0) pt[i] = t, pa[i] = a;
    cairn_ack ack;
    double t0 = now_us();
    if (cairn_append(kept, &ev, &ack) != 0 || !ack.durable) {
      ++failed;
      break;
    }
    if (i >= 0) rt[i] = now_us() - t0;
  }
  cairn_close(kept);
  snprintf(path, sizeof path, "%s/cairn", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/permit", dir);
  unlink(path);
  rmdir(dir);
  if (failed) return 1;
  printf("{\"logins\":%d,\"events_per_login\":4,"
         "\"cairn_login_p50_us\":%.1f,\"cairn_login_p99_us\":%.1f,"
         "\"cairn_auth_p50_us\":%.1f,\"cairn_auth_p99_us\":%.1f,"
         "\"permit_login_p50_us\":%.1f,\"permit_login_p99_us\":%.1f,"
         "\"raw_ack_p50_us\":%.1f,\"raw_ack_p99_us\":%.1f}\n",
         n, pct(ct, n, 0.5), pct(ct, n, 0.99), pct(ca, n, 0.5), pct(ca, n, 0.99), pct(pt, n, 0.5),
         pct(pt, n, 0.99), pct(rt, n, 0.5), pct(rt, n, 0.99));
  free(ct);
  free(ca);
  free(pt);
  free(pa);
  free(rt);
  return 0;
}
