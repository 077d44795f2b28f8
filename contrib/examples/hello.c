/* Smallest libcairn program: record one login and print its seq.
 *   cc hello.c $(pkg-config --cflags --libs cairn) -o hello && ./hello */
#include <cairn/cairn.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  const char *path = getenv("CAIRN_SOCKET") ? getenv("CAIRN_SOCKET") : "/run/cairn/cairn.sock";
  cairn_client *c = NULL;
  int rc = cairn_open(&c, path, NULL);
  if (rc < 0) {
    fprintf(stderr, "connect %s: %s\n", path, cairn_strerror(rc));
    return 1;
  }
  cairn_field fields[] = {{.key = "ip", .kind = CAIRN_FIELD_STR, .s = "10.1.2.3"}};
  cairn_event ev = {.type = "UserLogin", .severity = CAIRN_SEV_INFO, .actor = "alice", .action = "login",
                    .outcome = "success", .fields = fields, .n_fields = 1};
  cairn_ack ack;
  rc = cairn_append(c, &ev, &ack);
  if (rc < 0) {
    const char *code = NULL, *field = NULL, *rule = NULL, *msg = NULL;
    cairn_last_error(c, &code, &field, &rule, &msg);
    fprintf(stderr, "refused: %s (%s)\n", cairn_strerror(rc), msg ? msg : "");
    cairn_close(c);
    return 1;
  }
  printf("seq %llu%s\n", (unsigned long long)ack.seq, ack.durable ? " (durable)" : "");
  cairn_close(c);
  return 0;
}
